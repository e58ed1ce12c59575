import { loadConfig, selectEnvironment } from "../config/load.js";
import { ConfigError } from "../core/errors.js";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { registerSecret } from "../core/secrets.js";
import { writeSummary } from "../core/summary.js";
import { runUrl, workspacePath } from "../core/workspace.js";
import { loadComposeSource } from "../deploy/compose-file.js";
import { openHosts } from "../deploy/hosts.js";
import { checkImageRef } from "../deploy/release.js";
import { migrateOnFirstHost, migrateSections } from "../migrate/index.js";
import { lockOwner } from "../release/lock.js";
import { lockState, releaseSavedLock, requireKnownHosts } from "./lock-state.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  environment: input.string(),
  "image-ref": input.string(),
  "ssh-key": input.string(),
  "known-hosts": input.string(),
  "registry-username": input.optional(),
  "registry-password": input.optional(),
  "dry-run": input.bool(false),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  if (!i.environment)
    throw new ConfigError("The environment input is required.", {
      hint: "Set `environment: staging` (a name from deploy-kit.yml).",
    });
  if (!i["image-ref"])
    throw new ConfigError("The image-ref input is required.", {
      hint: "Pass the image-ref output of build-image.",
    });
  checkImageRef(i["image-ref"]);
  requireKnownHosts(i["known-hosts"]);
  const { config } = await loadConfig(workspacePath(i.config), { environment: i.environment });
  const env = selectEnvironment(config, i.environment);
  if (!env.migrate) {
    log.info(`Environment ${i.environment} has no \`migrate\` section: nothing to run.`);
    setOutputs({ backup: "", "backup-copy": "", applied: false, plan: "" });
    await writeSummary(`deploy-kit: no migrations for ${i.environment}`, [
      { lines: ["The environment has no `migrate` section."] },
    ]);
    return;
  }
  const login = loginFrom(i["registry-username"], i["registry-password"]);
  const compose = await loadComposeSource(env);
  const first = env.hosts[0]!;
  const hosts = await openHosts(env, { sshKey: i["ssh-key"], knownHosts: i["known-hosts"] }, log, {
    only: [first.alias],
  });
  try {
    const report = await migrateOnFirstHost(
      {
        config,
        environment: i.environment,
        env,
        remote: hosts.remotes[0]!,
        compose,
        imageRef: i["image-ref"],
        login,
        dryRun: i["dry-run"],
        gitSha: process.env.GITHUB_SHA,
        actor: process.env.GITHUB_ACTOR || lockOwner(),
        runUrl: runUrl(),
        onLock: (token) => lockState.save({ token, aliases: [first.alias] }),
        onUnlock: () => lockState.clear(),
      },
      log,
    );
    setOutputs({
      backup: report.outcome?.backup?.path ?? "",
      "backup-copy": report.outcome?.backup?.copy ?? "",
      applied: report.outcome?.applied ?? false,
      plan: report.outcome?.plan ?? "",
    });
    await writeSummary(report.title, migrateSections(report));
    if (report.error) throw report.error;
  } finally {
    await hosts.close();
  }
}

function loginFrom(username?: string, password?: string) {
  registerSecret(password);
  if (!username && !password) return undefined;
  if (!username || !password) {
    throw new ConfigError("registry-username and registry-password go together; only one was given.", {
      hint: "Pass both (e.g. github.actor and secrets.GITHUB_TOKEN for GHCR), or neither to use the server's own docker login.",
    });
  }
  return { username, password };
}

export default { main, post: releaseSavedLock } satisfies ActionSpec;
