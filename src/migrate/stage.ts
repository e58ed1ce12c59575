import { type ComposeProject, imageOverride } from "../commands/compose.js";
import { pullImageScript } from "../commands/docker.js";
import { script, sh } from "../commands/shell.js";
import type { Environment } from "../config/schema.js";
import { ConfigError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import type { ComposeSource } from "../deploy/compose-file.js";
import { checkHost } from "../deploy/preflight.js";
import type { Remote } from "../ssh/types.js";
import { migrateStage } from "./commands.js";

export interface StageOptions {
  app: string;
  env: Environment;
  /** The repository's compose file (loadComposeSource), uploaded as is. */
  compose: ComposeSource;
  imageRef: string;
  /** Registry login for the pull on the host; the password is only ever sent on stdin. */
  login?: { username: string; password: string };
}

/**
 * Check the host as deploy-ssh does (docker, compose, env-file keys), put the new release's
 * compose file and an override pinning the image under <path>/.deploy-kit/migrate/ (the live
 * release's files stay as they are), and pull the image. Returns the compose project migrations
 * and backups run with: project name = app, so `compose exec` finds the running containers;
 * project directory = the deploy path, so compose reads the operator's .env there.
 */
export async function stageMigration(remote: Remote, o: StageOptions, log: Log): Promise<ComposeProject> {
  const check = await checkHost(remote, o.env);
  for (const w of check.warnings) log.warn(`${remote.alias}: ${w}`);
  if (check.problems.length || !check.compose) {
    throw new ConfigError(`${remote.alias} is not ready for migrations; nothing was changed.`, {
      problems: check.problems.map((m) => ({ path: remote.alias, message: m })),
      hint: "Prepare the host (see the problems above), or run validate-config with check-remote: true to see its state.",
    });
  }
  log.info(`${remote.alias}: ${check.notes.join(", ")}`);
  const stage = migrateStage(o.env.path, o.compose.name);
  const services = [
    ...new Set([...o.env.compose.service, o.env.migrate?.service].filter((s): s is string => !!s)),
  ];
  await remote.run({ what: "prepare the migration directory", script: script(sh`mkdir -p ${stage.dir}`) });
  await remote.upload(stage.composeFile, o.compose.content, 0o644);
  await remote.upload(stage.override, imageOverride(services, o.imageRef, o.compose.version), 0o644);
  await log.group(`Pull ${o.imageRef} on ${remote.alias}`, async () => {
    await remote.run({
      what: `docker pull ${o.imageRef}`,
      script: pullImageScript(o.imageRef, o.login ? { username: o.login.username } : undefined),
      stdin: o.login?.password,
      onLine: (l) => log.info(l),
      hint: o.login
        ? "Check registry-username/registry-password and that the host reaches the registry."
        : "Pass registry-username and registry-password, or log the host's docker in to the registry.",
    });
  });
  return {
    bin: check.compose,
    project: o.app,
    dir: o.env.path,
    files: [stage.composeFile, stage.override],
    projectDirectory: o.env.path,
  };
}
