import * as core from "@actions/core";
import { ConfigError } from "../core/errors.js";
import { input, readInputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import { runUrl, workspacePath } from "../core/workspace.js";
import {
  type HeldLockRecord,
  type LockStateStore,
  releaseRecordedLock,
  withLockedEnvironment,
} from "../deploy/operation.js";
import type { RegistryCredentials, ReleaseContext } from "../deploy/release.js";
import { lockOwner } from "../release/lock.js";
import type { Remote } from "../ssh/types.js";

const STATE_KEY = "lock";

/** The lock token goes to the post step, which releases it if the main step was cancelled. */
export const lockState: LockStateStore = {
  save: (r: HeldLockRecord) => core.saveState(STATE_KEY, JSON.stringify(r)),
  clear: () => core.saveState(STATE_KEY, ""),
};

/** What every post step needs to reach the hosts again; a subset of the actions' inputs. */
const postInputs = {
  config: input.string("deploy-kit.yml"),
  environment: input.string(),
  "ssh-key": input.string(),
  "known-hosts": input.string(),
};

/**
 * The post step of every action that takes the deploy lock: runs even when the job was
 * cancelled, and releases a lock the main step recorded but could not release.
 */
export async function releaseSavedLock(log: Log): Promise<void> {
  const saved = core.getState(STATE_KEY);
  if (!saved) return;
  const i = readInputs(postInputs);
  await releaseRecordedLock({
    configFile: workspacePath(i.config),
    environment: i.environment,
    secrets: { sshKey: i["ssh-key"], knownHosts: i["known-hosts"] },
    record: JSON.parse(saved) as HeldLockRecord,
    log,
  });
}

export function registryInputs(i: {
  "registry-username"?: string;
  "registry-password"?: string;
}): RegistryCredentials | undefined {
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

interface HostInputs {
  config: string;
  environment: string;
  "ssh-key": string;
  "known-hosts": string;
  "registry-username"?: string;
  "registry-password"?: string;
}

/**
 * What deploy-ssh and rollback share: connect to the environment's hosts once, hold the deploy
 * lock (recorded for the post step), and hand the release operation its context.
 */
export function withReleaseContext<T>(
  i: HostInputs,
  log: Log,
  fn: (ctx: ReleaseContext, remotes: Remote[]) => Promise<T>,
): Promise<T> {
  requireKnownHosts(i["known-hosts"]);
  return withLockedEnvironment(
    {
      configFile: workspacePath(i.config),
      environment: i.environment,
      secrets: { sshKey: i["ssh-key"], knownHosts: i["known-hosts"] },
      log,
      state: lockState,
    },
    ({ config, env, compose, remotes }) =>
      fn(
        {
          config,
          env,
          compose,
          registry: registryInputs(i),
          actor: process.env.GITHUB_ACTOR || lockOwner(),
          runUrl: runUrl(),
          log,
        },
        remotes,
      ),
  );
}
