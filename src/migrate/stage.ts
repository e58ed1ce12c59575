import { parse } from "yaml";
import {
  type ComposeProject,
  detectComposeScript,
  imageOverride,
  parseComposeBin,
} from "../commands/compose.js";
import { pullImageScript } from "../commands/docker.js";
import { script, sh } from "../commands/shell.js";
import type { Environment } from "../config/schema.js";
import { DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import type { Remote } from "../ssh/types.js";
import { migrateStage } from "./commands.js";

export interface StageOptions {
  app: string;
  env: Environment;
  /** The repository's compose file text (env.compose.file), uploaded as is. */
  composeText: string;
  imageRef: string;
  /** Registry login for the pull on the host; the password is only ever sent on stdin. */
  login?: { username: string; password: string };
}

/**
 * Put the new release's compose file and an override pinning the image under
 * <path>/.deploy-kit/migrate/ (the live release's files stay as they are), and pull the image.
 * Returns the compose project migrations and backups run with: project name = app, so
 * `compose exec` finds the running containers; project directory = the deploy path, so compose
 * reads the operator's .env there.
 */
export async function stageMigration(remote: Remote, o: StageOptions, log: Log): Promise<ComposeProject> {
  const detected = await remote.run({ what: "detect docker compose", script: detectComposeScript() });
  const bin = parseComposeBin(detected.stdout);
  if (!bin) {
    throw new DeployError(`Neither \`docker compose\` nor \`docker-compose\` works on ${remote.alias}.`, {
      host: remote.alias,
      hint: "Install the Docker Compose plugin on the host (apt-get install docker-compose-plugin).",
    });
  }
  const stage = migrateStage(o.env.path, o.env.compose.file);
  let version: string | undefined;
  try {
    const doc = parse(o.composeText) as { version?: unknown } | null;
    if (doc && typeof doc.version === "string") version = doc.version;
  } catch {
    // compose itself reports a broken file, with its own line numbers.
  }
  await remote.run({ what: "prepare the migration directory", script: script(sh`mkdir -p ${stage.dir}`) });
  await remote.upload(stage.composeFile, o.composeText, 0o644);
  await remote.upload(
    stage.override,
    imageOverride(
      [...new Set([...o.env.compose.service, o.env.migrate?.service].filter((s): s is string => !!s))],
      o.imageRef,
      version,
    ),
    0o644,
  );
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
    bin,
    project: o.app,
    dir: o.env.path,
    files: [stage.composeFile, stage.override],
    projectDirectory: o.env.path,
  };
}
