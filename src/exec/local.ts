import * as exec from "@actions/exec";
import { argvToShell } from "../commands/shell.js";
import { CommandError } from "../core/errors.js";
import { redact } from "../core/secrets.js";

/** A local command as data. */
export interface LocalCommand {
  argv: string[];
  /** What a person would call this step, used in errors ("docker push"). */
  what?: string;
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  /** Stream output lines to this callback (already redacted). */
  onLine?: (line: string) => void;
  /** Return instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  hint?: string;
}

export interface LocalResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface LocalExecutor {
  run(cmd: LocalCommand): Promise<LocalResult>;
}

const TAIL = 4000;

export function tail(text: string, max = TAIL): string {
  return text.length > max ? `…${text.slice(-max)}` : text;
}

/** The only place that spawns local processes. */
export class ProcessExecutor implements LocalExecutor {
  async run(cmd: LocalCommand): Promise<LocalResult> {
    const [file, ...args] = cmd.argv;
    if (!file) throw new Error("empty command");
    let pending = "";
    const emit = (chunk: Buffer) => {
      if (!cmd.onLine) return;
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const l of lines) cmd.onLine(redact(l));
    };
    const res = await exec.getExecOutput(file, args, {
      cwd: cmd.cwd,
      env: cmd.env
        ? (Object.fromEntries(
            Object.entries({ ...process.env, ...cmd.env }).filter(([, v]) => v !== undefined),
          ) as Record<string, string>)
        : undefined,
      input: cmd.input === undefined ? undefined : Buffer.from(cmd.input),
      silent: true,
      ignoreReturnCode: true,
      listeners: { stdout: emit, stderr: emit },
    });
    if (pending && cmd.onLine) cmd.onLine(redact(pending));
    const result = { exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr };
    if (res.exitCode !== 0 && !cmd.allowFailure) {
      throw new CommandError({
        command: redact(argvToShell(cmd.argv)),
        what: cmd.what,
        exitCode: res.exitCode,
        stderrTail: redact(tail(res.stderr.trim() || res.stdout.trim())),
        hint: cmd.hint,
      });
    }
    return result;
  }
}
