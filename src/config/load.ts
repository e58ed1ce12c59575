import { readFile, stat } from "node:fs/promises";
import { type Document, isScalar, LineCounter, parseDocument, visit } from "yaml";
import type { z } from "zod";
import { ConfigError, type Problem } from "../core/errors.js";
import { dotted, locate, type PathKey } from "./locate.js";
import { type Config, configSchema, type Environment } from "./schema.js";
import { findCommittedSecrets } from "./secret-scan.js";
import { closest, knownKeys } from "./suggest.js";

export const MAX_CONFIG_BYTES = 1024 * 1024;
/** More problems than this are summarised: nobody reads the 20,000th "unknown key". */
const MAX_PROBLEMS = 50;

export interface LoadedConfig {
  config: Config;
  file: string;
}

/**
 * `displayName` is how the file is named in errors and annotations: the repository-relative path
 * GitHub needs to put an annotation on the right file.
 */
export async function loadConfig(
  file: string,
  opts: { environment?: string; displayName?: string } = {},
): Promise<LoadedConfig> {
  const name = opts.displayName ?? file;
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    throw new ConfigError(`Config file not found: ${file}`, {
      hint: "Create deploy-kit.yml at the repository root, or set the `config` input to its path.",
    });
  }
  if (size > MAX_CONFIG_BYTES) {
    throw new ConfigError(`Config file ${file} is ${size} bytes; the limit is ${MAX_CONFIG_BYTES}.`, {
      problems: [{ path: "", message: "file too large", file }],
      hint: "deploy-kit.yml describes hosts and checks; it should be a few kilobytes.",
    });
  }
  const bytes = await readFile(file);
  return { config: parseConfig(bytes, name, opts), file };
}

/** Parse and validate; every problem names the dotted path and line:column in `file`. */
export function parseConfig(
  input: string | Uint8Array,
  file = "deploy-kit.yml",
  opts: { environment?: string } = {},
): Config {
  let text: string;
  if (typeof input === "string") text = input;
  else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(input);
    } catch {
      throw new ConfigError(`${file} is not valid UTF-8 text.`, {
        problems: [{ path: "", message: "not UTF-8", file }],
        hint: "Save the file as UTF-8.",
      });
    }
  }
  if (text.length > MAX_CONFIG_BYTES) {
    throw new ConfigError(`Config ${file} is too large.`, {
      problems: [{ path: "", message: "file too large", file }],
    });
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false, prettyErrors: true });
  const fail = (problems: Problem[]): never => {
    throw new ConfigError(`${file} has ${problems.length} problem${problems.length === 1 ? "" : "s"}.`, {
      problems,
      hint: "Fix the lines named above; the JSON Schema in schema/deploy-kit.schema.json helps your editor catch these.",
    });
  };
  if (doc.errors.length) {
    fail(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return {
          path: "",
          message: `YAML syntax: ${e.message.split("\n")[0]}`,
          file,
          line: pos?.line,
          col: pos?.col,
        };
      }),
    );
  }
  let data: unknown;
  try {
    // A small alias budget defeats "billion laughs" documents.
    data = doc.toJS({ maxAliasCount: 50 });
  } catch (e) {
    fail([{ path: "", message: `YAML: ${(e as Error).message}`, file }]);
  }
  if (data === null || data === undefined) {
    fail([
      {
        path: "",
        message: "the file is empty; it needs at least version, app, image and environments",
        file,
        line: 1,
        col: 1,
      },
    ]);
  }
  const dupes = findDuplicateKeys(doc, lc, file);
  if (dupes.length) fail(dupes);
  const secrets = findCommittedSecrets(
    doc,
    lc,
    file,
    "Secrets never belong in deploy-kit.yml: store it as a GitHub secret and pass it as an input (or name the env var that holds it, e.g. slack-webhook-env)",
  );
  if (secrets.length) fail(secrets);

  const result = configSchema.safeParse(data);
  if (!result.success) fail(issuesToProblems(result.error.issues, doc, lc, file, data));
  const config = result.data!;

  const extra = crossChecks(config, doc, lc, file, opts.environment);
  if (extra.length) fail(extra);
  return config;
}

/** yaml's own uniqueKeys check is quadratic (seconds for 20k keys); a Set per mapping is not. */
function findDuplicateKeys(doc: Document, lc: LineCounter, file: string): Problem[] {
  const out: Problem[] = [];
  visit(doc, {
    Map(_key, node) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        if (!isScalar(pair.key)) continue;
        const k = String(pair.key.value);
        if (seen.has(k) && out.length < MAX_PROBLEMS) {
          const pos = pair.key.range ? lc.linePos(pair.key.range[0]) : undefined;
          out.push({
            path: "",
            message: `YAML: Map keys must be unique ("${k}" appears twice in one mapping)`,
            file,
            line: pos?.line,
            col: pos?.col,
          });
        }
        seen.add(k);
      }
    },
  });
  return out;
}

type Issue = z.core.$ZodIssue;

