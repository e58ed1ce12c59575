import { argvToShell, quote, raw, script, sh } from "./shell.js";

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
// A leading letter, digit or '_': a name can never be read as an option.
const PG_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

// libpq's connection keywords and the environment variables that set them.
const LIBPQ_ENV: Record<string, string> = {
  host: "PGHOST",
  hostaddr: "PGHOSTADDR",
  port: "PGPORT",
  dbname: "PGDATABASE",
  user: "PGUSER",
  password: "PGPASSWORD",
  passfile: "PGPASSFILE",
  require_auth: "PGREQUIREAUTH",
  channel_binding: "PGCHANNELBINDING",
  service: "PGSERVICE",
  options: "PGOPTIONS",
  application_name: "PGAPPNAME",
  sslmode: "PGSSLMODE",
  sslnegotiation: "PGSSLNEGOTIATION",
  sslcompression: "PGSSLCOMPRESSION",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  sslrootcert: "PGSSLROOTCERT",
  sslcrl: "PGSSLCRL",
  sslcrldir: "PGSSLCRLDIR",
  sslsni: "PGSSLSNI",
  requirepeer: "PGREQUIREPEER",
  ssl_min_protocol_version: "PGSSLMINPROTOCOLVERSION",
  ssl_max_protocol_version: "PGSSLMAXPROTOCOLVERSION",
  gssencmode: "PGGSSENCMODE",
  krbsrvname: "PGKRBSRVNAME",
  gsslib: "PGGSSLIB",
  gssdelegation: "PGGSSDELEGATION",
  connect_timeout: "PGCONNECT_TIMEOUT",
  client_encoding: "PGCLIENTENCODING",
  target_session_attrs: "PGTARGETSESSIONATTRS",
  load_balance_hosts: "PGLOADBALANCEHOSTS",
};

/**
 * An awk program (POSIX awk: mawk, gawk, busybox) that reads the URL from its environment and
 * prints `PGxxx=value` lines for libpq. The URL never appears on a command line (`ps` shows
 * argv to every user of the host), and libpq never sees the URL, so it cannot echo it back in an
 * error. postgres://, postgresql://, postgis:// and SQLAlchemy's postgresql+driver:// are read.
 */
function urlToLibpqEnvProgram(): string {
  const table = Object.entries(LIBPQ_ENV)
    .map(([k, v]) => `env["${k}"] = "${v}"`)
    .join("; ");
  return [
    'function fail(m) { print m > "/dev/stderr"; exit 64 }',
    'function hex(c) { return index("0123456789abcdef", tolower(c)) - 1 }',
    'function dec(s,  o, i, c) { o = ""; for (i = 1; i <= length(s); i++) { c = substr(s, i, 1);' +
      ' if (c == "%" && hex(substr(s, i + 1, 1)) >= 0 && hex(substr(s, i + 2, 1)) >= 0) {' +
      ' o = o sprintf("%c", hex(substr(s, i + 1, 1)) * 16 + hex(substr(s, i + 2, 1))); i += 2 } else o = o c }' +
      ' if (o ~ /[\\r\\n]/) fail("a value in " name " holds a line break"); return o }',
    'function put(k, v) { if (v != "") out = out env[k] "=" dec(v) "\\n" }',
    "BEGIN {",
    `  ${table}`,
    "  u = ENVIRON[name]",
    '  if (!match(u, /^(postgres|postgresql|postgis)(\\+[A-Za-z0-9_]+)?:\\/\\//)) fail(name " is not a postgres:// URL")',
    '  r = substr(u, RLENGTH + 1); q = ""',
    '  i = index(r, "#"); if (i) r = substr(r, 1, i - 1)',
    '  i = index(r, "?"); if (i) { q = substr(r, i + 1); r = substr(r, 1, i - 1) }',
    '  i = index(r, "/"); if (i) { put("dbname", substr(r, i + 1)); r = substr(r, 1, i - 1) }',
    '  at = 0; for (i = 1; i <= length(r); i++) if (substr(r, i, 1) == "@") at = i',
    '  if (at) { ui = substr(r, 1, at - 1); r = substr(r, at + 1); i = index(ui, ":")',
    '    if (i) { put("user", substr(ui, 1, i - 1)); put("password", substr(ui, i + 1)) } else put("user", ui) }',
    '  hosts = ""; ports = ""; n = split(r, hp, ",")',
    '  for (j = 1; j <= n; j++) { h = hp[j]; p = ""',
    '    if (substr(h, 1, 1) == "[") { i = index(h, "]"); p = substr(h, i + 1); h = substr(h, 2, i - 2); sub(/^:/, "", p) }',
    '    else { i = index(h, ":"); if (i) { p = substr(h, i + 1); h = substr(h, 1, i - 1) } }',
    '    hosts = hosts (j > 1 ? "," : "") h; ports = ports (j > 1 ? "," : "") p }',
    '  if (hosts !~ /^,*$/) put("host", hosts); if (ports !~ /^,*$/) put("port", ports)',
    '  n = split(q, kv, "&")',
    '  for (j = 1; j <= n; j++) { if (kv[j] == "") continue; i = index(kv[j], "="); k = i ? substr(kv[j], 1, i - 1) : kv[j]',
    '    v = i ? substr(kv[j], i + 1) : ""',
    '    if (k == "ssl" && v == "true") { k = "sslmode"; v = "require" }',
    '    if (!(k in env)) fail("unknown connection parameter " k " in " name)',
    "    put(k, v) }",
    '  printf "%s", out',
    "}",
  ].join("\n");
}

