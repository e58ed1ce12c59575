import { hostname, userInfo } from "node:os";
import { acquireLockScript, releaseLockScript } from "../commands/release.js";
import { DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { runUrl } from "../core/workspace.js";
import type { Remote } from "../ssh/types.js";
import { newToken } from "./ids.js";

export interface LockInfo {
  owner?: string;
  token?: string;
  /** Epoch seconds on the host's clock. */
  acquired?: number;
  /** Seconds. */
  lease?: number;
}

export interface LockOptions {
  /** The deploy path; the lock lives in <path>/.deploy-kit/lock. */
  path: string;
  /** Who holds it: the run URL on GitHub, user@machine elsewhere. */
  owner?: string;
  waitMs: number;
  leaseMs: number;
  log: Log;
  pollMs?: number;
  /** Called once every host's lock is held (the action saves the token for its post step). */
  onAcquired?: (token: string, aliases: string[]) => void;
  /** Called after every lock was released. */
  onReleased?: () => void;
}

export function lockOwner(): string {
  if (runUrl()) return runUrl()!;
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {}
  return `${user}@${hostname()}`;
}

export function parseAcquireOutput(stdout: string): { acquired: boolean; now: number; holder: LockInfo } {
  const [first = "", ...rest] = stdout.trim().split("\n");
  const [word, now] = first.split(" ");
  let holder: LockInfo = {};
  if (word === "held") {
    try {
      holder = JSON.parse(rest.join("\n")) as LockInfo;
    } catch {}
  }
  return { acquired: word === "acquired", now: Number(now), holder };
}

function describeHolder(h: LockInfo): string {
  const since = h.acquired ? new Date(h.acquired * 1000).toISOString() : "an unknown time";
  const until =
    h.acquired && h.lease !== undefined ? new Date((h.acquired + h.lease) * 1000).toISOString() : "?";
  return `${h.owner ?? "an unknown owner"} (since ${since}, lease until ${until})`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Take the lock on one host: wait up to `waitMs` for a live holder, take over an expired one. */
export async function acquireLock(remote: Remote, token: string, opts: LockOptions): Promise<void> {
  const owner = opts.owner ?? lockOwner();
  const leaseSeconds = Math.max(1, Math.ceil(opts.leaseMs / 1000));
  const deadline = Date.now() + opts.waitMs;
  const poll = opts.pollMs ?? Math.min(2000, Math.max(250, opts.waitMs / 10));
  let takeOver: string | undefined;
  let announced = false;
  for (;;) {
    const res = await remote.run({
      what: "take the deploy lock",
      script: acquireLockScript(opts.path, { owner, token, leaseSeconds, takeOver }),
    });
    const { acquired, now, holder } = parseAcquireOutput(res.stdout);
    if (acquired) {
      opts.log.info(`${remote.alias}: deploy lock taken`);
      return;
    }
    const expired =
      holder.acquired === undefined || holder.lease === undefined || now > holder.acquired + holder.lease;
    if (expired && takeOver === undefined) {
      opts.log.warn(
        `${remote.alias}: the deploy lock held by ${describeHolder(holder)} is past its lease; taking it over (the run that held it ended without releasing it).`,
      );
      takeOver = holder.token ?? "none";
      continue;
    }
    takeOver = undefined;
    if (Date.now() + poll > deadline) {
      throw new DeployError(
        `${remote.alias}: the deploy lock is held by ${describeHolder(holder)}; waited ${Math.round(opts.waitMs / 1000)} s.`,
        {
          host: remote.alias,
          hint: "Another deploy to this environment is running: wait for it, or raise lock.wait in deploy-kit.yml. If it is dead, its lease expires and the next deploy takes the lock over.",
        },
      );
    }
    if (!announced) {
      opts.log.info(`${remote.alias}: waiting for the deploy lock held by ${describeHolder(holder)}`);
      announced = true;
    }
    await sleep(poll);
  }
}

/** Release our lock; never someone else's (a takeover may have replaced it). */
export async function releaseLock(remote: Remote, path: string, token: string, log?: Log): Promise<boolean> {
  const res = await remote.run({ what: "release the deploy lock", script: releaseLockScript(path, token) });
  const released = res.stdout.trim() === "released";
  if (!released && res.stdout.trim() === "not-ours")
    log?.warn(
      `${remote.alias}: the deploy lock was no longer ours (taken over after the lease); left in place.`,
    );
  return released;
}

/**
 * Hold the lock on every host while `fn` runs. Hosts are locked in alias order, so two runs
 * on overlapping hosts cannot each hold half and wait for the other.
 */
export async function withLock<T>(
  remotes: readonly Remote[],
  opts: LockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const token = newToken();
  const ordered = [...remotes].sort((a, b) => a.alias.localeCompare(b.alias));
  const held: Remote[] = [];
  // The record for the post step is cleared only when every release reached its host: a lock
  // left on a host we could not reach (connection lost) is still released by the post step.
  const releaseAll = async () => {
    const results = await Promise.allSettled(held.map((r) => releaseLock(r, opts.path, token, opts.log)));
    results.forEach((r, i) => {
      if (r.status === "rejected")
        opts.log.warn(`${held[i]!.alias}: could not release the deploy lock: ${(r.reason as Error).message}`);
    });
    if (results.every((r) => r.status === "fulfilled")) opts.onReleased?.();
  };
  try {
    for (const r of ordered) {
      // Saved before the lock exists on the host: a cancel right after it still releases it.
      if (held.length === 0)
        opts.onAcquired?.(
          token,
          ordered.map((x) => x.alias),
        );
      await acquireLock(r, token, opts);
      held.push(r);
    }
  } catch (e) {
    await releaseAll();
    throw e;
  }
  try {
    return await fn();
  } finally {
    await releaseAll();
  }
}
