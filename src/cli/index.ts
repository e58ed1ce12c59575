import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError, describeError, isUserFacing } from "../core/errors.js";
import { redact } from "../core/secrets.js";
import { workspacePath } from "../core/workspace.js";
import { buildCommand } from "./commands/build.js";
import { deployCommand, promoteCommand } from "./commands/deploy.js";
import { lockCommand } from "./commands/lock.js";
import { planCommand } from "./commands/plan.js";
import { releasesCommand } from "./commands/releases.js";
import { rollbackCommand } from "./commands/rollback.js";
import { smokeCommand } from "./commands/smoke.js";
import { validateCommand } from "./commands/validate.js";
import { color, TerminalLog } from "./terminal-log.js";
import {
  type CliContext,
  type CliIO,
  type Command,
  EXIT,
  type FlagSpec,
  type Flags,
  UsageError,
} from "./types.js";

export { type CliContext, type Command, EXIT, UsageError };

const COMMON: Record<string, FlagSpec> = {
  config: { type: "string", short: "c", value: "FILE", description: "config file (default deploy-kit.yml)" },
  env: { type: "string", short: "e", value: "NAME", description: "environment (a key of environments:)" },
  json: { type: "boolean", description: "machine-readable result on stdout (progress stays on stderr)" },
  verbose: { type: "boolean", short: "v", description: "debug output (compose output, every remote step)" },
  help: { type: "boolean", short: "h", description: "help for a command" },
};

const commands: Record<string, Command> = {
  validate: validateCommand,
  build: buildCommand,
  plan: planCommand,
  deploy: deployCommand,
  promote: promoteCommand,
  smoke: smokeCommand,
  rollback: rollbackCommand,
  releases: releasesCommand,
  lock: lockCommand,
};

/** Flags taken before any command. */
export const TOP_LEVEL_FLAGS = ["--help", "--version"] as const;

/** The CLI as data: the help text, docs/cli.md's test and the parser all read these tables. */
export function cliDefinition(): {
  commands: Readonly<Record<string, Command>>;
  common: Record<string, FlagSpec>;
} {
  return { commands, common: COMMON };
}

/** Other modules may add commands (kept in one table so --help lists them all). */
export function registerCommand(name: string, command: Command): void {
  commands[name] = command;
}

const EXIT_LINES = [
  "Exit codes:",
  "  0  ok",
  "  1  failed (a host, the build, a smoke check, the lock...)",
  "  2  usage: unknown command or flag, missing --env",
  "  3  configuration: deploy-kit.yml, the key, known_hosts or a host not ready; nothing changed",
  "  4  the deploy failed and the previous release was put back (rolled back)",
];

function flagLines(flags: Record<string, FlagSpec>): string[] {
  const rows = Object.entries(flags).map(([k, v]) => [
    `${v.short ? `-${v.short}, ` : "    "}--${k}${v.type === "string" ? ` ${v.value ?? "VALUE"}` : ""}`,
    `${v.description}${v.multiple ? " (repeatable)" : ""}`,
  ]);
  const w = Math.max(...rows.map((r) => r[0]!.length));
  return rows.map(([a, b]) => `  ${a!.padEnd(w)}  ${b}`);
}

export function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return [
    `${color.bold("deploy-kit")}: verified, reversible deploys over SSH, from a terminal.`,
    "The same code as the GitHub Actions; for when GitHub is down, for 3 a.m. rollbacks, and for",
    "checking a config without pushing a commit.",
    "",
    "Usage: deploy-kit <command> [flags]",
    "",
    "Commands:",
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
    "",
    "Common flags:",
    ...flagLines(COMMON),
    "",
    ...EXIT_LINES,
    "",
    "`deploy-kit <command> --help` for a command's flags; `deploy-kit --version` for the version.",
    "Docs: docs/cli.md.",
  ].join("\n");
}

