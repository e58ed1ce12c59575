import type { SshSecrets } from "../deploy/hosts.js";
import { type HeldLockRecord, type LockStateStore, releaseRecordedLock } from "../deploy/operation.js";
import type { CliContext } from "./types.js";

/**
 * Ctrl-C during a locked operation: the domain cannot be cancelled halfway, but the lock it holds
 * must not stay behind for 30 minutes. The first interrupt releases the recorded lock over a
 * fresh connection and exits 130; the hosts keep whatever release their health gate last
 * accepted, and the ledger tells which.
 */
export async function withInterruptRelease<T>(
  ctx: CliContext,
  opts: { configFile: string; environment: string; secrets: SshSecrets },
  fn: (state: LockStateStore) => Promise<T>,
): Promise<T> {
  let record: HeldLockRecord | undefined;
  const state: LockStateStore = {
    save: (r) => {
      record = r;
    },
    clear: () => {
      record = undefined;
    },
  };
  const onSignal = (signal: NodeJS.Signals) => {
    ctx.log.error(`${signal}: stopping; releasing the deploy lock first.`);
    const held = record;
    const release = held ? releaseRecordedLock({ ...opts, record: held, log: ctx.log }) : Promise.resolve();
    release
      .catch((e) =>
        ctx.log.error(
          `could not release the lock: ${(e as Error).message}; run \`deploy-kit lock release --env ${opts.environment}\``,
        ),
      )
      .finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await fn(state);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
