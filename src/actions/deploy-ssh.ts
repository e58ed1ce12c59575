import * as core from "@actions/core";
import { z } from "zod";
import { ConfigError } from "../core/errors.js";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { runUrl, workspacePath } from "../core/workspace.js";
import { type HeldLockRecord, releaseRecordedLock, withLockedEnvironment } from "../deploy/operation.js";
import { deployRelease } from "../deploy/release.js";
import { hostSections } from "../deploy/summary.js";
import { lockOwner } from "../release/lock.js";

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

const LOCK_STATE = "lock";

/** The lock token goes to the post step, which releases it if this step was cancelled. */
export const lockState = {
  save: (r: HeldLockRecord) => core.saveState(LOCK_STATE, JSON.stringify(r)),
  clear: () => core.saveState(LOCK_STATE, ""),
};

export function registryInputs(i: { "registry-username"?: string; "registry-password"?: string }) {
  if (!i["registry-username"] && !i["registry-password"]) return undefined;
  return { username: i["registry-username"] ?? "", password: i["registry-password"] ?? "" };
}

export function requireKnownHosts(knownHosts: string): void {
  if (!knownHosts.trim()) {
    throw new ConfigError(
      "The known-hosts input is empty: deploy-kit pins host keys and never trusts on first use.",
      {
        hint: "Run `ssh-keyscan -t ed25519,ecdsa,rsa <host>` for each host (and the jump host), verify the fingerprints on the server, and pass the lines from a secret or variable as `known-hosts`.",
      },
    );
  }
}

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

/** Runs even when the job was cancelled: release a lock main could not. */
async function post(log: Log): Promise<void> {
  const saved = core.getState(LOCK_STATE);
  if (!saved) return;
  const i = readInputs(inputs);
  await releaseRecordedLock({
    configFile: workspacePath(i.config),
    environment: i.environment,
    secrets: { sshKey: i["ssh-key"], knownHosts: i["known-hosts"] },
    record: JSON.parse(saved) as HeldLockRecord,
    log,
  });
}

export default { main, post } satisfies ActionSpec;