/**
 * Shell lines (run inside the container) that export libpq's PG* variables from the URL in
 * env var `name` (the app's own DATABASE_URL works as is). Only PG* names are exported.
 */
function libpqEnvFromUrl(name: string): string {
  if (!ENV_KEY.test(name)) throw new Error(`not an environment variable name: ${name}`);
  return [
    sh`[ -n "$(printenv ${name} || true)" ] || { echo ${`${name} is not set in this container`} >&2; exit 64; }`,
    sh`dk_pg=$(LC_ALL=C awk -v name=${name} ${urlToLibpqEnvProgram()}) || exit $?`,
    "dk_ifs=$IFS; IFS='\n'; set -f",
    `for dk_kv in $dk_pg; do case "$dk_kv" in PG[A-Z]*=*) export "$dk_kv" ;; esac; done`,
    `IFS=$dk_ifs; set +f; unset dk_pg dk_kv`,
  ].join("\n");
}

/** Shell lines that point libpq at the database: through the environment, never argv options. */
function connection(db: DatabaseTarget): string {
  if (db.databaseEnv) return libpqEnvFromUrl(db.databaseEnv);
  if (!db.database || !PG_NAME.test(db.database)) throw new Error("backup needs database-env or database");
  if (db.user && !PG_NAME.test(db.user)) throw new Error(`not a database user name: ${db.user}`);
  return [sh`export PGDATABASE=${db.database}`, db.user && sh`export PGUSER=${db.user}`]
    .filter(Boolean)
    .join("\n");
}

/** argv run in the db service: a custom-format dump on stdout (pg_dump's version = the server's). */
export function pgDumpArgv(db: DatabaseTarget): string[] {
  return ["sh", "-c", [connection(db), "exec pg_dump -Fc"].join("\n")];
}

/** argv run in the db service: reads a dump on stdin and lists its contents (fails on a bad file). */
export function pgRestoreListArgv(): string[] {
  return ["pg_restore", "--list"];
}

export const TRIAL_RESULT = "DK-TRIAL";
/** Scratch databases are deploy-kit's own names: never one a user could have. */
const SCRATCH = /^dk_trial_[a-z0-9_]{1,40}$/;

export function scratchDatabaseName(label: string): string {
  return `dk_trial_${label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .slice(0, 40)}`;
}

/**
 * argv run in the db service: a trial restore of the dump on stdin into a scratch database it
 * creates and always drops (trap), with pg_restore under a deadline. Proves the dump restores,
 * not just that its table of contents reads. Prints `DK-TRIAL <bytes> <tables> <seconds>`.
 * CREATE/DROP DATABASE go through the connection the backup uses: that user needs CREATEDB.
 */
