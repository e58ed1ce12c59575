import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { lockStatusScript, parseLockStatus, removeAnonymousLockScript } from "../../src/cli/commands/lock.js";
import { plannedSteps } from "../../src/cli/commands/plan.js";
import { ledgerTable } from "../../src/cli/commands/releases.js";
import { table } from "../../src/cli/format.js";
import { cli, commandHelp, EXIT, mainHelp } from "../../src/cli/index.js";
import { parseConfig } from "../../src/config/load.js";
import type { LedgerEntry } from "../../src/release/ledger.js";

/** Runs the CLI in-process with captured output; never the real network. */
async function run(argv: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = "";
  let stderr = "";
  const code = await cli(argv, {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    isTTY: false,
    env: { HOME: "/nonexistent-home", ...env },
  });
  return { code, stdout, stderr };
}

const CONFIG = `version: 1
app: demo-app
image: { name: registry.example.com/acme/demo }
environments:
  staging:
    url: https://staging.example.com
    hosts:
      - { host: 203.0.113.10, user: deploy, alias: web-1 }
      - { host: 203.0.113.11, user: deploy, alias: web-2 }
    path: /opt/demo
    compose: { file: compose.yml, service: api }
    smoke:
      checks: [{ path: /health, version-field: git_sha }]
`;

function workspace(config = CONFIG): string {
  const dir = mkdtempSync(join(tmpdir(), "dk-cli-unit-"));
  writeFileSync(join(dir, "deploy-kit.yml"), config);
  writeFileSync(join(dir, "compose.yml"), "services:\n  api:\n    image: x\n");
  return dir;
}

const COMMANDS = ["validate", "build", "plan", "deploy", "smoke", "rollback", "releases", "lock"];

describe("help", () => {
  test("no command: the overview on stderr, exit 2 (usage)", async () => {
    const r = await run([]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain("Usage: deploy-kit <command> [flags]");
    expect(r.stdout).toBe("");
  });

  test("--help lists every command and the exit codes, exit 0", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c}\\s+\\S`, "m"));
    for (const code of ["0  ok", "1  failed", "2  usage", "3  configuration", "4  the deploy failed"])
      expect(r.stdout).toContain(code);
  });

  test.each(COMMANDS)("%s --help: usage, its flags and the common ones", async (name) => {
    const r = await run([name, "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: deploy-kit ${name}`);
    expect(r.stdout).toContain("-c, --config FILE");
    expect(r.stdout).toContain("--json");
    expect(r.stdout).toBe(`${commandHelp(name)}\n`);
  });

  test.each([
    [
      "deploy",
      ["--image REF", "--git-sha SHA", "-i, --ssh-key FILE", "--known-hosts FILE", "--require-backup"],
    ],
    ["rollback", ["--to ID|REF", "--restore-backup"]],
    ["plan", ["--offline", "--skip-migration-plan"]],
    ["build", ["--build-arg K=V", "(repeatable)", "--local", "--promote-only"]],
    ["lock", ["--force"]],
    ["releases", ["--host ALIAS", "--last N"]],
  ])("%s --help documents its flags", async (name, flags) => {
    const r = await run([name, "-h"]);
    for (const f of flags) expect(r.stdout).toContain(f);
  });

  test("help <command> is the command's help", async () => {
    const r = await run(["help", "deploy"]);
    expect(r.stdout).toBe(`${commandHelp("deploy")}\n`);
    expect(mainHelp()).toContain("docs/cli.md");
  });
});

