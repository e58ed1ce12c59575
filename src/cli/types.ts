import type { Config } from "../config/schema.js";
import type { TerminalLog } from "./terminal-log.js";

/** Exit codes, documented in --help and docs/cli.md. Scripts branch on them. */
export const EXIT = { ok: 0, failed: 1, usage: 2, config: 3, rolledBack: 4 } as const;

/** A flag the command line must fix (missing --env, bad value): exit 2, with the usage line. */
export class UsageError extends Error {
  override name = "UsageError";
}

export interface FlagSpec {
  type: "string" | "boolean";
  short?: string;
  /** Repeatable (--build-arg A=1 --build-arg B=2). */
  multiple?: boolean;
  /** Placeholder in help (FILE, REF, ...). */
  value?: string;
  description: string;
}

export type Flags = Record<string, string | boolean | string[] | undefined>;

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Colours and progress decorations: only when stderr is a terminal. */
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
}

export interface CliContext {
  flags: Flags;
  positionals: string[];
  log: TerminalLog;
  io: CliIO;
  /** Machine-readable result on stdout when --json is given; otherwise `human` prints. */
  emit(value: unknown, human: () => void): void;
  /** Human text on stdout (results; progress goes to stderr through `log`). */
  print(text: string): void;
  config(): Promise<{ config: Config; file: string }>;
  /** The --env value; a UsageError when the command needs it and it is missing. */
  environment(): string;
  /** The config file path as given (default deploy-kit.yml), resolved against the cwd. */
  configFile(): string;
  string(name: string): string | undefined;
  bool(name: string): boolean;
  list(name: string): string[];
}

export interface Command {
  summary: string;
  usage: string;
  /** More lines for `--help`: what it does, what it changes. */
  details?: string[];
  /** Extra flags this command takes. */
  options?: Record<string, FlagSpec>;
  run(ctx: CliContext): Promise<number>;
}
