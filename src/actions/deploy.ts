import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { runUrl, workspacePath } from "../core/workspace.js";
import { pipelineSections, pipelineTitle, runPipeline } from "../pipeline/deploy.js";
import { lockOwner } from "../release/lock.js";
import { inputs as deploySshInputs } from "./deploy-ssh.js";
import { lockState, registryInputs, releaseSavedLock, requireKnownHosts } from "./lock-state.js";

/** deploy-ssh's inputs, plus what only the whole pipeline needs. */
export const inputs = {
  ...deploySshInputs,
  "github-token": input.optional(),
  "require-backup": input.bool(false),
};

/** A v1.2.3 tag names the version; otherwise the ledger records none. */
function versionFromRef(): string | undefined {
  const ref = process.env.GITHUB_REF ?? "";
  return ref.startsWith("refs/tags/") ? ref.slice("refs/tags/".length) : undefined;
}

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  requireKnownHosts(i["known-hosts"]);
  const result = await runPipeline({
    configFile: workspacePath(i.config),
    environment: i.environment,
    imageRef: i["image-ref"],
    gitSha: i["git-sha"] ?? process.env.GITHUB_SHA,
    version: i.version ?? versionFromRef(),
    secrets: { sshKey: i["ssh-key"], knownHosts: i["known-hosts"] },
    registry: registryInputs(i),
    requireBackup: i["require-backup"],
    actor: process.env.GITHUB_ACTOR || lockOwner(),
    runUrl: runUrl(),
    github: i["github-token"] ? { token: i["github-token"], baseUrl: process.env.GITHUB_API_URL } : undefined,
    lockState,
    log,
  });
  setOutputs({
    "release-id": result.releaseId,
    "image-ref": result.imageRef,
    "rolled-back": result.rolledBack,
    url: result.url,
    "backup-copy": result.migrate?.outcome?.backup?.copy ?? "",
  });
  await writeSummary(pipelineTitle(result, i.environment), pipelineSections(result));
  if (result.error) throw result.error;
}

export default { main, post: releaseSavedLock } satisfies ActionSpec;
