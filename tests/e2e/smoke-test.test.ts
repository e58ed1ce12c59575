// The smoke-test action, bundled, against the example app running on a testbed host (started with
// compose from the machine side, as deploy-ssh would leave it). Named t5-*, ports 1851x.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runBundled } from "../support/runner.js";
import {
  buildExampleImage,
  type ExampleImage,
  ensureTestbed,
  hostExec,
  resetHost,
  type Testbed,
  type TestbedHost,
  waitForHttp,
  writeOperatorEnv,
} from "../support/testbed.js";

const APP = "t5-smoke";
const PUBLIC_PORT = 18510;
// Bound on the host's loopback only: reachable from the host, not from the runner.
const LOOPBACK_PORT = 18511;
const SLOW_PORT = 18512;

let tb: Testbed;
let h1: TestbedHost;
let v1: ExampleImage;
let slow: ExampleImage;
let sshKey: string;
let knownHosts: string;
const V2_SHA = "2".repeat(40);

const COMPOSE = `services:
  api:
    image: \${V1_IMAGE}
    init: true
    ports:
      - "${PUBLIC_PORT}:8080"
      - "127.0.0.1:${LOOPBACK_PORT}:8080"
  slow:
    image: \${SLOW_IMAGE}
    init: true
    environment: { SLOW_START_SECONDS: "4" }
    ports:
      - "${SLOW_PORT}:8080"
`;

function workspace(smoke: string): string {
  const dir = mkdtempSync(join(tmpdir(), "t5-smoke-ws-"));
  writeFileSync(
    join(dir, "deploy-kit.yml"),
    `version: 1
app: ${APP}
image: { name: 10.200.0.1:5000/t5-app }
environments:
  e2e:
    url: http://${h1.address}:${PUBLIC_PORT}
    hosts: [{ host: ${h1.address}, user: deploy, alias: h1 }]
    path: /srv/${APP}
    compose: { service: api }
    smoke:
${smoke}
`,
  );
  return dir;
}

const HEALTH = `        - path: /health
          json: { status: ok }
          version-field: git_sha
          headers: { Content-Length: "^[0-9]+$" }
          max-latency: 2s
        - path: /ready
          body: "^ready"`;

function smoke(ws: string, inputs: Record<string, string> = {}, env: Record<string, string> = {}) {
  return runBundled("smoke-test", { cwd: ws, inputs: { environment: "e2e", ...inputs }, env });
}

beforeAll(async () => {
  tb = await ensureTestbed();
  h1 = tb.hosts[0]!;
  sshKey = readFileSync(tb.deployKeyPath, "utf8");
  knownHosts = readFileSync(tb.knownHostsPath, "utf8");
  [v1, slow] = await Promise.all([
    buildExampleImage({ repository: "t5-app", version: "1.0.0" }),
    buildExampleImage({ repository: "t5-app", version: "1.0.0-slow", mode: "slow" }),
  ]);
  await resetHost(h1, APP);
  await writeOperatorEnv(h1, `/srv/${APP}/.env`, `V1_IMAGE=${v1.ref}\nSLOW_IMAGE=${slow.ref}\n`);
  writeFileSync(join(h1.srvDir, APP, "compose.yml"), COMPOSE);
  await hostExec(h1, `cd /srv/${APP} && docker-compose -p ${APP} up -d api`, { user: "deploy" });
  await waitForHttp(`http://${h1.address}:${PUBLIC_PORT}/health`, { timeoutMs: 30_000 });
});

afterAll(async () => {
  if (h1) await resetHost(h1, APP);
});

