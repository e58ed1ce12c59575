/**
 * The one shell-quoting helper. Every value that reaches a shell, local or remote, goes
 * through `quote` (directly or via the `sh` template), so a value can never become syntax.
 */
export function quote(value: string | number): string {
  const s = String(value);
  if (s === "") return "''";
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'"'"'`)}'`;
}

/** A fragment that is already shell syntax and must not be quoted again. */
export class Raw {
  constructor(readonly text: string) {}
}
export const raw = (text: string) => new Raw(text);

type Value = string | number | Raw | readonly (string | number)[];

/**
 * sh`docker compose -p ${project} up -d ${services}`: interpolated values are quoted
 * (arrays become several quoted words); only `raw(...)` passes through unquoted.
 */
export function sh(strings: TemplateStringsArray, ...values: Value[]): string {
  let out = strings[0]!;
  values.forEach((v, i) => {
    if (v instanceof Raw) out += v.text;
    else if (Array.isArray(v)) out += v.map((x) => quote(x)).join(" ");
    else out += quote(v as string | number);
    out += strings[i + 1]!;
  });
  return out;
}

export function argvToShell(argv: readonly string[]): string {
  return argv.map((a) => quote(a)).join(" ");
}

/** A remote script: strict mode first, so any failing line fails the whole step. */
export function script(...lines: (string | false | undefined | null)[]): string {
  return ["set -eu", ...lines.filter((l): l is string => typeof l === "string" && l.length > 0)].join("\n");
}
