import { redact } from "./secrets.js";

export interface Annotation {
  file?: string;
  line?: number;
  col?: number;
  title?: string;
}

/**
 * What domain code may say to a person. The Actions front end maps it to @actions/core
 * (groups, annotations); the CLI maps it to a terminal. Domain code never imports either.
 */
export interface Log {
  info(message: string): void;
  warn(message: string, where?: Annotation): void;
  error(message: string, where?: Annotation): void;
  debug(message: string): void;
  group<T>(title: string, fn: () => Promise<T>): Promise<T>;
}

/** Run `fn` in a log group whose title ends with how long it took. */
export async function timed<T>(log: Log, title: string, fn: () => Promise<T>): Promise<T> {
  const start = Date.now();
  return log.group(title, async () => {
    try {
      return await fn();
    } finally {
      log.info(`${title}: ${seconds(Date.now() - start)}`);
    }
  });
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A Log that records lines, for tests and for capturing output. */
export class MemoryLog implements Log {
  readonly lines: string[] = [];
  info(m: string) {
    this.lines.push(redact(m));
  }
  warn(m: string) {
    this.lines.push(`warning: ${redact(m)}`);
  }
  error(m: string) {
    this.lines.push(`error: ${redact(m)}`);
  }
  debug(m: string) {
    this.lines.push(`debug: ${redact(m)}`);
  }
  async group<T>(title: string, fn: () => Promise<T>): Promise<T> {
    this.lines.push(`## ${redact(title)}`);
    return fn();
  }
  text(): string {
    return this.lines.join("\n");
  }
}
