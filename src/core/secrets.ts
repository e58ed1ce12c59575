/**
 * Every secret the process has read. Executors and loggers redact these, in the forms
 * they could leak in (raw, base64, URL-encoded, each line of a multi-line key).
 */
const known = new Set<string>();
let onRegister: ((value: string) => void) | undefined;

export function setMaskSink(sink: ((value: string) => void) | undefined): void {
  onRegister = sink;
  if (sink) for (const s of known) sink(s);
}

export function registerSecret(value: string | undefined): void {
  if (!value) return;
  const forms = new Set<string>([value, value.trim()]);
  forms.add(Buffer.from(value).toString("base64"));
  forms.add(encodeURIComponent(value));
  for (const line of value.split(/\r?\n/)) if (line.trim().length >= 8) forms.add(line.trim());
  for (const f of forms) {
    if (f.length < 4 || known.has(f)) continue;
    known.add(f);
    onRegister?.(f);
  }
}

/**
 * Values that are credentials whoever wrote them, recognised by their shape. The config check
 * refuses them in committed files; `redact` hides them (`whole`: the match is the whole secret).
 */
export const SECRET_VALUE_PATTERNS: readonly { re: RegExp; what: string; whole: boolean }[] = [
  { re: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, what: "a private key", whole: false },
  { re: /\bgh[pousr]_[A-Za-z0-9]{20,}/, what: "a GitHub token", whole: true },
  { re: /\bgithub_pat_[A-Za-z0-9_]{20,}/, what: "a GitHub token", whole: true },
  { re: /\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}/, what: "an API key (sk-...)", whole: true },
  { re: /\b[sr]k_live_[A-Za-z0-9]{16,}/, what: "a Stripe live key", whole: true },
  { re: /\bxox[abposr]-[A-Za-z0-9-]{10,}/, what: "a Slack token", whole: true },
  { re: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/, what: "an AWS access key", whole: true },
  { re: /\bAIza[0-9A-Za-z_-]{35}/, what: "a Google API key", whole: true },
  { re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/, what: "a JWT", whole: true },
  { re: /\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:[^/\s@]+@/i, what: "a URL with a password in it", whole: false },
  { re: /hooks\.slack\.com\/services\/[A-Za-z0-9/_-]+/, what: "a Slack webhook URL", whole: true },
  { re: /discord(?:app)?\.com\/api\/webhooks\/[A-Za-z0-9/_-]+/, what: "a Discord webhook URL", whole: true },
];
const WHOLE_SECRETS = SECRET_VALUE_PATTERNS.filter((p) => p.whole).map(
  (p) => new RegExp(p.re.source, `${p.re.flags}g`),
);

/** Key names whose values are secrets: DATABASE_URL, JWT_SECRET_KEY, PGPASSWORD, api_token, ... */
const SECRET_KEY =
  /PASSW(?:OR)?D|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|PRIVATE|DSN|DATABASE_URL|AUTHORIZATION|COOKIE|(?:^|_)(?:API_?)?KEY(?:_|S?$)|(?:^|_)AUTH(?:_|$)|(?:^|_)PASS(?:_|$)/i;

/** Names that point at a secret rather than hold one: JWT_SECRET_FILE, SSH_KEY_PATH, PUBLIC_KEY_URL. */
const NAMES_A_SECRET = /PUBLIC|(?:^|_)(?:NAME|ID|PATH|FILE|DIR|URL|ENV|VERSION)$/i;

export function isSecretKeyName(name: string): boolean {
  return /DATABASE_URL|DSN/i.test(name) || (SECRET_KEY.test(name) && !NAMES_A_SECRET.test(name));
}

const KEY = "[A-Za-z_][A-Za-z0-9_.-]*";
/** `KEY=value` (env files, libpq conninfo, `env` output) where a word starts. */
const ASSIGNMENT = new RegExp(`(?:^|[\\s"'{,;(])(?:export\\s+)?(${KEY})\\s*=\\s*(?=\\S)`, "g");
/** `KEY: value` at the start of a line (YAML, `docker compose config`, HTTP headers). */
const MAPPING = new RegExp(`^\\s*(?:-\\s+)?["']?(${KEY})["']?\\s*:\\s+(?=\\S)`);
/** `"password": "value"` inside one line of JSON. */
const JSON_FIELD = new RegExp(`(")(${KEY})("\\s*:\\s*")((?:[^"\\\\\\n]|\\\\.)*)(")`, "g");

/** A line that assigns a secret-named key loses everything after the `=` or `:`. */
function redactAssignments(line: string): string {
  const cut = (at: number) => (/^["']?\*\*\*["']?$/.test(line.slice(at)) ? line : `${line.slice(0, at)}***`);
  const m = MAPPING.exec(line);
  if (m && isSecretKeyName(m[1]!)) return cut(m[0].length);
  for (const a of line.matchAll(ASSIGNMENT)) if (isSecretKeyName(a[1]!)) return cut(a.index + a[0].length);
  return line;
}

/** scheme://user:password@host -> scheme://user:***@host (the user name helps; the password never shows). */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@'"]*:)([^\s'"/]+)@/gi;
const PRIVATE_KEY_BLOCK =
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;

/**
 * The one redaction of text that may hold secrets (a host's output, an error, a ledger reason):
 * every registered secret, passwords in URLs, values of secret-named keys, and credentials
 * recognisable by their shape. Applied where text leaves the process: logs, errors, summaries,
 * the ledger.
 */
export function redact(text: string): string {
  let out = text;
  // Longest first, so a full key is replaced before any of its lines.
  for (const s of [...known].sort((a, b) => b.length - a.length)) out = out.split(s).join("***");
  out = out.replace(PRIVATE_KEY_BLOCK, "-----BEGIN PRIVATE KEY----- *** (redacted)");
  out = out.replace(URL_PASSWORD, "$1***@");
  out = out.replace(JSON_FIELD, (m, q1, key, sep, _v, q2) =>
    isSecretKeyName(key) ? `${q1}${key}${sep}***${q2}` : m,
  );
  out = out.split("\n").map(redactAssignments).join("\n");
  for (const re of WHOLE_SECRETS) out = out.replace(re, "***");
  return out;
}

export function knownSecretCount(): number {
  return known.size;
}

/** Tests only. */
export function forgetSecrets(): void {
  known.clear();
}
