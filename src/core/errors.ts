import { redact } from "./secrets.js";

/** Where in the user's config file a problem sits. */
export interface Problem {
  /** dotted path, e.g. environments.staging.hosts[0].port */
  path: string;
  message: string;
  file?: string;
  line?: number;
  col?: number;
}

export function formatProblem(p: Problem): string {
  const where = p.file ? `${p.file}${p.line ? `:${p.line}:${p.col ?? 1}` : ""}` : "";
  const path = p.path ? `${p.path}: ` : "";
  return `${where ? `${where} ` : ""}${path}${p.message}`;
}

/**
 * The user must change their file, inputs or setup. Never shown with a stack trace.
 * `hint` says what to do about it.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: Problem[];
  readonly hint?: string;
  constructor(message: string, opts: { problems?: Problem[]; hint?: string } = {}) {
    super(message);
    this.problems = opts.problems ?? [];
    this.hint = opts.hint;
  }
}

/** A failure of the deployment itself (unhealthy release, lock held, smoke failed...). */
export class DeployError extends Error {
  override name = "DeployError";
  readonly hint?: string;
  readonly host?: string;
  constructor(message: string, opts: { hint?: string; host?: string; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.hint = opts.hint;
    this.host = opts.host;
  }
}

/**
 * The SSH connection to a host went away while a step needed it. `during` names that step; the
 * caller that knows how far the host got adds what state it was left in (withState).
 */
export class ConnectionLostError extends DeployError {
  override name = "ConnectionLostError";
  readonly during: string;
  constructor(message: string, opts: { host: string; during: string; hint?: string }) {
    super(message, {
      host: opts.host,
      hint:
        opts.hint ??
        "Check that the host is up and its sshd answers (ssh to it), then run the deploy again; the lock it holds is released by the post step or expires with its lease.",
    });
    this.during = opts.during;
  }

  withState(state: string): ConnectionLostError {
    return new ConnectionLostError(`${this.message} ${state}`, {
      host: this.host!,
      during: this.during,
      hint: this.hint,
    });
  }
}

/**
 * A local or remote command exited non-zero. Its command and output tail are redacted here, the
 * one place every executor's failure passes through: a host's echo of a secret never leaves it.
 */
export class CommandError extends Error {
  override name = "CommandError";
  readonly command: string;
  readonly exitCode: number | null;
  readonly stderrTail: string;
  readonly host?: string;
  readonly hint?: string;
  constructor(opts: {
    command: string;
    exitCode: number | null;
    stderrTail: string;
    host?: string;
    hint?: string;
    what?: string;
  }) {
    const on = opts.host ? ` on ${opts.host}` : "";
    const code = opts.exitCode === null ? "was killed" : `exited ${opts.exitCode}`;
    const stderrTail = redact(opts.stderrTail);
    const tail = stderrTail.trim() ? `\n${indent(stderrTail.trim())}` : "";
    super(redact(`${opts.what ?? opts.command}${on} ${code}${tail}`));
    this.command = redact(opts.command);
    this.exitCode = opts.exitCode;
    this.stderrTail = stderrTail;
    this.host = opts.host;
    this.hint = opts.hint;
  }
}

function indent(s: string): string {
  return s
    .split("\n")
    .map((l) => `  | ${l}`)
    .join("\n");
}

export function isUserFacing(e: unknown): e is ConfigError | DeployError | CommandError {
  return e instanceof ConfigError || e instanceof DeployError || e instanceof CommandError;
}

/** The one way an error becomes text for a person: message, then what to do. */
export function describeError(e: unknown): string {
  if (!isUserFacing(e)) {
    if (e instanceof Error) return `${e.message}\n${e.stack ?? ""}`;
    return String(e);
  }
  const parts = [e.message];
  if (e instanceof ConfigError && e.problems.length) {
    for (const p of e.problems) parts.push(`  - ${formatProblem(p)}`);
  }
  if (e.hint) parts.push(`What to do: ${e.hint}`);
  return parts.join("\n");
}