export function pgTrialRestoreArgv(db: DatabaseTarget, scratch: string, timeoutSecs: number): string[] {
  if (!SCRATCH.test(scratch)) throw new Error(`not a scratch database name: ${scratch}`);
  const secs = Math.max(1, Math.ceil(timeoutSecs));
  const restore = `pg_restore --no-owner --no-acl --exit-on-error --single-transaction --dbname=${scratch}`;
  return [
    "sh",
    "-c",
    [
      connection(db),
      `dk_db="\${PGDATABASE:-\${PGUSER:-$(id -un)}}"`,
      `dk_sql() { psql -X -q -At -v ON_ERROR_STOP=1 --dbname="$dk_db" -c "$1"; }`,
      // A scratch database left by a killed run is dropped first; FORCE (PostgreSQL 13+) ends a
      // restore still running in it, plain DROP covers older servers.
      `dk_drop() { dk_sql "DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)" >/dev/null 2>&1 || dk_sql "DROP DATABASE IF EXISTS ${scratch}" >/dev/null 2>&1 || echo "could not drop the scratch database ${scratch}: drop it by hand" >&2; }`,
      "dk_drop",
      `dk_sql "CREATE DATABASE ${scratch}" || { echo "cannot create the scratch database ${scratch} for the trial restore: the database user needs CREATEDB (or set migrate.backup.verify: list)" >&2; exit 68; }`,
      "trap dk_drop EXIT",
      "dk_t0=$(date +%s); rc=0",
      `if command -v timeout >/dev/null 2>&1; then timeout ${secs} ${restore} || rc=$?; else ${restore} || rc=$?; fi`,
      `if [ "$rc" -eq 124 ]; then echo "the trial restore ran past its deadline (${secs} s): not using this backup" >&2; exit 67; fi`,
      `[ "$rc" -eq 0 ] || { echo "the trial restore failed (pg_restore exited $rc): the backup does not restore" >&2; exit 67; }`,
      `dk_bytes=$(PGDATABASE=${scratch} psql -X -At -c "SELECT pg_database_size(current_database())")`,
      `dk_tables=$(PGDATABASE=${scratch} psql -X -At -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")`,
      `echo "${TRIAL_RESULT} $dk_bytes $dk_tables $(( $(date +%s) - dk_t0 ))"`,
    ].join("\n"),
  ];
}

/** How a dump is proven good: its table of contents reads, or it restores into a scratch database. */
export type VerifyMode = { kind: "list" } | { kind: "restore"; scratch: string; timeoutSecs: number };

/**
 * Shell lines (after inServiceFunction) that verify the dump in shell variable `var` and exit
 * `exitCode`-ish codes that say which check failed; `consequence` ends each failure message.
 */
function verifyLines(db: DatabaseTarget, v: VerifyMode, variable: string, consequence: string): string[] {
  return [
    `list=$(dk_in_service ${argvToShell(pgRestoreListArgv())} < "$${variable}") || { echo "pg_restore --list cannot read the backup: ${consequence}" >&2; exit 66; }`,
    // grep -c exits 1 when it counts 0; the count is for the log, the check was pg_restore's exit.
    `entries=$(printf '%s\n' "$list" | grep -vc '^;' || true)`,
    ...(v.kind === "restore"
      ? [
          sh`echo ${`trial restore into scratch database ${v.scratch} (deadline ${Math.ceil(v.timeoutSecs)} s)`}`,
          sh`dk_in_service ${pgTrialRestoreArgv(db, v.scratch, v.timeoutSecs)} < "$${raw(variable)}"`,
        ]
      : []),
  ];
}

/**
 * argv run in the db service: restores the dump on stdin over the current database, in one
 * transaction so a failed restore changes nothing. --no-owner: the app's user owns what it restores.
 */
