import { type Document, isPair, isScalar, type LineCounter, visit } from "yaml";
import type { Problem } from "../core/errors.js";
import { isSecretKeyName, SECRET_VALUE_PATTERNS } from "../core/secrets.js";

/** `KEY=value`, as in a compose file's list-form `environment:` or `args:`. */
const ASSIGNMENT = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s;

/** `${VAR}`, `$VAR`, `${VAR:-default}`: the value comes from elsewhere, not from the file. */
const isReference = (v: string) => /^\$\{?[A-Za-z_]/.test(v.trim());

/** Bits per character: random keys and tokens score well above words, names and paths. */
function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) h -= (n / s.length) * Math.log2(n / s.length);
  return h;
}

/**
 * A long word of mixed letters, digits and symbols with high entropy, like a generated key.
 * Paths, URLs, host names, image references (they hold `/`, `.`, `:`) and hex digests are not.
 */
export function looksRandom(v: string): boolean {
  if (v.length < 24 || !/^[A-Za-z0-9+=_-]+$/.test(v) || /^[0-9a-f]+$/i.test(v)) return false;
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/].filter((re) => re.test(v)).length;
  return classes === 3 && entropy(v) >= 4.2;
}

/** What is wrong with a literal value under `key`, if it looks like a secret; never the value. */
export function secretVerdict(key: string | undefined, value: string): string | undefined {
  const hit = SECRET_VALUE_PATTERNS.find((p) => p.re.test(value));
  if (hit) return `looks like ${hit.what}`;
  const assigned = ASSIGNMENT.exec(value);
  if (assigned) return secretVerdict(assigned[1], assigned[2]!);
  const literal = value.trim() !== "" && !isReference(value);
  // deploy-kit's own `...-env` keys hold the NAME of a variable, which is the point.
  if (key && !key.endsWith("-env") && isSecretKeyName(key) && literal)
    return `${key} names a secret but has a value written in the file`;
  if (literal && looksRandom(value.trim()))
    return "looks like a generated key or token (a long random string)";
  return undefined;
}

/**
 * Every scalar of a YAML document that looks like a committed secret, by its key's name or by
 * its value. Problems name the file, line and key, and never echo the value.
 */
export function findCommittedSecrets(
  doc: Document,
  lc: LineCounter,
  file: string,
  advice: string,
): Problem[] {
  const out: Problem[] = [];
  visit(doc, {
    Scalar(where, node, path) {
      if (where === "key" || typeof node.value !== "string") return;
      const keys: string[] = [];
      for (const p of path) if (isPair(p) && isScalar(p.key)) keys.push(String(p.key.value));
      const parent = path.at(-1);
      const key = isPair(parent) && isScalar(parent.key) ? String(parent.key.value) : undefined;
      const verdict = secretVerdict(key, node.value);
      if (!verdict) return;
      const pos = node.range ? lc.linePos(node.range[0]) : undefined;
      out.push({
        path: keys.join("."),
        message: `${verdict}. ${advice}`,
        file,
        line: pos?.line,
        col: pos?.col,
      });
    },
  });
  return out;
}
