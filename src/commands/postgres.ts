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

/**
 * argv run in the db service: restores the dump on stdin over the current database, in one
 * transaction so a failed restore changes nothing. --no-owner: the app's user owns what it restores.
 */
export function pgRestoreArgv(db: DatabaseTarget): string[] {
  // pg_restore without a database writes SQL to stdout: name the one libpq would connect to.
  return [
    "sh",
    "-c",
    [
      connection(db),
      `exec pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error --dbname="\${PGDATABASE:-\${PGUSER:-$(id -un)}}"`,
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
}

export const BACKUP_RESULT = "DK-BACKUP";

/**
 * Dump, verify, then keep: the dump is written to a .partial file that only becomes the
 * backup once it is non-empty and pg_restore can list it; anything else removes it and fails.
 * Then the oldest backups beyond `keep` go. The one just taken is excluded by name, never by
 * age: names carry the runner's clock, and a runner behind the host's last one would otherwise
 * sort this run's backup oldest and delete it before the migration it protects.
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
    sh`ls -1 ${o.dir} | grep '\\.dump$' | grep -vxF -e ${o.name} | sort -r | tail -n +${o.keep} | while read -r old; do rm -f ${o.dir}/"$old"; echo "pruned old backup $old"; done`,
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
