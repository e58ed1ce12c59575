import { ConfigError } from "../core/errors.js";
import type { LedgerEntry } from "../release/ledger.js";
import type { TrialRestore } from "./backup.js";
import type { MigrateOutcome, MigrationFailed } from "./run.js";

/** What the ledger says about the migration of one image: copied into that release's entry. */
export interface MigrationRecord {
  backup: string | null;
  "migration-applied": boolean | null;
}

/**
 * The ledger line the migrate action appends (kind "migrate"), so the backup path and whether
 * migrations applied are on the host, per release, even when deploy-ssh runs as a separate step.
 */
export function migrateLedgerEntry(
  base: Omit<LedgerEntry, "kind" | "status" | "backup" | "migration-applied" | "reason">,
  result: { outcome: MigrateOutcome } | { failed: MigrationFailed } | { backupFailed: Error },
): LedgerEntry {
  if ("outcome" in result) {
    return {
      ...base,
      kind: "migrate",
      status: "succeeded",
      backup: result.outcome.backup?.path ?? null,
      "migration-applied": result.outcome.applied,
      ...(result.outcome.backup?.trial ? { "backup-trial": trialRecord(result.outcome.backup.trial) } : {}),
    };
  }
  const failed = "failed" in result;
  const reason = failed
    ? `migration \`${result.failed.details.command}\` exited ${result.failed.details.exitCode}`
    : `backup failed: ${result.backupFailed.message.split("\n").pop()}`;
  return {
    ...base,
    kind: "migrate",
    status: "failed",
    backup: failed ? (result.failed.details.backup?.path ?? null) : null,
    ...(failed && result.failed.details.backup?.trial
      ? { "backup-trial": trialRecord(result.failed.details.backup.trial) }
      : {}),
    "migration-applied": false,
    reason: reason.slice(0, 300),
  };
}

function trialRecord(t: TrialRestore): NonNullable<LedgerEntry["backup-trial"]> {
  return { bytes: t.bytes, tables: t.tables, "duration-s": t.durationS };
}

/**
 * For deploy-ssh: the migration recorded for `imageRef` since the live release, to copy into the
 * new release's entry. Null fields when migrate did not run for this image.
 */
export function migrationFor(entries: readonly LedgerEntry[], imageRef: string): MigrationRecord {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    if (e.kind !== "migrate" && e["image-ref"] === imageRef) break;
    if (e.kind === "migrate" && e.status === "succeeded" && e["image-ref"] === imageRef) {
      return { backup: e.backup, "migration-applied": e["migration-applied"] };
    }
  }
  return { backup: null, "migration-applied": null };
}

export interface RollbackDatabasePlan {
  /** The backup that holds the database as the target release left it, if any was recorded. */
  backup: string | null;
  /** Entries after the target that applied migrations: rolling back the code leaves them applied. */
  migratedSince: LedgerEntry[];
}

/**
 * Which backup rollback's `restore-backup` would restore: the one taken right before the first
 * migration after the target release (the database as the target left it). Anything written
 * since is lost by restoring, which is why it is an explicit opt-in.
 */
export function rollbackDatabasePlan(
  entries: readonly LedgerEntry[],
  target: LedgerEntry,
): RollbackDatabasePlan {
  const at = entries.findLastIndex((e) => e.id === target.id && e.kind !== "migrate");
  const after = entries.slice(at + 1);
  const backupEntry = after.find((e) => e.backup);
  const migratedSince = after.filter((e) => e["migration-applied"] === true);
  return { backup: backupEntry?.backup ?? null, migratedSince };
}

/** For rollback: refuse restore-backup without a recorded backup, warn when migrations stay applied. */
export function checkRollbackDatabase(
  plan: RollbackDatabasePlan,
  target: LedgerEntry,
  restore: boolean,
  warn: (m: string) => void,
): string | undefined {
  if (restore) {
    if (!plan.backup) {
      throw new ConfigError(`restore-backup: no database backup is recorded after release ${target.id}.`, {
        hint: "Roll back without restore-backup, or restore a backup by hand (they are in <path>/.deploy-kit/backups/ on the first host).",
      });
    }
    return plan.backup;
  }
  if (plan.migratedSince.length) {
    const ids = [...new Set(plan.migratedSince.map((e) => e.id))].join(", ");
    warn(
      `Rolling back to ${target.id} across release(s) that applied migrations (${ids}) without restoring the database: the schema stays migrated. If the old code cannot run on it, roll back with restore-backup: true${plan.backup ? ` (it would restore ${plan.backup})` : ""}.`,
    );
  }
  return undefined;
}
