// The all-in-one deploy action, bundled and run as the runner runs it, after the bundled
// build-image: real build and push to the basic-auth registry, a migration with a verified backup
// in the testbed PostgreSQL, a deploy to two hosts, smoke tests expecting the deployed sha — and
// two broken releases that must leave the previous one serving. Names: t6-*, ports 186xx.
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runBundled, visible } from "../support/runner.js";
import {
  EXAMPLE_APP_DIR,
  ensureTestbed,
  hostLedger,
  machinePath,
  resetHost,
  run,
  type Testbed,
  type TestbedHost,
  writeOperatorEnv,
} from "../support/testbed.js";

const APP = "t6-pipe";
const DB = "t6_pipe";
const PORT = 18601;
const sha = (n: number) => n.toString(16).padStart(2, "0").repeat(20);

let tb: Testbed;
let hosts: TestbedHost[];
let sshKey: string;
let knownHosts: string;

const COMPOSE = `services:
  api:
    image: \${API_IMAGE:-unset}
    init: true
    ports:
      - "\${T6_PORT}:8080"
    env_file: .env
    healthcheck:
      test:
        - CMD-SHELL
        - busybox wget -q -O - http://127.0.0.1:8080/health | grep -q '"status":"ok"'
      interval: 1s
      timeout: 2s
      retries: 3
`;

function workspace(mode: "ok" | "unhealthy"): string {
  const ws = mkdtempSync(join(tmpdir(), "t6-ws-"));
  cpSync(EXAMPLE_APP_DIR, join(ws, "app"), { recursive: true });
  writeFileSync(join(ws, "compose.yml"), COMPOSE);
  writeFileSync(
    join(ws, "deploy-kit.yml"),
    `version: 1
app: ${APP}
image:
  name: ${tb.registry.auth}/t6-app
  context: app
  dockerfile: app/Dockerfile
  build-args: { APP_MODE: ${mode} }
environments:
  e2e:
    url: http://${hosts[0]!.address}:${PORT}
    hosts:
${hosts.map((h) => `      - { host: ${h.address}, user: deploy, alias: ${h.alias} }`).join("\n")}
    path: /srv/${APP}
    parallel: 2
    compose: { file: compose.yml, service: api }
    env-file: { required-keys: [DATABASE_URL] }
    health: { timeout: 20s }
    lock: { wait: 10s }
    migrate:
      command: migrate
      backup: { service: api, database-env: DATABASE_URL, keep: 5 }
    smoke:
      retries: 5
      interval: 1s
      checks:
        - { path: /health, json: { status: ok }, version-field: git_sha }
        - { path: /ready, body: "^ready" }
`,
  );
  return ws;
}

async function build(ws: string, gitSha: string) {
  const r = await runBundled("build-image", {
    cwd: ws,
    inputs: {
      "git-sha": gitSha,
      "registry-username": tb.registry.username,
      "registry-password": tb.registry.password,
      "insecure-registry": "true",
    },
    env: { DOCKER_HOST: tb.localDockerHost, DOCKER_CONFIG: mkdtempSync(join(tmpdir(), "t6-docker-")) },
  });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  return r.outputs["image-ref"]!;
}

function deploy(ws: string, imageRef: string, gitSha: string) {
  return runBundled("deploy", {
    cwd: ws,
    inputs: {
      environment: "e2e",
      "image-ref": imageRef,
      "git-sha": gitSha,
      "ssh-key": sshKey,
      "known-hosts": knownHosts,
      "registry-username": tb.registry.username,
      "registry-password": tb.registry.password,
      "require-backup": "true",
    },
  });
}

async function health(h: TestbedHost): Promise<{ git_sha: string; status: string }> {
  const res = await fetch(`http://${h.address}:${PORT}/health`, { signal: AbortSignal.timeout(3000) });
  return (await res.json()) as { git_sha: string; status: string };
}

const ledger = (h: TestbedHost) => hostLedger(h, APP);

async function psql(sql: string): Promise<string> {
  const url = `postgres://postgres@127.0.0.1:${tb.postgres.port}/${DB}`;
  return (await run("psql", [url, "-X", "-At", "-c", sql])).stdout.trim();
}

beforeAll(async () => {
  tb = await ensureTestbed();
  hosts = tb.hosts.slice(0, 2);
  sshKey = readFileSync(tb.deployKeyPath, "utf8");
  knownHosts = readFileSync(tb.knownHostsPath, "utf8");
  const admin = `postgres://postgres@127.0.0.1:${tb.postgres.port}/postgres`;
  await run("psql", [admin, "-X", "-c", `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`]);
  await run("psql", [admin, "-X", "-c", `CREATE DATABASE ${DB} OWNER ${tb.postgres.user}`]);
  const url = `postgres://${tb.postgres.user}:${tb.postgres.password}@${tb.postgres.host}:${tb.postgres.port}/${DB}`;
  for (const h of hosts) {
    await resetHost(h, APP);
    await writeOperatorEnv(h, `/srv/${APP}/.env`, `DATABASE_URL=${url}\nT6_PORT=${PORT}\n`);
  }
});