describe("usage errors exit 2 and change nothing", () => {
  test.each([
    [["frobnicate"], 'unknown command "frobnicate"'],
    [["deploy", "--no-such-flag"], "Unknown option '--no-such-flag'"],
    [["deploy", "--image"], "Option '--image"],
    [["lock", "status"], "--env NAME is required"],
    [["lock", "-e", "staging"], "say status or release"],
    [["lock", "open", "-e", "staging"], 'unknown lock action "open"'],
    [["build", "--build-arg", "NOEQUALS"], "--build-arg NOEQUALS: expected KEY=VALUE"],
    [["promote", "-e", "production"], "promote needs --from ENV"],
    [["promote", "-e", "staging", "--from", "staging"], "--from staging is the environment being deployed"],
    [
      ["deploy", "-e", "production", "--from", "staging", "--image", "a/b@sha256:1"],
      "--from and --image exclude",
    ],
    [
      ["deploy", "-e", "production", "--from", "staging", "--min-soak", "a day"],
      "--min-soak a day: a duration",
    ],
    [["deploy", "-e", "production", "--release", "abc1234"], "they need --from ENV"],
  ])("%j", async (argv, message) => {
    const ws = workspace();
    const r = await run([...argv, "-c", join(ws, "deploy-kit.yml")]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain(message);
  });

  test("a usage error with --json is JSON too", async () => {
    const r = await run(["releases", "--json"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({ ok: false, exitCode: 2, error: "--env NAME is required" });
  });
});

describe("config errors exit 3", () => {
  test("a missing config file", async () => {
    const r = await run(["validate", "-c", "/nonexistent/deploy-kit.yml"]);
    expect(r.code).toBe(EXIT.config);
    expect(r.stderr).toContain("Config file not found: /nonexistent/deploy-kit.yml");
  });

  test("an invalid config names the path and line, as JSON with --json", async () => {
    const ws = workspace(CONFIG.replace("path: /opt/demo", "path: /opt/demo\n    colour: blue"));
    const r = await run(["validate", "-c", join(ws, "deploy-kit.yml"), "--json"]);
    expect(r.code).toBe(3);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(false);
    expect(out.error).toMatch(/environments\.staging.*colour/);
    expect(out.error).toMatch(/deploy-kit\.yml:\d+:\d+/);
  });

  test("an unknown environment suggests the closest", async () => {
    const ws = workspace();
    const r = await run(["plan", "-c", join(ws, "deploy-kit.yml"), "-e", "stagin", "--offline"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('did you mean "staging"');
  });

  test("no SSH key and no known_hosts: exit 3 before any connection, saying what to do", async () => {
    const ws = workspace();
    const cfg = join(ws, "deploy-kit.yml");
    const noKey = await run(["releases", "-c", cfg, "-e", "staging"]);
    expect(noKey.code).toBe(3);
    expect(noKey.stderr).toContain("No SSH key file at /nonexistent-home/.ssh/id_ed25519");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(ws, "key")]);
    const noHosts = await run(["releases", "-c", cfg, "-e", "staging", "-i", join(ws, "key")]);
    expect(noHosts.code).toBe(3);
    expect(noHosts.stderr).toContain("No known_hosts file at /nonexistent-home/.ssh/known_hosts");
    expect(noHosts.stderr).toContain("ssh-keyscan");
    writeFileSync(join(ws, "kh"), "");
    const unpinned = await run(
      ["releases", "-c", cfg, "-e", "staging", "--json", "--known-hosts", join(ws, "kh")],
      { DEPLOY_KIT_SSH_KEY: join(ws, "key") },
    );
    expect(unpinned.code).toBe(3);
    expect(JSON.parse(unpinned.stdout).error).toContain("known-hosts has no host key for web-1");
  });

  test("the key itself in DEPLOY_KIT_SSH_KEY is never printed", async () => {
    const ws = workspace();
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(ws, "key")]);
    const { readFileSync } = await import("node:fs");
    const key = readFileSync(join(ws, "key"), "utf8");
    const r = await run(
      ["releases", "-c", join(ws, "deploy-kit.yml"), "-e", "staging", "--known-hosts", "/dev/null", "-v"],
      {
        DEPLOY_KIT_SSH_KEY: key,
      },
    );
    expect(r.code).toBe(3);
    expect(r.stdout + r.stderr).not.toContain(key.split("\n")[1]!);
  });
});

describe("validate and plan --offline work without a network", () => {
  test("validate: a table to read, or JSON to script", async () => {
    const ws = workspace();
    const human = await run(["validate", "-c", join(ws, "deploy-kit.yml")]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^staging\s+web-1\s+deploy@203\.0\.113\.10:22/m);
    const json = await run(["validate", "-c", join(ws, "deploy-kit.yml"), "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, valid: true, environments: ["staging"] });
  });

  test("plan --offline --image: override, steps per host, smoke expectations", async () => {
    const ws = workspace();
    const ref = `registry.example.com/acme/demo@sha256:${"a".repeat(64)}`;
    const cwd = process.cwd();
    process.chdir(ws);
    try {
      const r = await run([
        "plan",
        "-e",
        "staging",
        "--offline",
        "--image",
        ref,
        "--git-sha",
        "f".repeat(40),
        "--json",
      ]);
      expect(r.code, r.stderr).toBe(0);
      const plan = JSON.parse(r.stdout);
      expect(plan.image).toEqual({ imageRef: ref, gitSha: "f".repeat(40), source: "--image" });
      expect(plan.releaseId).toMatch(/^\d{8}-\d{6}-fffffff$/);
      expect(plan.smoke).toEqual([
        { url: "https://staging.example.com/health", expect: `status 200, git_sha = ${"f".repeat(40)}` },
      ]);
      const human = await run(["plan", "-e", "staging", "--offline", "--image", ref]);
      expect(human.stdout).toContain("offline: hosts not contacted");
      expect(human.stderr).toContain("--image without --git-sha");
    } finally {
      process.chdir(cwd);
    }
  });
});

describe("pure pieces", () => {
  test("plannedSteps: the same scripts the deploy runs, per host, in order", () => {
    const config = parseConfig(CONFIG);
    const env = config.environments.staging!;
    const ref = `registry.example.com/acme/demo@sha256:${"b".repeat(64)}`;
    const steps = plannedSteps(
      config,
      env,
      { name: "compose.yml", content: "" },
      ref,
      "20260101-000000-abcdef1",
      [{ alias: "web-1", compose: "docker-compose" }, { alias: "web-2" }],
    );
    expect(steps.map((s) => [s.host, s.step.split(" ").slice(0, 3).join(" ")])).toEqual([
      ["web-1", "pull the image"],
      ["web-1", "upload /opt/demo/.deploy-kit/releases/20260101-000000-abcdef1/compose.yml (compose.yml)"],
      ["web-1", "switch to the"],
      ["web-1", "docker compose up"],
      ["web-1", "wait until api"],
      ["web-1", "record 20260101-000000-abcdef1 in"],
      ["web-2", "pull the image"],
      ["web-2", "upload /opt/demo/.deploy-kit/releases/20260101-000000-abcdef1/compose.yml (compose.yml)"],
      ["web-2", "switch to the"],
      ["web-2", "docker compose up"],
      ["web-2", "wait until api"],
      ["web-2", "record 20260101-000000-abcdef1 in"],
    ]);
    // Each host's own compose front end; the image only ever appears quoted.
    expect(steps[3]!.script).toBe(
      "set -eu\ncd /opt/demo && docker-compose -p demo-app -f compose.yml -f .deploy-kit/override.yml up -d --no-build --remove-orphans",
    );
    expect(steps[9]!.script).toContain("&& docker compose -p demo-app");
    expect(steps[0]!.script).toBe(`set -eu\ndocker pull --quiet ${ref}`);
  });

  test.each([
    ["free 1700000000\n", { alias: "h1", held: false }],
    [
      'held 1700000100\n{"owner":"ci@x","token":"tk","acquired":1700000000,"lease":600}\n',
      {
        alias: "h1",
        held: true,
        owner: "ci@x",
        token: "tk",
        acquired: "2023-11-14T22:13:20.000Z",
        leaseUntil: "2023-11-14T22:23:20.000Z",
        expired: false,
      },
    ],
    [
      'held 1700000601\n{"owner":"ci@x","token":"tk","acquired":1700000000,"lease":600}\n',
      { held: true, expired: true },
    ],
    ["held 1700000000\n{}\n", { held: true, owner: undefined, expired: true }],
    ["held 1700000000\nnot json\n", { held: true, expired: true }],
  ])("parseLockStatus(%j)", (stdout, expected) => {
    expect(parseLockStatus("h1", stdout)).toMatchObject(expected);
  });

  test("lock scripts: read-only status, quoted paths", () => {
    expect(lockStatusScript("/srv/my app")).toBe(
      [
        "set -eu",
        "now=$(date +%s)",
        "if [ -d '/srv/my app/.deploy-kit/lock' ]; then",
        '  echo "held $now"',
        "  if [ -s '/srv/my app/.deploy-kit/lock/info.json' ]; then cat '/srv/my app/.deploy-kit/lock/info.json'; else echo '{}'; fi",
        "else",
        '  echo "free $now"',
        "fi",
      ].join("\n"),
    );
    expect(removeAnonymousLockScript("/srv/a")).toContain(
      "if [ -d /srv/a/.deploy-kit/lock ] && [ ! -s /srv/a/.deploy-kit/lock/info.json ]; then rm -rf /srv/a/.deploy-kit/lock;",
    );
  });

  test("the lock status script runs in a real shell", () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-lock-"));
    const sh = (s: string) => execFileSync("sh", ["-c", s], { encoding: "utf8" });
    expect(sh(lockStatusScript(dir))).toMatch(/^free \d+\n$/);
    execFileSync("mkdir", ["-p", join(dir, ".deploy-kit/lock")]);
    expect(sh(lockStatusScript(dir))).toMatch(/^held \d+\n\{\}\n$/);
    expect(sh(removeAnonymousLockScript(dir))).toBe("released\n");
    expect(sh(lockStatusScript(dir))).toMatch(/^free/);
  });

  test("ledgerTable marks the live release and the rollback target", () => {
    const e = (
      id: string,
      kind: LedgerEntry["kind"],
      image: string,
      status: LedgerEntry["status"] = "succeeded",
    ) =>
      ({
        id,
        kind,
        "image-ref": `r/app@sha256:${image.repeat(64)}`,
        "git-sha": null,
        version: null,
        time: "2026-01-01T00:00:00.000Z",
        actor: "me@laptop",
        "run-url": null,
        status,
        backup: null,
        "migration-applied": null,
      }) satisfies LedgerEntry;
    const text = ledgerTable("h1", [
      e("r1", "deploy", "a"),
      e("r2", "deploy", "b"),
      e("r3", "deploy", "c", "failed"),
    ]);
    expect(text.split("\n")[0]).toBe("h1: 3 entries; live r3, rollback target r2");
    expect(text).toMatch(
      /^<\s+r2\s+deploy\s+succeeded\s+2026-01-01 00:00:00Z\s+r\/app@sha256:bbbbbbbbbbbb\s/m,
    );
    expect(text).toMatch(/^\*\s+r3\s+deploy\s+failed/m);
    // A verify line shares its release's id: no mark on it, and its verdict in the notes.
    const verified = ledgerTable("h1", [
      e("r1", "deploy", "a"),
      { ...e("r1", "verify", "a"), smoke: "passed", watch: "failed", status: "failed" },
    ]);
    expect(verified).toMatch(/^\*\s+r1\s+deploy\s/m);
    expect(verified).toMatch(/^\s+r1\s+verify\s+failed\s.*smoke passed, watch failed/m);
    expect(ledgerTable("h2", [])).toBe("h2: no releases yet");
    expect(ledgerTable("h1", [e("r1", "deploy", "a"), e("r2", "deploy", "b")], 1)).toContain(
      "(newest 1 shown)",
    );
  });

  test("table aligns columns", () => {
    expect(
      table(
        ["a", "bb"],
        [
          ["xxx", "y"],
          [1, "`z`"],
        ],
      ),
    ).toBe("a    bb\n---  --\nxxx  y\n1    z");
  });
});

describe("--version", () => {
  test("prints the version the bin stub read from the installed package.json", async () => {
    const io = { stdout: (t: string) => void out.push(t), stderr: () => {}, isTTY: false, env: {} };
    const out: string[] = [];
    expect(await cli(["--version"], io, "1.2.3")).toBe(0);
    expect(out.join("")).toBe("deploy-kit 1.2.3\n");
  });
});
