// The deploy-kit CLI, BUILT (dist/cli/index.js under DK_DIST_ROOT or the repository), driven as a
// person drives it from a terminal, against the testbed: build, plan (offline and online), deploy
// to two hosts, a broken release rolled back (exit 4), the ledger, rollback by default and by id,
// smoke, lock status/release, and refusals that change nothing. Names: app t8-cli, ports 18801/18802.
import { cpSync, existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { LedgerEntry } from "../../src/release/ledger.js";
import {
  EXAMPLE_APP_DIR,
  ensureTestbed,
  exampleCompose,
  hostExec,
  isolatedDockerConfig,
  REPO_ROOT,
  resetHost,
  run,
  type Testbed,
  type TestbedHost,
  writeOperatorEnv,
} from "../support/testbed.js";

const APP = "t8-cli";
const PATH_ON_HOST = `/srv/${APP}`;
const PORTS = [18801, 18802];
const sha = (n: number) => `8${n}`.repeat(20).slice(0, 40);

let tb: Testbed;
let hosts: TestbedHost[];
let ws: string;
const CLI = join(resolve(process.env.DK_DIST_ROOT || REPO_ROOT), "dist/cli/index.js");

const COMPOSE = exampleCompose({ portVar: "T8_PORT" });

function config(): string {
  return `version: 1
app: ${APP}
image:
  name: ${tb.registry.plain}/t8-cli
  context: app
  dockerfile: app/Dockerfile
  build-args: { BASE_IMAGE: ${tb.baseImage} }
environments:
  e2e:
    url: http://${hosts[0]!.address}:${PORTS[0]}
    hosts:
${hosts.map((h) => `      - { host: ${h.address}, user: deploy, alias: ${h.alias} }`).join("\n")}
    path: ${PATH_ON_HOST}
    parallel: 2
    compose: { file: compose.yml, service: api }
    env-file: { required-keys: [T8_PORT] }
    health: { timeout: 30s, interval: 500ms }
    lock: { wait: 2s, lease: 10m }
    smoke:
      retries: 3
      interval: 500ms
      checks:
        - { path: /health, json: { status: ok }, version-field: git_sha }
    rollback: { on-failure: true, keep-releases: 3 }
`;
}

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const r = await run(process.execPath, [CLI, ...args], {
    cwd: ws,
    check: false,
    timeoutMs: 180_000,
    env: {
      ...process.env,
      DOCKER_HOST: tb.localDockerHost,
      DOCKER_CONFIG: isolatedDockerConfig(),
      DEPLOY_KIT_SSH_KEY: tb.deployKeyPath,
      DEPLOY_KIT_KNOWN_HOSTS: tb.knownHostsPath,
      HOME: ws,
      ...env,
    },
  });
  let json: Record<string, unknown> = {};
  if (args.includes("--json")) {
    try {
      json = JSON.parse(r.stdout) as Record<string, unknown>;
    } catch {
      throw new Error(
        `deploy-kit ${args.join(" ")} printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`,
      );
    }
  }
  return { ...r, json };
}

async function health(i: number): Promise<{ git_sha: string; version: string }> {
  const res = await fetch(`http://${hosts[i]!.address}:${PORTS[i]}/health`, {
    signal: AbortSignal.timeout(3000),
  });
  return (await res.json()) as { git_sha: string; version: string };
}

const images: Record<string, string> = {};

beforeAll(async () => {
  tb = await ensureTestbed();
  hosts = tb.hosts.slice(0, 2);
  if (!existsSync(CLI))
    throw new Error(
      `${CLI} is missing: build it with node scripts/build.mjs [--root DIR] (DK_DIST_ROOT=DIR)`,
    );
  ws = mkdtempSync(join(tmpdir(), "t8-cli-"));
  cpSync(EXAMPLE_APP_DIR, join(ws, "app"), { recursive: true });
  writeFileSync(join(ws, "deploy-kit.yml"), config());
  writeFileSync(join(ws, "compose.yml"), COMPOSE);
  for (const [i, h] of hosts.entries()) {
    await resetHost(h, APP);
    await writeOperatorEnv(h, `${PATH_ON_HOST}/.env`, `T8_PORT=${PORTS[i]}\n`);
  }
}, 600_000);

afterAll(async () => {
  for (const h of hosts ?? []) await resetHost(h, APP);
});