export function pgRestoreArgv(db: DatabaseTarget, timeoutSecs?: number): string[] {
  // pg_restore without a database writes SQL to stdout: name the one libpq would connect to.
  const restore = `pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error --dbname="\${PGDATABASE:-\${PGUSER:-$(id -un)}}"`;
  // The deadline runs inside the container: killing the docker client outside would leave
  // pg_restore running there. A killed pg_restore's transaction rolls back.
  const secs = timeoutSecs && Math.max(1, Math.ceil(timeoutSecs));
  return [
    "sh",
    "-c",
    [
      connection(db),
      secs
        ? `if command -v timeout >/dev/null 2>&1; then exec timeout ${secs} ${restore}; else exec ${restore}; fi`
        : `exec ${restore}`,
    ].join("\n"),
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
  /** Default: list. */
  verify?: VerifyMode;
  /** False for a safety dump: pruning then could remove the very backup being restored. */
  prune?: boolean;
}

export const BACKUP_RESULT = "DK-BACKUP";

/**
 * Dump, verify, then keep: the dump is written to a .partial file that only becomes the
 * backup once it is non-empty and passes verification (pg_restore can list it, or it restores
 * into a scratch database); anything else removes it and fails.
 * Then the oldest backups beyond `keep` go. The one just taken is excluded by name, never by
 * age: names carry the runner's clock, and a runner behind the host's last one would otherwise
 * sort this run's backup oldest and delete it before the migration it protects.
 * Prints `DK-BACKUP <path> <bytes> <entries>` last (after `DK-TRIAL ...` for a trial restore).
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
    ...verifyLines(o.db, o.verify ?? { kind: "list" }, "part", "not migrating"),
    `mv "$part" "$file"`,
    "trap - EXIT",
    o.prune !== false &&
      sh`ls -1 ${o.dir} | grep '\\.dump$' | grep -vxF -e ${o.name} | sort -r | tail -n +${o.keep} | while read -r old; do rm -f ${o.dir}/"$old"; echo "pruned old backup $old"; done`,
    `echo "${BACKUP_RESULT} $file $bytes $entries"`,
  );
}

export interface VerifyBackupScriptOptions extends InServiceOptions {
  db: DatabaseTarget;
  file: string;
  verify: VerifyMode;
}

export const DATABASE_RESULT = "DK-DATABASE";

/**
 * Before a restore: the archive on the host must be there, non-empty and pass verification,
 * and the name of the database it would replace is printed (`DK-DATABASE <name>`, read inside
 * the service from the same connection settings) so the confirmation can be checked against it.
 * Read-only: nothing is dropped or written but the scratch database of a trial restore.
 */
export function verifyBackupScript(o: VerifyBackupScriptOptions): string {
  return script(
    sh`file=${o.file}`,
    `[ -s "$file" ] || { echo "backup $file is missing or empty on this host: nothing was changed" >&2; exit 66; }`,
    ...inServiceFunction(o),
    sh`echo "${raw(DATABASE_RESULT)} $(dk_in_service ${databaseNameArgv(o.db)})"`,
    ...verifyLines(o.db, o.verify, "file", "nothing was changed"),
    `echo "verified $file: $entries entries"`,
  );
}

/** argv run in the db service: the name of the database the connection settings point at. */
export function databaseNameArgv(db: DatabaseTarget): string[] {
  return ["sh", "-c", [connection(db), `echo "\${PGDATABASE:-\${PGUSER:-$(id -un)}}"`].join("\n")];
}

export interface RestoreScriptOptions extends InServiceOptions {
  db: DatabaseTarget;
  file: string;
  /** Deadline of pg_restore; its transaction rolls back when it is stopped. */
  timeoutSecs?: number;
}

/** Restore a backup taken by backupScript, inside the same service. */
export function restoreScript(o: RestoreScriptOptions): string {
  return script(
    sh`file=${o.file}`,
    `[ -s "$file" ] || { echo "backup $file is missing or empty on this host" >&2; exit 66; }`,
    ...inServiceFunction(o),
    "rc=0",
    sh`dk_in_service ${pgRestoreArgv(o.db, o.timeoutSecs)} < "$file" || rc=$?`,
    o.timeoutSecs
      ? `[ "$rc" -ne 124 ] || { echo "pg_restore ran past its deadline (${Math.ceil(o.timeoutSecs)} s) and was stopped: its transaction rolled back" >&2; exit 124; }`
      : undefined,
    `[ "$rc" -eq 0 ] || exit "$rc"`,
    `echo "restored $file"`,
  );
}
