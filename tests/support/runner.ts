import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export interface RunResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
  /** Every byte the process wrote anywhere the runner would keep it. */
  everything: string;
  signal: NodeJS.Signals | null;
  /** [ms since start, line] for every stdout line. */
  timeline: [number, string][];
  startedAt: number;
  endedAt: number;
}

/** Parse the runner's file-command format (name<<delimiter ... delimiter, or name=value). */
export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delim] = heredoc;
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== delim; i++) body.push(lines[i]!);
      out[name!] = body.join("\n");
    } else if (line.includes("=")) {
      out[line.slice(0, line.indexOf("="))] = line.slice(line.indexOf("=") + 1);
    }
  }
  return out;
}

export const REPO = resolve(import.meta.dirname, "../..");

/**
 * Run a bundled action exactly as the GitHub runner does: node24 on dist/<entry>, inputs as
 * INPUT_<NAME> env vars, outputs/state/summary through the files the runner names.
 * Pass `state` (from a previous run) to run the post step.
 */
export async function runBundled(
  entry: string,
  opts: {
    inputs?: Record<string, string>;
    env?: Record<string, string>;
    state?: Record<string, string>;
    cwd?: string;
    timeoutMs?: number;
    onSpawn?: (pid: number) => void;
    /** Each stdout line as it arrives, with the child (to signal it mid-run). */
    onLine?: (line: string, child: ChildProcess) => void;
  } = {},
): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), "dk-runner-"));
  const files = {
    GITHUB_OUTPUT: join(dir, "output"),
    GITHUB_STATE: join(dir, "state"),
    GITHUB_STEP_SUMMARY: join(dir, "summary"),
  };
  for (const f of Object.values(files)) writeFileSync(f, "");
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/root",
    GITHUB_WORKSPACE: opts.cwd ?? REPO,
    GITHUB_ACTIONS: "true",
    RUNNER_TEMP: dir,
    ...files,
    ...opts.env,
  };
  for (const [k, v] of Object.entries(opts.inputs ?? {}))
    env[`INPUT_${k.replace(/ /g, "_").toUpperCase()}`] = v;
  for (const [k, v] of Object.entries(opts.state ?? {})) env[`STATE_${k}`] = v;
  // DK_DIST_ROOT lets a test run a bundle built elsewhere (node scripts/build.mjs --root DIR).
  const child = spawn(process.execPath, [join(process.env.DK_DIST_ROOT || REPO, "dist", entry, "index.js")], {
    env,
    cwd: opts.cwd ?? REPO,
  });
  const startedAt = Date.now();
  if (child.pid) opts.onSpawn?.(child.pid);
  let stdout = "";
  let stderr = "";
  let partial = "";
  const timeline: [number, string][] = [];
  child.stdout.on("data", (d: Buffer) => {
    stdout += d;
    partial += d;
    const lines = partial.split("\n");
    partial = lines.pop()!;
    for (const l of lines) {
      timeline.push([Date.now() - startedAt, l]);
      opts.onLine?.(l, child);
    }
  });
  child.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 600_000);
  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) =>
    child.on("close", (code, sig) => res([code, sig])),
  );
  clearTimeout(timer);
  const read = (f: string) => readFileSync(f, "utf8");
  const outputs = parseFileCommands(read(files.GITHUB_OUTPUT));
  const state = parseFileCommands(read(files.GITHUB_STATE));
  const summary = read(files.GITHUB_STEP_SUMMARY);
  return {
    exitCode,
    stdout,
    stderr,
    outputs,
    state,
    summary,
    everything: [stdout, stderr, read(files.GITHUB_OUTPUT), read(files.GITHUB_STATE), summary].join("\n"),
    signal,
    timeline,
    startedAt,
    endedAt: Date.now(),
  };
}

/** What a person could read in a run: the runner consumes ::add-mask:: lines, everything else shows. */
export function visible(text: string): string {
  return text
    .split("\n")
    .filter((l) => !l.startsWith("::add-mask::"))
    .join("\n");
}