describe("deploy-kit CLI (built) on the testbed", () => {
  test("build pushes v1, v2 and a broken v3 and prints name@digest (--json)", async () => {
    for (const [n, version, mode] of [
      [1, "1.0.0", "ok"],
      [2, "2.0.0", "ok"],
      [3, "3.0.0", "crash"],
    ] as const) {
      const r = await cli([
        "build",
        "--git-sha",
        sha(n),
        "--version",
        version,
        "--build-arg",
        `APP_MODE=${mode}`,
        "--insecure-registry",
        "--json",
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.imageRef).toMatch(new RegExp(`^${tb.registry.plain}/t8-cli@sha256:[0-9a-f]{64}$`));
      expect(r.json.tags).toContain(`sha-${sha(n).slice(0, 12)}`);
      images[`v${n}`] = r.json.imageRef as string;
    }
  }, 300_000);

  test("plan --offline: the override and the remote scripts, without touching the network", async () => {
    const r = await cli(["plan", "-e", "e2e", "--image", images.v1!, "--offline", "--json"], {
      // No key and no known_hosts at all: offline needs neither.
      DEPLOY_KIT_SSH_KEY: "/nonexistent",
      DEPLOY_KIT_KNOWN_HOSTS: "/nonexistent",
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.offline).toBe(true);
    expect(JSON.parse(r.json.override as string)).toEqual({ services: { api: { image: images.v1 } } });
    const steps = r.json.steps as { host: string; step: string; script: string }[];
    expect(steps.map((s) => s.host)).toEqual([...Array(6).fill("h1"), ...Array(6).fill("h2")]);
    expect(steps.find((s) => s.step === "docker compose up")?.script).toContain(
      `cd ${PATH_ON_HOST} && docker compose -p ${APP} -f compose.yml -f .deploy-kit/override.yml up -d --no-build --remove-orphans`,
    );
    expect((r.json.hosts as { live?: string }[]).every((h) => h.live === undefined)).toBe(true);
  });

  test("plan (online) before the first deploy: hosts ready, no live release, lock free; nothing changes", async () => {
    const r = await cli(["plan", "-e", "e2e", "--git-sha", sha(1), "--insecure-registry", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    // Without --image, the image built for the commit, resolved to its digest in the registry.
    expect((r.json.image as { imageRef: string }).imageRef).toBe(images.v1);
    expect(r.json.hosts).toMatchObject([
      { alias: "h1", live: null, lock: "free", problems: [] },
      { alias: "h2", live: null, lock: "free", problems: [] },
    ]);
    expect(existsSync(join(hosts[0]!.srvDir, APP, ".deploy-kit/releases.jsonl"))).toBe(false);
    const human = await cli(["plan", "-e", "e2e", "--image", images.v1!, "--git-sha", sha(1)]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain("remote steps, in order:");
    expect(human.stdout).toContain(`GET http://${hosts[0]!.address}:${PORTS[0]}/health`);
  });

  test("deploy v1 then v2 (default image: the one built for --git-sha): exit 0, per-host progress with timings", async () => {
    const r1 = await cli(["deploy", "-e", "e2e", "--git-sha", sha(1), "--insecure-registry", "--json"]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.json).toMatchObject({ ok: true, rolledBack: false, imageRef: images.v1 });
    expect((r1.json.hosts as { alias: string; outcome: string }[]).map((h) => [h.alias, h.outcome])).toEqual([
      ["h1", "deployed"],
      ["h2", "deployed"],
    ]);
    expect(r1.stderr).toMatch(/h1: release \S+ is live \(\d+(\.\d)? s\)/);
    expect(r1.stderr).toMatch(/✓ Connect \(\d+\.\d s\)/);
    expect(r1.stderr).not.toContain("\x1b["); // not a TTY: no colours
    for (const i of [0, 1]) expect((await health(i)).git_sha).toBe(sha(1));

    const r2 = await cli(["deploy", "-e", "e2e", "--image", images.v2!, "--git-sha", sha(2)]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stdout).toContain("is live on e2e");
    expect(r2.stdout).toMatch(/phase\s+duration\s+result/);
    for (const i of [0, 1]) expect((await health(i)).git_sha).toBe(sha(2));
  });

  test("deploy of a crashing v3: exit 4, both hosts serve v2 again, the lock is free", async () => {
    const r = await cli(["deploy", "-e", "e2e", "--image", images.v3!, "--git-sha", sha(3), "--json"]);
    expect(r.code, r.stderr).toBe(4);
    expect(r.json).toMatchObject({ ok: false, rolledBack: true, exitCode: 4 });
    expect(r.stderr).toContain("rolled back");
    for (const i of [0, 1]) expect((await health(i)).git_sha).toBe(sha(2));
    const lock = await cli(["lock", "status", "-e", "e2e", "--json"]);
    expect(lock.json.hosts).toEqual([
      { alias: "h1", held: false },
      { alias: "h2", held: false },
    ]);
  });

  test("releases: the ledger of each host as a table and as JSON", async () => {
    const r = await cli(["releases", "-e", "e2e", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const perHost = r.json.hosts as {
      alias: string;
      live: string;
      rollbackTarget: string;
      entries: LedgerEntry[];
    }[];
    expect(perHost.map((h) => h.alias)).toEqual(["h1", "h2"]);
    for (const h of perHost) {
      // Each release that passed its smoke test has its verify line (what `promote` reads).
      expect(h.entries.map((e) => [e.kind, e.status, e["git-sha"]])).toEqual([
        ["deploy", "succeeded", sha(1)],
        ["verify", "succeeded", sha(1)],
        ["deploy", "succeeded", sha(2)],
        ["verify", "succeeded", sha(2)],
        ["deploy", "failed", sha(3)],
        ["rollback", "succeeded", sha(2)],
      ]);
      expect(h.live).toBe(h.entries[5]!.id);
      expect(h.rollbackTarget).toBe(h.entries[0]!.id);
    }
    const table = await cli(["releases", "-e", "e2e", "--host", "h2"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^h2: 6 entries; live \S+-rollback, rollback target \S+/);
    expect(table.stdout).toMatch(/^\s+\S+\s+verify\s+succeeded\s.*smoke passed/m);
    expect(table.stdout).not.toMatch(/^h1:/m);
    expect(table.stdout).toMatch(/^\*\s+\S+-rollback\s+rollback\s+succeeded/m);
  });

  test("rollback (default: the previous good image, v1), then rollback --to the v2 release id", async () => {
    const r = await cli(["rollback", "-e", "e2e", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.imageRef).toBe(images.v1);
    for (const i of [0, 1]) expect((await health(i)).git_sha).toBe(sha(1));

    const ledger = (await cli(["releases", "-e", "e2e", "--json"])).json.hosts as {
      entries: LedgerEntry[];
    }[];
    const v2 = ledger[0]!.entries.find((e) => e.kind === "deploy" && e["git-sha"] === sha(2))!;
    const back = await cli(["rollback", "-e", "e2e", "--to", v2.id]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain(`e2e rolled back to ${v2.id}`);
    for (const i of [0, 1]) expect((await health(i)).git_sha).toBe(sha(2));

    const unknown = await cli(["rollback", "-e", "e2e", "--to", "no-such-release"]);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('No release "no-such-release" in the ledger');
    for (const i of [0, 1]) expect((await health(i)).git_sha).toBe(sha(2));
  });

  test("smoke: passes for the live sha, fails (exit 1) for another", async () => {
    const ok = await cli(["smoke", "-e", "e2e", "--expect-version", sha(2), "--json"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.json.passed).toBe(true);
    const bad = await cli(["smoke", "-e", "e2e", "--expect-version", sha(1)]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain("FAILED");
  });

  test("lock status names the holder; release refuses a live lease, --force releases it", async () => {
    const info = JSON.stringify({
      owner: "ci@elsewhere",
      token: "t8tok",
      acquired: Math.floor(Date.now() / 1000),
      lease: 600,
    });
    await hostExec(
      hosts[0]!,
      [
        "sh",
        "-c",
        'mkdir "$1" && printf "%s" "$2" > "$1/info.json"',
        "sh",
        `${PATH_ON_HOST}/.deploy-kit/lock`,
        info,
      ],
      { user: "deploy" },
    );
    const status = await cli(["lock", "status", "-e", "e2e"]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^h1\s+held\s+ci@elsewhere/m);
    expect(status.stdout).toMatch(/^h2\s+free/m);

    const refused = await cli(["lock", "release", "-e", "e2e"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("held by ci@elsewhere");
    expect(existsSync(join(hosts[0]!.srvDir, APP, ".deploy-kit/lock"))).toBe(true);

    // A deploy meanwhile waits lock.wait (2 s) and gives up, changing nothing.
    const blocked = await cli(["deploy", "-e", "e2e", "--image", images.v1!, "--git-sha", sha(1)]);
    expect(blocked.code).toBe(1);
    expect(blocked.stderr).toContain("the deploy lock is held by ci@elsewhere");
    expect((await health(0)).git_sha).toBe(sha(2));

    const forced = await cli(["lock", "release", "-e", "e2e", "--force", "--json"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.json.released).toEqual(["h1"]);
    expect(existsSync(join(hosts[0]!.srvDir, APP, ".deploy-kit/lock"))).toBe(false);
  });

  test("refusals before any connection: no --env (2), no known_hosts (3), a host without a pinned key (3)", async () => {
    const noEnv = await cli(["deploy", "--image", images.v1!]);
    expect(noEnv.code).toBe(2);
    expect(noEnv.stderr).toContain("--env NAME is required");

    const noKnownHosts = await cli(["releases", "-e", "e2e"], {
      DEPLOY_KIT_KNOWN_HOSTS: join(ws, "missing"),
    });
    expect(noKnownHosts.code).toBe(3);
    expect(noKnownHosts.stderr).toContain("ssh-keyscan");

    // ~/.ssh/known_hosts (HOME is the workspace) pins only h1: h2 is never contacted.
    const only = (await run("grep", ["-F", hosts[0]!.address, tb.knownHostsPath])).stdout;
    await run("mkdir", ["-p", join(ws, ".ssh")]);
    writeFileSync(join(ws, ".ssh/known_hosts"), only);
    const partial = await cli(["releases", "-e", "e2e", "-i", tb.deployKeyPath], {
      DEPLOY_KIT_KNOWN_HOSTS: "",
    });
    expect(partial.code).toBe(3);
    expect(partial.stderr).toContain("known-hosts has no host key for h2");
  });
});