describe("smoke-test (bundled) against the example app on h1", () => {
  test("passes against v1 with v1's sha (full or short), results and summary filled", async () => {
    const ws = workspace(`      retries: 2\n      interval: 500ms\n      checks:\n${HEALTH}`);
    const r = await smoke(ws, { "expect-version": v1.gitSha });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.outputs.passed).toBe("true");
    const results = JSON.parse(r.outputs.results!);
    expect(results).toMatchObject([
      {
        url: `http://${h1.address}:${PUBLIC_PORT}/health`,
        method: "GET",
        status: 200,
        attempts: 1,
        passed: true,
        version: v1.gitSha,
      },
      { url: `http://${h1.address}:${PUBLIC_PORT}/ready`, status: 200, attempts: 1, passed: true },
    ]);
    expect(results[0].latencyMs).toBeLessThan(2000);
    expect(r.summary).toContain("## deploy-kit: smoke passed on e2e");
    expect(r.summary).toContain(`| GET http://${h1.address}:${PUBLIC_PORT}/health | passed | 200 |`);
    const short = await smoke(ws, { "expect-version": v1.gitSha.slice(0, 7) });
    expect(short.exitCode, short.stdout).toBe(0);
  });

  test("fails against v1 with v2's sha, saying the old release is answering", async () => {
    const ws = workspace(`      retries: 2\n      interval: 200ms\n      checks:\n${HEALTH}`);
    const r = await smoke(ws, { "expect-version": V2_SHA });
    expect(r.exitCode).toBe(1);
    expect(r.outputs.passed).toBe("false");
    const [health, ready] = JSON.parse(r.outputs.results!);
    expect(health).toMatchObject({ status: 200, attempts: 3, passed: false, version: v1.gitSha });
    expect(health.reason).toBe(
      `version-field git_sha is "${v1.gitSha}", expected "${V2_SHA}": another release is still answering`,
    );
    expect(ready).toMatchObject({ passed: true });
    expect(r.stdout).toContain("::error::1 of 2 smoke check(s) failed:");
    expect(r.stdout).toContain(`attempt 3/3: 200 in`);
    expect(r.summary).toContain("| FAILED | 200 |");
  });

  test("retries through a slow start", async () => {
    const ws = workspace(
      `      base-url: http://${h1.address}:${SLOW_PORT}\n      retries: 20\n      interval: 500ms\n      timeout: 2s\n      checks:\n        - path: /health\n          json: { status: ok }\n          version-field: git_sha`,
    );
    await hostExec(h1, `cd /srv/${APP} && docker-compose -p ${APP} up -d slow`, { user: "deploy" });
    const started = Date.now();
    const r = await smoke(ws, { "expect-version": slow.gitSha });
    expect(r.exitCode, r.stdout).toBe(0);
    const [result] = JSON.parse(r.outputs.results!);
    expect(result.attempts).toBeGreaterThan(2);
    expect(r.stdout).toMatch(
      /attempt 1\/21: no response: (connection refused|connection reset|connection closed)/,
    );
    console.log(
      `[t5] slow start passed after ${result.attempts} attempts, ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });

  test("from: host reaches a port bound only on the host's loopback; a bearer token stays masked", async () => {
    // From the runner the loopback-only port is not reachable at all.
    const direct = await fetch(`http://${h1.address}:${LOOPBACK_PORT}/health`, {
      signal: AbortSignal.timeout(3000),
    }).then(
      () => "answered",
      (e: Error & { cause?: { code?: string } }) => e.cause?.code ?? e.message,
    );
    expect(direct).toBe("ECONNREFUSED");
    const token = "t5-bearer-token-d8a1c3f0";
    const ws = workspace(
      `      from: host\n      base-url: http://127.0.0.1:${LOOPBACK_PORT}\n      bearer-token-env: T5_SMOKE_TOKEN\n      retries: 1\n      interval: 500ms\n      checks:\n${HEALTH}`,
    );
    const r = await smoke(
      ws,
      { "expect-version": v1.gitSha, "ssh-key": sshKey, "known-hosts": knownHosts },
      { T5_SMOKE_TOKEN: token },
    );
    expect(r.exitCode, r.stdout).toBe(0);
    expect(JSON.parse(r.outputs.results!)).toMatchObject([
      { url: `http://127.0.0.1:${LOOPBACK_PORT}/health`, status: 200, passed: true, version: v1.gitSha },
      { passed: true },
    ]);
    expect(r.stdout).toContain(`Smoke GET http://127.0.0.1:${LOOPBACK_PORT}/health from h1`);
    expect(r.summary).toContain("Requests from the host h1");
    const shown = r.everything
      .split("\n")
      .filter((l) => !l.startsWith("::add-mask::"))
      .join("\n");
    expect(shown).not.toContain(token);

    const noKey = await smoke(ws, { "expect-version": v1.gitSha }, { T5_SMOKE_TOKEN: token });
    expect(noKey.exitCode).toBe(1);
    expect(noKey.stdout).toContain(
      "smoke.from is host, so the checks run on the server: ssh-key and known-hosts are required.",
    );
  });
});
