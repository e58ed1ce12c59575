import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { CommandError } from "../../src/core/errors.js";
import type { Remote, RemoteCommand, RemoteResult } from "../../src/ssh/types.js";

export type Reply = Partial<RemoteResult> & { lines?: string[]; throws?: Error };

/** Records every command; answers by the first rule whose pattern is in the `what` or script. */
export class FakeRemote implements Remote {
  readonly alias = "t5-host-1";
  readonly commands: RemoteCommand[] = [];
  readonly uploads: { path: string; content: string; mode?: number }[] = [];
  constructor(private readonly rules: [RegExp, Reply][] = []) {}
  async run(cmd: RemoteCommand): Promise<RemoteResult> {
    this.commands.push(cmd);
    const reply = this.rules.find(([re]) => re.test(cmd.what) || re.test(cmd.script))?.[1] ?? {};
    for (const l of reply.lines ?? []) cmd.onLine?.(l);
    if (reply.throws) throw reply.throws;
    const res = { exitCode: reply.exitCode ?? 0, stdout: reply.stdout ?? "", stderr: reply.stderr ?? "" };
    if (res.exitCode !== 0 && !cmd.allowFailure) {
      throw new CommandError({
        command: cmd.what,
        exitCode: res.exitCode,
        stderrTail: res.stderr,
        host: this.alias,
      });
    }
    return res;
  }
  async upload(path: string, content: string | Buffer, mode?: number): Promise<void> {
    this.uploads.push({ path, content: String(content), mode });
  }
  /** Files on this fake host, by path, for download; each download is recorded. */
  readonly files = new Map<string, Buffer>();
  readonly downloads: { path: string; to: string }[] = [];
  async download(path: string, to: string): Promise<{ bytes: number; sha256: string }> {
    this.downloads.push({ path, to });
    const data = this.files.get(path);
    if (!data)
      throw new CommandError({
        command: `cat ${path}`,
        exitCode: 1,
        stderrTail: "No such file",
        host: this.alias,
      });
    writeFileSync(to, data);
    return { bytes: data.length, sha256: createHash("sha256").update(data).digest("hex") };
  }
  async close(): Promise<void> {}
}