function valueAt(data: unknown, path: readonly PathKey[]): unknown {
  let v: unknown = data;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, unknown>)[k];
  }
  return v;
}

function describeType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return `the string "${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  return `${typeof v} ${String(v)}`;
}

function flatten(issues: readonly Issue[], data: unknown): Issue[] {
  const out: Issue[] = [];
  for (const i of issues) {
    if (i.code === "invalid_union") {
      const branches = (i as unknown as { errors: Issue[][] }).errors;
      // The branch that got furthest (not a plain type mismatch) is the one the user meant.
      const meant = branches.find((b) => b.some((x) => x.code !== "invalid_type" || x.path.length > 0));
      if (meant) {
        out.push(
          ...flatten(
            meant.map((x) => ({ ...x, path: [...i.path, ...x.path] })),
            data,
          ),
        );
        continue;
      }
      const expected = [
        ...new Set(
          branches
            .flat()
            .map((x) => (x as { expected?: string }).expected)
            .filter(Boolean),
        ),
      ];
      const value = valueAt(data, i.path as PathKey[]);
      out.push({
        ...i,
        message:
          value === undefined
            ? `"${String(i.path.at(-1))}" is required`
            : `expected ${expected.join(" or ")}, got ${describeType(value)}`,
      } as Issue);
      continue;
    }
    if (i.code === "invalid_key") {
      // A bad name used as a key (an environment or build-arg name): say which, and why.
      const inner = (i as unknown as { issues: Issue[] }).issues.map((x) => x.message).join("; ");
      out.push({ ...i, message: `invalid name "${String(i.path.at(-1))}": ${inner}` } as Issue);
      continue;
    }
    out.push(i);
  }
  return out;
}

function issuesToProblems(
  issues: readonly Issue[],
  doc: Document,
  lc: LineCounter,
  file: string,
  data: unknown,
): Problem[] {
  const problems: Problem[] = [];
  let omitted = 0;
  for (const i of flatten(issues, data)) {
    const path = i.path as PathKey[];
    if (problems.length >= MAX_PROBLEMS) {
      omitted += i.code === "unrecognized_keys" ? i.keys.length : 1;
      continue;
    }
    if (i.code === "unrecognized_keys") {
      const known = knownKeys(configSchema, path);
      for (const key of i.keys) {
        if (problems.length >= MAX_PROBLEMS) {
          omitted++;
          continue;
        }
        const guess = closest(key, known);
        const pos = locate(doc, lc, path, key);
        problems.push({
          path: dotted([...path, key]),
          message: `unknown key "${key}"${guess ? ` (did you mean "${guess}"?)` : known.length ? ` (allowed here: ${known.join(", ")})` : ""}`,
          file,
          ...pos,
        });
      }
      continue;
    }
    const value = valueAt(data, path);
    let message = i.message;
    if (i.code === "invalid_type") {
      message =
        value === undefined
          ? `"${String(path.at(-1))}" is required`
          : `expected ${(i as { expected: string }).expected}, got ${describeType(value)}`;
    }
    const pos = locate(doc, lc, path);
    problems.push({ path: dotted(path), message, file, ...pos });
  }
  if (omitted)
    problems.push({ path: "", message: `…and ${omitted} more problem(s) of the same kinds`, file });
  return problems;
}

function crossChecks(
  config: Config,
  doc: Document,
  lc: LineCounter,
  file: string,
  environment?: string,
): Problem[] {
  const problems: Problem[] = [];
  if (environment && !Object.hasOwn(config.environments, environment)) {
    const names = Object.keys(config.environments);
    const guess = closest(environment, names);
    problems.push({
      path: "environments",
      message: `no environment "${environment}"${guess ? ` (did you mean "${guess}"?)` : ""}; defined: ${names.join(", ")}`,
      file,
      ...locate(doc, lc, ["environments"]),
    });
  }
  for (const [name, env] of Object.entries(config.environments)) {
    const seen = new Map<string, number>();
    env.hosts.forEach((h, idx) => {
      const prev = seen.get(h.alias);
      if (prev !== undefined) {
        problems.push({
          path: `environments.${name}.hosts[${idx}]`,
          message: `alias "${h.alias}" is used by hosts[${prev}] too; every host needs its own alias`,
          file,
          ...locate(doc, lc, ["environments", name, "hosts", idx]),
        });
      }
      seen.set(h.alias, idx);
    });
  }
  return problems;
}

export function selectEnvironment(config: Config, name: string): Environment {
  // Own properties only: `--env constructor` must not find Object.prototype.constructor.
  const env = Object.hasOwn(config.environments, name) ? config.environments[name] : undefined;
  if (!env) {
    const names = Object.keys(config.environments);
    const guess = closest(name, names);
    throw new ConfigError(
      `No environment "${name}" in the config${guess ? ` (did you mean "${guess}"?)` : ""}.`,
      {
        hint: `Use one of: ${names.join(", ")}.`,
      },
    );
  }
  return env;
}
