import type { ComposeProject } from "../commands/compose.js";
import { composeLine } from "../commands/compose.js";
import {
  BACKUP_RESULT,
  backupFileName,
  backupScript,
  type DatabaseTarget,
  pgRestoreArgv,
  restoreScript,
} from "../commands/postgres.js";
import { statePaths } from "../commands/release.js";
import { argvToShell } from "../commands/shell.js";
import type { Environment } from "../config/schema.js";
import { CommandError, DeployError } from "../core/errors.js";
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
  opts: { label: string; now?: Date; timeoutMs?: number },
  log: Log,
): Promise<BackupResult> {
  const name = backupFileName(opts.now ?? new Date(), opts.label);
  const res = await t.remote.run({
    what: `pg_dump backup in service ${t.backup.service}`,
    script: backupScript({
      compose: composeWords(t.compose),
      service: t.backup.service,
      db: databaseTarget(t.backup),
      dir: backupDir(t.path),
      name,
      keep: t.backup.keep,
    }),
    timeoutMs: opts.timeoutMs,
    onLine: (l) => {
      if (!l.startsWith(BACKUP_RESULT)) log.info(l);
    },
    hint: `The backup runs pg_dump inside the compose service "${t.backup.service}": check that it has pg_dump and ${
      t.backup["database-env"] ? `the ${t.backup["database-env"]} variable` : `database ${t.backup.database}`
    }, and that the database is up.`,
  });
  const line = res.stdout.split("\n").find((l) => l.startsWith(`${BACKUP_RESULT} `));
  const [, path, bytes, entries] = line?.split(" ") ?? [];
  if (!path)
    throw new DeployError(`The backup on ${t.remote.alias} reported no file.`, { host: t.remote.alias });
  return { path, bytes: Number(bytes) || 0, entries: Number(entries) || 0 };
}

/** The exact command an operator runs on the host to put a backup back by hand. */
export function restoreCommand(t: Omit<DbTarget, "remote">, file: string): string {
  return `${composeLine(t.compose, ["exec", "-T", t.backup.service, ...pgRestoreArgv(databaseTarget(t.backup))])} < ${argvToShell([file])}`;
}

/**
 * Put a backup back (rollback's `restore-backup: true`): pg_restore --clean in one transaction,
 * inside the db service, so either the whole dump is restored or nothing changes.
 */
export async function restoreBackup(t: DbTarget & { file: string }, log: Log): Promise<void> {
  await log.group(`Restore database backup ${t.file} on ${t.remote.alias}`, async () => {
    try {
      await t.remote.run({
        what: `pg_restore of ${t.file}`,
        script: restoreScript({
          compose: composeWords(t.compose),
          service: t.backup.service,
          db: databaseTarget(t.backup),
          file: t.file,
        }),
        onLine: (l) => log.info(l),
      });
    } catch (e) {
      if (e instanceof CommandError) {
        throw new DeployError(`Restoring ${t.file} failed on ${t.remote.alias}: ${e.message}`, {
          host: t.remote.alias,
          hint: `Nothing was changed (the restore runs in one transaction). To retry by hand on the host: ${restoreCommand(t, t.file)}`,
          cause: e,
        });
      }
      throw e;
    }
  });
}
