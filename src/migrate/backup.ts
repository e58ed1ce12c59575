import type { ComposeProject } from "../commands/compose.js";
import { composeLine } from "../commands/compose.js";
import {
  BACKUP_RESULT,
  backupFileName,
  backupScript,
  backupStamp,
  DATABASE_RESULT,
  type DatabaseTarget,
  pgRestoreArgv,
  restoreScript,
  scratchDatabaseName,
  TRIAL_RESULT,
  type VerifyMode,
  verifyBackupScript,
} from "../commands/postgres.js";
import { statePaths } from "../commands/release.js";
import { argvToShell } from "../commands/shell.js";
import type { Environment } from "../config/schema.js";
import { CommandError, ConfigError, DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import type { Remote } from "../ssh/types.js";

export type BackupSettings = NonNullable<NonNullable<Environment["migrate"]>["backup"]>;

/** Where the database lives, seen from the host: a compose service of the project. */
export interface DbTarget {
  remote: Remote;
  /** The deploy path on the host. */
  path: string;
  /** A compose project whose services include `backup.service`. */
  compose: ComposeProject;
  backup: BackupSettings;
}

export interface BackupResult {
  /** Path of the verified dump on the host. */
  path: string;
  bytes: number;
  /** Objects pg_restore --list found in it. */
  entries: number;
  /** verify: restore: what the trial restore into a scratch database produced. */
  trial?: TrialRestore;
}

export interface TrialRestore {
  /** pg_database_size of the scratch database after the restore. */
  bytes: number;
  tables: number;
  durationS: number;
}

/** Production (required: true) proves a dump restores unless told otherwise. */
export function verifyMode(b: BackupSettings, label: string): VerifyMode {
  const kind = b.verify ?? (b.required ? "restore" : "list");
  if (kind === "list") return { kind };
  return { kind, scratch: scratchDatabaseName(label), timeoutSecs: b["verify-timeout"] / 1000 };
}

/** The DK-TRIAL line of a trial restore, if one ran. */
export function parseTrial(stdout: string): TrialRestore | undefined {
  const line = stdout.split("\n").find((l) => l.startsWith(`${TRIAL_RESULT} `));
  if (!line) return undefined;
  const [, bytes, tables, secs] = line.split(" ");
  return { bytes: Number(bytes) || 0, tables: Number(tables) || 0, durationS: Number(secs) || 0 };
}

/** One line for logs, summaries and errors: how a backup was verified. */
export function describeVerification(b: BackupResult): string {
  return b.trial
    ? `verified by a trial restore: ${b.trial.tables} tables, ${size(b.trial.bytes)} restored in ${b.trial.durationS} s`
    : "verified with pg_restore --list";
}

export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function backupDir(path: string): string {
  return `${statePaths(path).state}/backups`;
}

export function databaseTarget(b: BackupSettings): DatabaseTarget {
  return { databaseEnv: b["database-env"], database: b.database, user: b.user };
}

/** compose words without a subcommand, for scripts that add their own (`exec -T db ...`). */
function composeWords(p: ComposeProject): string {
  return composeLine(p, []).trimEnd();
}

/** Dump a running database and verify the dump before anything may depend on it. */
export async function takeBackup(
  t: DbTarget,
  opts: { label: string; now?: Date; timeoutMs?: number; prune?: boolean },
  log: Log,
): Promise<BackupResult> {
  const now = opts.now ?? new Date();
  const name = backupFileName(now, opts.label);
  const verify = verifyMode(t.backup, `${backupStamp(now)}_${opts.label}`);
  const res = await t.remote.run({
    what: `pg_dump backup in service ${t.backup.service}`,
    script: backupScript({
      compose: composeWords(t.compose),
      service: t.backup.service,
      db: databaseTarget(t.backup),
      dir: backupDir(t.path),
      name,
      keep: t.backup.keep,
      verify,
      prune: opts.prune,
    }),
    // The trial restore has its own deadline inside; this one bounds the whole step.
    timeoutMs:
      opts.timeoutMs &&
      (verify.kind === "restore" ? opts.timeoutMs + t.backup["verify-timeout"] : opts.timeoutMs),
    onLine: (l) => {
      if (!l.startsWith(BACKUP_RESULT) && !l.startsWith(TRIAL_RESULT)) log.info(l);
    },
    hint: `The backup runs pg_dump inside the compose service "${t.backup.service}": check that it has pg_dump${
      verify.kind === "restore"
        ? ", psql and pg_restore (the trial restore needs a user with CREATEDB, or set migrate.backup.verify: list)"
        : ""
    } and ${
      t.backup["database-env"] ? `the ${t.backup["database-env"]} variable` : `database ${t.backup.database}`
    }, and that the database is up.`,
  });
  const line = res.stdout.split("\n").find((l) => l.startsWith(`${BACKUP_RESULT} `));
  const [, path, bytes, entries] = line?.split(" ") ?? [];
  if (!path)
    throw new DeployError(`The backup on ${t.remote.alias} reported no file.`, { host: t.remote.alias });
  const trial = parseTrial(res.stdout);
  if (verify.kind === "restore" && !trial)
    throw new DeployError(`The backup on ${t.remote.alias} reported no trial restore.`, {
      host: t.remote.alias,
    });
  return { path, bytes: Number(bytes) || 0, entries: Number(entries) || 0, ...(trial ? { trial } : {}) };
}

/** The exact command an operator runs on the host to put a backup back by hand. */
export function restoreCommand(t: Omit<DbTarget, "remote">, file: string): string {
  return `${composeLine(t.compose, ["exec", "-T", t.backup.service, ...pgRestoreArgv(databaseTarget(t.backup))])} < ${argvToShell([file])}`;
}

/** What rollback's `confirm-restore` must say: the database that is replaced and the backup that replaces it. */
export function restoreConfirmation(database: string, file: string): string {
  return `${database}@${file.split("/").pop()}`;
}

/**
 * Before a restore, read-only: the archive is on the host and passes verification (as the
 * backup setting says: listable, or a trial restore), the database it would replace is named
 * from inside the service, and the confirmation names both. Nothing is changed here.
 */
export async function checkRestore(
  t: DbTarget & { file: string; confirm?: string },
  log: Log,
): Promise<{ database: string; trial?: TrialRestore }> {
  const verify = verifyMode(t.backup, `${backupStamp(new Date())}_check`);
  let stdout: string;
  try {
    stdout = (
      await t.remote.run({
        what: `verify backup ${t.file}`,
        script: verifyBackupScript({
          compose: composeWords(t.compose),
          service: t.backup.service,
          db: databaseTarget(t.backup),
          file: t.file,
          verify,
        }),
        timeoutMs: t.backup["verify-timeout"] + 120_000,
        onLine: (l) => {
          if (!l.startsWith(DATABASE_RESULT) && !l.startsWith(TRIAL_RESULT)) log.info(l);
        },
      })
    ).stdout;
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    throw new DeployError(
      `The backup ${t.file} on ${t.remote.alias} failed verification; nothing was changed.\n${e.message}`,
      {
        host: t.remote.alias,
        hint: "Choose another backup (they are in <path>/.deploy-kit/backups/ on the first host) or roll back without restore-backup.",
        cause: e,
      },
    );
  }
  const database = stdout
    .split("\n")
    .find((l) => l.startsWith(`${DATABASE_RESULT} `))
    ?.slice(DATABASE_RESULT.length + 1)
    .trim();
  if (!database)
    throw new DeployError(
      `${t.remote.alias} did not name the database to restore into; nothing was changed.`,
      {
        host: t.remote.alias,
      },
    );
  const expected = restoreConfirmation(database, t.file);
  if (t.confirm !== expected) {
    throw new ConfigError(
      `restore-backup replaces database ${database} with ${t.file} on ${t.remote.alias}, and the confirmation does not name both${
        t.confirm ? ` (got "${t.confirm}")` : ""
      }. Nothing was changed.`,
      {
        hint: `To go ahead, pass exactly: confirm-restore: ${expected}  (CLI: --confirm-restore ${expected})`,
      },
    );
  }
  const trial = parseTrial(stdout);
  if (trial) log.info(`${t.file}: ${describeVerification({ path: t.file, bytes: 0, entries: 0, trial })}`);
  return { database, ...(trial ? { trial } : {}) };
}

/**
 * Put a backup back (rollback's `restore-backup`), after checkRestore and with the app's
 * writers stopped by the caller: first a safety dump of the current database (kept, never
 * pruned by this run), then pg_restore --clean in one transaction under a deadline, inside the
 * db service, so either the whole dump is restored or nothing changes.
 */
export async function restoreBackup(
  t: DbTarget & { file: string; label: string; timeoutMs: number },
  log: Log,
): Promise<{ safety: BackupResult }> {
  return log.group(`Restore database backup ${t.file} on ${t.remote.alias}`, async () => {
    let safety: BackupResult;
    try {
      safety = await takeBackup(
        t,
        { label: `pre-restore-${t.label}`, prune: false, timeoutMs: t.timeoutMs },
        log,
      );
    } catch (e) {
      throw new DeployError(
        `The safety dump of the current database failed on ${t.remote.alias}, so ${t.file} was not restored; the database is unchanged.\n${(e as Error).message}`,
        { host: t.remote.alias, hint: (e as { hint?: string }).hint, cause: e },
      );
    }
    log.info(
      `safety dump of the current database: ${safety.path} (${size(safety.bytes)}, ${describeVerification(safety)}); kept`,
    );
    try {
      await t.remote.run({
        what: `pg_restore of ${t.file}`,
        script: restoreScript({
          compose: composeWords(t.compose),
          service: t.backup.service,
          db: databaseTarget(t.backup),
          file: t.file,
          timeoutSecs: t.timeoutMs / 1000,
        }),
        timeoutMs: t.timeoutMs + 60_000,
        onLine: (l) => log.info(l),
      });
    } catch (e) {
      if (e instanceof CommandError) {
        throw new DeployError(`Restoring ${t.file} failed on ${t.remote.alias}: ${e.message}`, {
          host: t.remote.alias,
          hint: `Nothing was changed (the restore runs in one transaction). The safety dump taken just before is ${safety.path}. To retry by hand on the host: ${restoreCommand(t, t.file)}`,
          cause: e,
        });
      }
      throw e;
    }
    return { safety };
  });
}
