import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError, describeError } from "../../src/core/errors.js";
import { REPO } from "../support/runner.js";
import { recordTally } from "../support/tally.js";

const good = readFileSync(join(REPO, "tests/fixtures/config/good/full.yml"), "utf8");

/** A small deterministic PRNG, so a failure reproduces from its case number. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = unknown;
function paths(v: Json, prefix: (string | number)[] = []): (string | number)[][] {
  if (v === null || typeof v !== "object") return [prefix];
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
  return [prefix, ...entries.flatMap(([k, x]) => paths(x, [...prefix, k]))];
}
function setAt(obj: Json, path: (string | number)[], value: Json | typeof REMOVE): Json {
  const copy = structuredClone(obj) as Record<string | number, Json>;
  let cur = copy;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, Json>;
  const last = path.at(-1)!;
  if (value === REMOVE) {
    if (Array.isArray(cur)) cur.splice(last as number, 1);
    else delete cur[last];
  } else cur[last] = value;
  return copy;
}
const REMOVE = Symbol("remove");

const base = (await import("yaml")).parse(good);
const allPaths = paths(base).filter((p) => p.length > 0);
const WRONG: Json[] = [
  true,
  0,
  -1,
  1e308,
  "",
  "x".repeat(100_000),
  [],
  {},
  null,
  "∞ ünïcödé 🚀",
  "30 parsecs",
  [1, [2, [3]]],
  "$(touch /tmp/pwned)",
  "../../etc",
];
const REQUIRED = [
  ["version"],
  ["app"],
  ["image"],
  ["image", "name"],
  ["environments"],
  ["environments", "staging", "hosts"],
  ["environments", "staging", "path"],
  ["environments", "staging", "compose"],
  ["environments", "staging", "compose", "service"],
];

interface Case {
  id: string;
  input: string | Uint8Array;
}
const cases: Case[] = [];
const r = rng(20261122);
const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;

// Wrong types at random places; keep only the ones the schema must refuse (any value is a valid string somewhere).
for (let i = 0; cases.length < 140 && i < 3000; i++) {
  const p = pick(allPaths);
  const v = pick(WRONG);
  const text = stringify(setAt(base, p, v));
  try {
    parseConfig(text);
  } catch {
    cases.push({ id: `type ${p.join(".")}=${JSON.stringify(v).slice(0, 20)}`, input: text });
  }
}
// Unknown keys at every mapping.
for (const p of allPaths.filter((p) => {
  let v: Json = base;
  for (const k of p) v = (v as Record<string | number, Json>)[k];
  return (
    v !== null &&
    typeof v === "object" &&
    !Array.isArray(v) &&
    !p.includes("build-args") &&
    !p.includes("json")
  );
})) {
  let v: Json = base;
  for (const k of p) v = (v as Record<string | number, Json>)[k];
  cases.push({ id: `unknown key at ${p.join(".")}`, input: stringify(setAt(base, [...p, "frobnicate"], 1)) });
}
for (const p of REQUIRED)
  cases.push({ id: `missing ${p.join(".")}`, input: stringify(setAt(base, p, REMOVE)) });
for (const d of ["5 minutes", "-1s", "1d", "s", "5mm", "1e999s", "NaN", "0x10s", "1h-", "∞"]) {
  cases.push({
    id: `duration ${d}`,
    input: stringify(setAt(base, ["environments", "staging", "health", "timeout"], d)),
  });
}
for (const [id, input] of [
  ["empty", ""],
  ["only comments", "# nothing\n"],
  ["null document", "null\n"],
  ["a scalar", "42\n"],
  ["a list", "- a\n- b\n"],
  ["tabs", "version: 1\n\tapp: x\n"],
  ["unterminated quote", 'version: 1\napp: "x\n'],
  ["duplicate keys", "version: 1\nversion: 1\n"],
  [
    "alias bomb",
    `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n`,
  ],
  ["undefined alias", "version: *nope\n"],
  ["merge key bomb", `${good}\nx: &x {a: 1}\ny: {<<: *x}\n`],
  ["deep nesting", `${"[".repeat(5000)}${"]".repeat(5000)}`],
  ["10 MB", `${good}\n# ${"p".repeat(10 * 1024 * 1024)}\n`],
  ["huge key count", `${good}${Array.from({ length: 20000 }, (_, i) => `k${i}: ${i}`).join("\n")}\n`],
  ["unicode app", good.replace("app: clicknback", "app: сlicknback")],
  ["RTL override in host", good.replace("203.0.113.10", "203.0.113.10\u202e")],
  ["NUL in path", good.replace("/opt/clicknback", "/opt/click\u0000back")],
  ["newline in service", good.replace("service: api", 'service: "api\\nrm -rf /"')],
] as const) {
  cases.push({ id, input });
}
cases.push({
  id: "non-UTF-8 bytes",
  input: Uint8Array.from([...Buffer.from("version: 1\napp: "), 0xff, 0xfe, 0x80, 0x0a]),
});
cases.push({ id: "latin-1 file", input: Buffer.from("version: 1\napp: caf\xe9\n", "latin1") });
cases.push({ id: "UTF-16 BOM", input: Buffer.from("\ufeffversion: 1\n", "utf16le") });
for (let i = 0; i < 20; i++) {
  const bytes = Buffer.from(good);
  for (let j = 0; j < 5; j++) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
  try {
    parseConfig(bytes);
  } catch {
    cases.push({ id: `random bytes #${i}`, input: bytes });
  }
}

const failures: string[] = [];
afterAll(() => recordTally({ category: "config fuzzing", tried: cases.length, failures: failures.length }));

describe("config fuzzing", () => {
  it("generates at least 200 malformed configs", () => expect(cases.length).toBeGreaterThanOrEqual(200));

  it.each(cases.map((c, i) => ({ ...c, n: i })))(
    "#$n $id: ConfigError with a location, quickly, no stack",
    ({ id, input }) => {
      const start = performance.now();
      let error: unknown;
      try {
        parseConfig(input, "deploy-kit.yml");
      } catch (e) {
        error = e;
      }
      const ms = performance.now() - start;
      const ok =
        error instanceof ConfigError &&
        error.problems.length > 0 &&
        error.problems.every(
          (p) =>
            p.file === "deploy-kit.yml" && (p.path !== "" || p.line !== undefined || p.message.length > 0),
        ) &&
        !/\n\s+at .+:\d+:\d+/.test(describeError(error)) &&
        ms < 5000;
      if (!ok) failures.push(id);
      expect(error, `${id}: ${String(error)}`).toBeInstanceOf(ConfigError);
      expect(ms).toBeLessThan(5000);
      expect(describeError(error)).not.toMatch(/\n\s+at .+:\d+:\d+/);
    },
  );
});
