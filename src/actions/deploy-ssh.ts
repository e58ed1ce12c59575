import { z } from "zod";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { runUrl, workspacePath } from "../core/workspace.js";
import { withLockedEnvironment } from "../deploy/operation.js";
import { deployRelease } from "../deploy/release.js";
import { hostSections } from "../deploy/summary.js";
import { lockOwner } from "../release/lock.js";
import { lockState, registryInputs, releaseSavedLock, requireKnownHosts } from "./lock-state.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  environment: z.string().min(1, "required: the environment to deploy to"),
  "image-ref": z.string().min(1, "required: the image to deploy (build-image's image-ref output)"),
  "ssh-key": input.string(),
  "known-hosts": input.string(),
  "registry-username": input.optional(),
  "registry-password": input.optional(),
  "git-sha": input.optional(),
  version: input.optional(),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  requireKnownHosts(i["known-hosts"]);
  const gitSha = i["git-sha"] ?? process.env.GITHUB_SHA;
  const result = await withLockedEnvironment(
    {
      configFile: workspacePath(i.config),
      environment: i.environment,
      secrets: { sshKey: i["ssh-key"], knownHosts: i["known-hosts"] },
      log,
      state: lockState,
    },
    ({ config, env, compose, remotes }) =>
      deployRelease(remotes, {
        config,
        env,
        compose,
        registry: registryInputs(i),
        actor: process.env.GITHUB_ACTOR || lockOwner(),
        runUrl: runUrl(),
        log,
        imageRef: i["image-ref"],
        gitSha,
        version: i.version,
      }),
  );
  setOutputs({
    "release-id": result.releaseId,
    "previous-release-id": result.previousReleaseId ?? "",
    hosts: JSON.stringify(result.hosts),
    "rolled-back": result.rolledBack,
  });
  const title = result.error
    ? result.rolledBack
      ? `deploy-kit: release ${result.releaseId} failed and was rolled back`
      : `deploy-kit: release ${result.releaseId} failed`
    : `deploy-kit: release ${result.releaseId} is live on ${i.environment}`;
  await writeSummary(
    title,
    hostSections(result.hosts, [
      `Image \`${result.imageRef}\`${result.previousReleaseId ? `, previous release \`${result.previousReleaseId}\`` : ""}`,
    ]),
  );
  if (result.error) throw result.error;
}

export default { main, post: releaseSavedLock } satisfies ActionSpec;
