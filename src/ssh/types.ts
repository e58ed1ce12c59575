/** A command run on a host, as data. `script` is a POSIX sh script (see commands/shell `script`). */
export interface RemoteCommand {
  script: string;
  /** What a person would call this step ("docker compose pull"), used in logs and errors. */
  what: string;
  stdin?: string | Buffer;
  timeoutMs?: number;
  /** Stream output lines (already redacted). */
  onLine?: (line: string) => void;
  /** Return instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  hint?: string;
}

export interface RemoteResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * One host, reached over one connection for the whole action. Domain code only sees this
 * interface: unit tests pass a recording fake, e2e tests the real ssh2 session.
 */
export interface Remote {
  /** The name people see in logs: the host's alias. */
  readonly alias: string;
  run(cmd: RemoteCommand): Promise<RemoteResult>;
  upload(remotePath: string, content: string | Buffer, mode?: number): Promise<void>;
  /** Copy a file from the host to `localPath` byte for byte; what arrived is returned. */
  download(remotePath: string, localPath: string): Promise<{ bytes: number; sha256: string }>;
  close(): Promise<void>;
}
