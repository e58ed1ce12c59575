import { loadConfig, selectEnvironment } from "../config/load.js";
import type { Config, Environment } from "../config/schema.js";
import type { Log } from "../core/log.js";
import { releaseLock, withLock } from "../release/lock.js";
import type { SshConnection } from "../ssh/session.js";
import { type ComposeSource, loadComposeSource } from "./compose-file.js";
import { openHosts, type SshSecrets } from "./hosts.js";

/** The lock token and hosts, kept where a cleanup step can find them after a cancel. */
export interface HeldLockRecord {
  token: string;
  aliases: string[];
}

export interface LockStateStore {
  save(record: HeldLockRecord): void;
  clear(): void;
}

export interface LockedEnvironment {
  config: Config;
  env: Environment;
  compose: ComposeSource;
  remotes: SshConnection[];
}

/**
 * Load the config, connect to every host of the environment once and hold its deploy lock
 * while `fn` runs; connections close and locks are released whatever happens. `state` records
 * the lock for a cleanup step (an Actions post step) in case the process is killed.
 */
export async function withLockedEnvironment<T>(
  opts: {
    configFile: string;
    environment: string;
    secrets: SshSecrets;
    log: Log;
    owner?: string;
    state?: LockStateStore;
  },
  fn: (e: LockedEnvironment) => Promise<T>,
): Promise<T> {
  const { config } = await loadConfig(opts.configFile, { environment: opts.environment });
  const env = selectEnvironment(config, opts.environment);
  const compose = await loadComposeSource(env);
  const hosts = await opts.log.group("Connect", () => openHosts(env, opts.secrets, opts.log));
  try {
    return await withLock(
      hosts.remotes,
      {
        path: env.path,
        owner: opts.owner,
        waitMs: env.lock.wait,
        leaseMs: env.lock.lease,
        log: opts.log,
        onAcquired: (token, aliases) => opts.state?.save({ token, aliases }),
        onReleased: () => opts.state?.clear(),
      },
      () => fn({ config, env, compose, remotes: hosts.remotes }),
    );
  } finally {
    await hosts.close();
  }
}

/** Cleanup step: release a lock the main step recorded but could not release (cancelled, killed). */
export async function releaseRecordedLock(opts: {
  configFile: string;
  environment: string;
  secrets: SshSecrets;
  record: HeldLockRecord;
  log: Log;
}): Promise<void> {
  const { config } = await loadConfig(opts.configFile, { environment: opts.environment });
  const env = selectEnvironment(config, opts.environment);
  const hosts = await openHosts(env, opts.secrets, opts.log, { only: opts.record.aliases });
  try {
    for (const r of hosts.remotes) {
      if (await releaseLock(r, env.path, opts.record.token, opts.log))
        opts.log.info(`${r.alias}: released the deploy lock left by the main step`);
    }
  } finally {
    await hosts.close();
  }
}
