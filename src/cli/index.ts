import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError, describeError, isUserFacing } from "../core/errors.js";
import { renderSummary } from "../core/summary.js";
import { configSections } from "../validate/summary.js";
import { color, TerminalLog } from "./terminal-log.js";

/** Exit codes, documented in --help and the README. */
export const EXIT = { ok: 0, failed: 1, usage: 2, config: 3, rolledBack: 4 } as const;

export interface CliContext {
  flags: Record<string, string | boolean | undefined>;
  positionals: string[];
  log: TerminalLog;
  /** Machine-readable result on stdout when --json is given. */
  emit(value: unknown, human: () => void): void;
  config(): Promise<{ config: Config; file: string }>;
}

export interface Command {
  summary: string;
  usage: string;
  /** Extra flags this command takes, in node:util parseArgs form. */
  options?: Record<string, { type: "string" | "boolean"; short?: string }>;
  run(ctx: CliContext): Promise<number>;
}

const COMMON = {
  config: { type: "string", short: "c" },
  env: { type: "string", short: "e" },
  json: { type: "boolean" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
} as const;

const commands: Record<string, Command> = {
  validate: {
    summary: "Validate deploy-kit.yml (and, with --remote, each host)",
    usage: "deploy-kit validate [--env E] [--remote]",
    options: { remote: { type: "boolean" } },
    async run(ctx) {
      const { config, file } = await ctx.config();
      const env = ctx.flags.env as string | undefined;
      ctx.emit({ valid: true, file, environments: Object.keys(config.environments) }, () => {
        process.stdout.write(`${renderSummary(`${file}: valid`, configSections(config, env))}\n`);
      });
      return EXIT.ok;
    },
  },
};

/** Other modules add their commands here (kept in one table so --help lists them all). */
export function registerCommand(name: string, command: Command): void {
  commands[name] = command;
}

function help(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return [
    `${color.bold("deploy-kit")}: verified, reversible deploys over SSH, from a terminal.`,
    "",
    "Usage: deploy-kit <command> [flags]",
    "",
    "Commands:",
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
    "",
    "Common flags:",
    "  -c, --config FILE   config file (default deploy-kit.yml)",
    "  -e, --env NAME      environment",
    "      --json          machine-readable result on stdout",
    "  -v, --verbose       debug output",
    "  -h, --help          help for a command",
    "",
    "Exit codes: 0 ok, 1 failed, 2 usage, 3 config error, 4 failed and rolled back.",
  ].join("\n");
}

export async function cli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${help()}\n`);
    return name ? EXIT.ok : EXIT.usage;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`deploy-kit: unknown command "${name}"\n\n${help()}\n`);
    return EXIT.usage;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...COMMON, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    process.stderr.write(`deploy-kit ${name}: ${(e as Error).message}\nUsage: ${command.usage}\n`);
    return EXIT.usage;
  }
  const flags = parsed.values as CliContext["flags"];
  if (flags.help) {
    const opts = Object.entries(command.options ?? {}).map(
      ([k, v]) => `      --${k}${v.type === "string" ? " VALUE" : ""}`,
    );
    process.stdout.write(
      `${command.summary}\n\nUsage: ${command.usage}\n${opts.length ? `\nFlags:\n${opts.join("\n")}\n` : ""}\n${help().split("\n").slice(-9).join("\n")}\n`,
    );
    return EXIT.ok;
  }
  const log = new TerminalLog(undefined, Boolean(flags.verbose));
  let loaded: { config: Config; file: string } | undefined;
  const ctx: CliContext = {
    flags,
    positionals: parsed.positionals,
    log,
    emit(value, human) {
      if (flags.json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else human();
    },
    async config() {
      if (!loaded) {
        const file = (flags.config as string | undefined) ?? "deploy-kit.yml";
        loaded = await loadConfig(file, { environment: flags.env as string | undefined });
      }
      return loaded;
    },
  };
  try {
    return await command.run(ctx);
  } catch (e) {
    log.error(describeError(e));
    if (flags.json)
      process.stdout.write(`${JSON.stringify({ ok: false, error: describeError(e) }, null, 2)}\n`);
    if (e instanceof ConfigError) return EXIT.config;
    if (!isUserFacing(e)) log.debug(String((e as Error).stack));
    return EXIT.failed;
  }
}