describe("deploy action (bundled): build -> migrate with backup -> deploy -> smoke", () => {
  let v1Ref = "";

  it("deploys v1 to both hosts after a verified backup, and the smoke test sees v1's sha", async () => {
    const ws = workspace("ok");
    v1Ref = await build(ws, sha(1));
    const r = await deploy(ws, v1Ref, sha(1));
    expect(r.exitCode, visible(r.stdout)).toBe(0);
    expect(r.outputs["rolled-back"]).toBe("false");
    expect(r.outputs["image-ref"]).toBe(v1Ref);
    expect(r.outputs.url).toBe(`http://${hosts[0]!.address}:${PORT}`);
    expect(r.outputs["release-id"]).toMatch(/\S/);
    for (const h of hosts) expect((await health(h)).git_sha).toBe(sha(1));
    // The migration ran once, after a backup that pg_restore can read.
    expect(await psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'widgets'")).toBe(
      "1",
    );
    const backups = readdirSync(join(machinePath(hosts[0]!, `/srv/${APP}`), ".deploy-kit/backups"));
    expect(backups.length).toBe(1);
    const first = ledger(hosts[0]!);
    // The smoke test's verdict follows the release: the line `deploy-kit promote` reads.
    expect(first.map((e) => e.kind)).toEqual(["migrate", "deploy", "verify"]);
    expect(first[1]!.backup).toContain(".deploy-kit/backups/");
    expect(first[1]!["migration-applied"]).toBe(true);
    expect(ledger(hosts[1]!).map((e) => e.kind)).toEqual(["deploy", "verify"]);
    // One summary tells the whole story.
    expect(r.summary).toContain("| phase | duration | result |");
    for (const p of ["migrate", "deploy", "smoke"]) expect(r.summary).toContain(`| ${p} |`);
    expect(visible(r.everything)).not.toContain(tb.registry.password);
    expect(visible(r.everything)).not.toContain(sshKey.split("\n")[1]!);
  });

  it("a release whose new containers answer with another sha fails the smoke test and is rolled back", async () => {
    const ws = workspace("ok");
    const v2Ref = await build(ws, sha(2));
    // Deploying v2's image while claiming sha 3: the smoke test must notice the version mismatch.
    const r = await deploy(ws, v2Ref, sha(3));
    expect(r.exitCode).toBe(1);
    expect(r.outputs["rolled-back"]).toBe("true");
    expect(r.outputs["image-ref"]).toBe(v1Ref);
    expect(visible(r.stdout)).toContain("ROLLED BACK");
    expect(r.summary).toContain("| rollback |");
    for (const h of hosts) expect((await health(h)).git_sha).toBe(sha(1));
    expect(ledger(hosts[0]!).at(-1)).toMatchObject({
      kind: "rollback",
      status: "succeeded",
      "image-ref": v1Ref,
    });
  });

  it("a release that never gets healthy is rolled back by the health gate; the previous release keeps serving", async () => {
    const ws = workspace("unhealthy");
    const bad = await build(ws, sha(4));
    const r = await deploy(ws, bad, sha(4));
    expect(r.exitCode).toBe(1);
    expect(r.outputs["rolled-back"]).toBe("true");
    expect(visible(r.stdout)).toMatch(/rolled back/i);
    for (const h of hosts) expect((await health(h)).git_sha).toBe(sha(1));
    // The lock was released: a good deploy goes through right after.
    const again = await deploy(workspace("ok"), v1Ref, sha(1));
    expect(again.exitCode, visible(again.stdout)).toBe(0);
  });

  it("refuses to migrate without a configured backup when require-backup is true, changing nothing", async () => {
    const ws = workspace("ok");
    const text = readFileSync(join(ws, "deploy-kit.yml"), "utf8").replace(/\n {6}backup: .*\n/, "\n");
    writeFileSync(join(ws, "deploy-kit.yml"), text);
    const before = ledger(hosts[0]!).length;
    const r = await deploy(ws, v1Ref, sha(1));
    expect(r.exitCode).toBe(1);
    expect(visible(r.stdout)).toContain("no backup, no migration");
    expect(ledger(hosts[0]!).length).toBe(before);
    expect((await health(hosts[0]!)).git_sha).toBe(sha(1));
  });
});
