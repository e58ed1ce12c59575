import * as core from "@actions/core";
import { z } from "zod";
import { ConfigError, type Problem } from "./errors.js";
import { registerSecret } from "./secrets.js";

/** Inputs whose values are masked before anything else reads them. */
export const SECRET_INPUTS = new Set(["ssh-key", "registry-password", "github-token"]);

export const input = {
  /** A free string; empty means "not given". */
  string: (fallback = "") => z.string().transform((v) => v || fallback),
  optional: () => z.string().transform((v) => (v === "" ? undefined : v)),
  bool: (fallback: boolean) =>
    z
      .string()
      .transform((v) => v.trim().toLowerCase())
      .pipe(z.enum(["", "true", "false"], { message: 'expected "true" or "false"' }))
      .transform((v) => (v === "" ? fallback : v === "true")),
  /** Newline- or comma-separated list. */
  list: () =>
    z.string().transform((v) =>
      v
        .split(/[\n,]/)
        .map((s) => s.trim())
        .filter(Boolean),
    ),
};

export type InputShape = Record<string, z.ZodType<unknown, string>>;

/**
 * Read every input named in `shape` (keys are the action.yml names), masking secrets first.
 * `read` is injectable so the CLI and tests can supply values without the runner.
 */
export function readInputs<S extends InputShape>(
  shape: S,
  read: (name: string) => string = (n) => core.getInput(n),
): { [K in keyof S]: z.output<S[K]> } {
  const raw: Record<string, string> = {};
  for (const name of Object.keys(shape)) {
    const v = read(name);
    if (SECRET_INPUTS.has(name)) registerSecret(v);
    raw[name] = v;
  }
  const parsed = z.object(shape).safeParse(raw);
  if (!parsed.success) {
    const problems: Problem[] = parsed.error.issues.map((i) => ({
      path: `input ${String(i.path[0] ?? "")}`,
      message: i.message,
    }));
    throw new ConfigError("Some action inputs are not valid.", {
      problems,
      hint: "Fix the `with:` values of this step in your workflow.",
    });
  }
  return parsed.data as { [K in keyof S]: z.output<S[K]> };
}

export function setOutputs(values: Record<string, string | boolean | number | undefined>): void {
  for (const [k, v] of Object.entries(values)) core.setOutput(k, v === undefined ? "" : String(v));
}
