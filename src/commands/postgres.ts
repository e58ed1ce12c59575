import { quote, raw, script, sh } from "./shell.js";

/**
 * Which database the dump/restore targets, seen from INSIDE the db service's container:
 * either an env var holding a URL (read there, never by deploy-kit), or a name and user for
 * the server's local socket (the official postgres image).
 */
export interface DatabaseTarget {
  databaseEnv?: string;
  database?: string;
  user?: string;
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PG_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * Shell lines (run inside the container) that put the connection URL in $url. SQLAlchemy-style
 * URLs (postgresql+psycopg://) are made libpq URLs, so the app's own DATABASE_URL works as is.
 */
function urlFromEnv(name: string): string {
  if (!ENV_KEY.test(name)) throw new Error(`not an environment variable name: ${name}`);
  return [
    sh`url=$(printenv ${name} || true)`,
    sh`[ -n "$url" ] || { echo ${`${name} is not set in this container`} >&2; exit 64; }`,
    `url=$(printf '%s' "$url" | sed -E 's#^(postgres(ql)?)\\+[A-Za-z0-9_]+://#\\1://#')`,
  ].join("\n");
}

/** How pg_* tools address the database: a URL from the env, or -U user dbname. */
function connection(db: DatabaseTarget, flag: "" | "-d "): { prelude: string; args: string } {
  if (db.databaseEnv) return { prelude: urlFromEnv(db.databaseEnv), args: `${flag}"$url"` };
  if (!db.database || !PG_NAME.test(db.database)) throw new Error("backup needs database-env or database");
  if (db.user && !PG_NAME.test(db.user)) throw new Error(`not a database user name: ${db.user}`);
  const user = db.user ? sh`-U ${db.user} ` : "";
  return { prelude: "", args: `${user}${flag}${quote(db.database)}` };
}

/** argv run in the db service: a custom-format dump on stdout (pg_dump's version = the server's). */
export function pgDumpArgv(db: DatabaseTarget): string[] {
  const c = connection(db, "");
  return ["sh", "-c", [c.prelude, `exec pg_dump -Fc ${c.args}`].filter(Boolean).join("\n")];
}

/** argv run in the db service: reads a dump on stdin and lists its contents (fails on a bad file). */
export function pgRestoreListArgv(): string[] {
  return ["pg_restore", "--list"];
}

/**
 * argv run in the db service: restores the dump on stdin over the current database, in one
 * transaction so a failed restore changes nothing. --no-owner: the app's user owns what it restores.
 */
export function pgRestoreArgv(db: DatabaseTarget): string[] {
  const c = connection(db, "-d ");
  return [
    "sh",
    "-c",
    [
      c.prelude,
      `exec pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error ${c.args}`,
    ]
      .filter(Boolean)
      .join("\n"),
  ];
}

/** 2026-11-22T04:00:00.123Z -> 20261122T040000Z: sorts by time as text. */
export function backupStamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

export function backupFileName(at: Date, label: string): string {
  const safe = label.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 40);
  return `${backupStamp(at)}${safe ? `-${safe}` : ""}.dump`;
}

export interface InServiceOptions {
  /** The compose invocation as shell words ("docker compose -p app -f ..."), already quoted. */
  compose: string;
  service: string;
}

/**
 * A shell function `dk_in_service CMD...` that runs CMD in the service's running container
 * (`exec -T`), or in a one-off container when none is running (`run --rm --no-deps -T`): the
 * db service of a fresh server may not be up, and the app image has the client tools too.
 */
function inServiceFunction(o: InServiceOptions): string[] {
  return [
    "dk_running=no",
    sh`for c in $(${raw(o.compose)} ps -q ${o.service} 2>/dev/null); do`,
    `  [ "$(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] && dk_running=yes`,
    "done",
    "dk_in_service() {",
    `  if [ "$dk_running" = yes ]; then ${o.compose} exec -T ${quote(o.service)} "$@"`,
    `  else ${o.compose} run --rm --no-deps -T ${quote(o.service)} "$@"; fi`,
    "}",
  ];
}

export interface BackupScriptOptions extends InServiceOptions {
  db: DatabaseTarget;
  /** <path>/.deploy-kit/backups */
  dir: string;
  /** File name from backupFileName(). */
  name: string;
  keep: number;
}

export const BACKUP_RESULT = "DK-BACKUP";

/**
 * Dump, verify, then keep: the dump is written to a .partial file that only becomes the
 * backup once it is non-empty and pg_restore can list it; anything else removes it and fails.
 * Then the oldest backups beyond `keep` go (the one just taken is the newest, never pruned).
 * Prints `DK-BACKUP <path> <bytes> <entries>` last.
 */
export function backupScript(o: BackupScriptOptions): string {
  if (!Number.isInteger(o.keep) || o.keep < 1) throw new Error("keep must be at least 1");
  const file = `${o.dir}/${o.name}`;
  return script(
    // Dumps hold the whole database: only the deploy user may read them.
    "umask 077",
    sh`mkdir -p ${o.dir}`,
    sh`file=${file}`,
    `part="$file.partial"`,
    `trap 'rm -f "$part"' EXIT`,
    ...inServiceFunction(o),
    sh`echo ${`pg_dump in service ${o.service}`} "($([ "$dk_running" = yes ] && echo running container || echo one-off container))"`,
    sh`dk_in_service ${pgDumpArgv(o.db)} > "$part"`,
    `bytes=$(wc -c < "$part" | tr -d ' ')`,
    `[ "$bytes" -gt 0 ] || { echo "the backup is empty (0 bytes): not migrating" >&2; exit 65; }`,
    sh`list=$(dk_in_service ${pgRestoreListArgv()} < "$part") || { echo "pg_restore --list cannot read the backup: not migrating" >&2; exit 66; }`,
    // grep -c exits 1 when it counts 0; the count is for the log, the check was pg_restore's exit.
    `entries=$(printf '%s\n' "$list" | grep -vc '^;' || true)`,
    `mv "$part" "$file"`,
    "trap - EXIT",
    sh`ls -1 ${o.dir} | grep '\\.dump$' | sort -r | tail -n +${o.keep + 1} | while read -r old; do rm -f ${o.dir}/"$old"; echo "pruned old backup $old"; done`,
    `echo "${BACKUP_RESULT} $file $bytes $entries"`,
  );
}

export interface RestoreScriptOptions extends InServiceOptions {
  db: DatabaseTarget;
  file: string;
}

/** Restore a backup taken by backupScript, inside the same service. */
export function restoreScript(o: RestoreScriptOptions): string {
  return script(
    sh`file=${o.file}`,
    `[ -s "$file" ] || { echo "backup $file is missing or empty on this host" >&2; exit 66; }`,
    ...inServiceFunction(o),
    sh`dk_in_service ${pgRestoreArgv(o.db)} < "$file"`,
    `echo "restored $file"`,
  );
}
