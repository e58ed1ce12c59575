import type { Annotation, Log } from "../core/log.js";
import { redact } from "../core/secrets.js";

const useColor = () => Boolean(process.stderr.isTTY) && !process.env.NO_COLOR;
const paint = (code: string, s: string) => (useColor() ? `\x1b[${code}m${s}\x1b[0m` : s);
export const color = {
  bold: (s: string) => paint("1", s),
  dim: (s: string) => paint("2", s),
  red: (s: string) => paint("31", s),
  green: (s: string) => paint("32", s),
  yellow: (s: string) => paint("33", s),
  cyan: (s: string) => paint("36", s),
};

/**
 * The CLI's Log: human text on stderr (stdout stays clean for --json), groups as headed,
 * indented sections with their duration, colours only on a TTY.
 */
export class TerminalLog implements Log {
  private depth = 0;
  constructor(
    private readonly out: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
    private readonly verbose = false,
  ) {}
  private say(line: string) {
    this.out(`${"  ".repeat(this.depth)}${redact(line)}`);
  }
  info(m: string) {
    for (const l of m.split("\n")) this.say(l);
  }
  warn(m: string, where?: Annotation) {
    this.say(color.yellow(`warning: ${at(where)}${m}`));
  }
  error(m: string, where?: Annotation) {
    this.say(color.red(`error: ${at(where)}${m}`));
  }
  debug(m: string) {
    if (this.verbose) this.say(color.dim(m));
  }
  async group<T>(title: string, fn: () => Promise<T>): Promise<T> {
    this.say(color.bold(color.cyan(`▸ ${title}`)));
    const start = Date.now();
    this.depth++;
    let ok = false;
    try {
      const r = await fn();
      ok = true;
      return r;
    } finally {
      this.depth--;
      const took = `${((Date.now() - start) / 1000).toFixed(1)} s`;
      this.say(color.dim(`${ok ? "✓" : "✗"} ${title} (${took})`));
    }
  }
}

function at(where?: Annotation): string {
  if (!where?.file) return "";
  return `${where.file}${where.line ? `:${where.line}:${where.col ?? 1}` : ""}: `;
}