export function commandHelp(name: string): string {
  const c = commands[name];
  if (!c) throw new UsageError(`unknown command "${name}"`);
  return [
    c.summary,
    "",
    `Usage: ${c.usage}`,
    ...(c.details?.length ? ["", ...c.details] : []),
    ...(c.options && Object.keys(c.options).length ? ["", "Flags:", ...flagLines(c.options)] : []),
    "",
    "Common flags:",
    ...flagLines(COMMON),
    "",
    ...EXIT_LINES,
  ].join("\n");
}

const defaultIO = (): CliIO => ({
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  isTTY: Boolean(process.stderr.isTTY),
  env: process.env,
});

/**
 * `version` is the installed package's, read from its package.json by the bin stub
 * (dist/cli/index.js), so a release bumps one file and the bundle stays the build of src/.
 */
export async function cli(argv: string[], io: CliIO = defaultIO(), version = "unknown"): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    if (name === "help" && rest[0] && commands[rest[0]]) {
      io.stdout(`${commandHelp(rest[0])}\n`);
      return EXIT.ok;
    }
    (name ? io.stdout : io.stderr)(`${mainHelp()}\n`);
    return name ? EXIT.ok : EXIT.usage;
  }
  if (name === "--version") {
    io.stdout(`deploy-kit ${version}\n`);
    return EXIT.ok;
  }
  const command = commands[name];
  if (!command) {
    io.stderr(`deploy-kit: unknown command "${name}"\n\n${mainHelp()}\n`);
    return EXIT.usage;
  }
  const specs = { ...COMMON, ...command.options };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: Object.fromEntries(
        Object.entries(specs).map(([k, v]) => [
          k,
          { type: v.type, ...(v.short ? { short: v.short } : {}), ...(v.multiple ? { multiple: true } : {}) },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    io.stderr(`deploy-kit ${name}: ${(e as Error).message}\nUsage: ${command.usage}\n`);
    return EXIT.usage;
  }
  const flags = parsed.values as Flags;
  if (flags.help) {
    io.stdout(`${commandHelp(name)}\n`);
    return EXIT.ok;
  }
  const log = new TerminalLog((l) => io.stderr(`${l}\n`), Boolean(flags.verbose));
  let loaded: { config: Config; file: string } | undefined;
  const str = (k: string) => {
    const v = flags[k];
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  // Paths are relative to the current directory (GITHUB_WORKSPACE inside Actions), as the
  // config's own paths (compose.file, image.context) are: run from the repository root.
  const configFile = () => workspacePath(str("config") ?? "deploy-kit.yml");
  const ctx: CliContext = {
    flags,
    positionals: parsed.positionals,
    log,
    io,
    // Results are redacted like the log: a host read from a secret (host-env) stays masked.
    emit(value, human) {
      if (flags.json) io.stdout(`${redact(JSON.stringify(value, null, 2))}\n`);
      else human();
    },
    print(text) {
      io.stdout(`${redact(text)}\n`);
    },
    async config() {
      if (!loaded) {
        loaded = await loadConfig(configFile(), {
          environment: str("env"),
          displayName: str("config") ?? "deploy-kit.yml",
        });
      }
      return loaded;
    },
    environment() {
      const e = str("env");
      if (!e) throw new UsageError("--env NAME is required");
      return e;
    },
    configFile,
    string: str,
    bool: (k) => flags[k] === true,
    list: (k) => {
      const v = flags[k];
      return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
    },
  };
  try {
    return await command.run(ctx);
  } catch (e) {
    const usage = e instanceof UsageError;
    const code = usage ? EXIT.usage : e instanceof ConfigError ? EXIT.config : EXIT.failed;
    if (usage) io.stderr(`deploy-kit ${name}: ${(e as Error).message}\nUsage: ${command.usage}\n`);
    else log.error(describeError(e));
    if (!usage && !isUserFacing(e)) log.debug(String((e as Error).stack));
    if (flags.json)
      io.stdout(
        `${JSON.stringify({ ok: false, exitCode: code, error: usage ? (e as Error).message : describeError(e) }, null, 2)}\n`,
      );
    return code;
  }
}
