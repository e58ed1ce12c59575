// Promotion end to end, with the bundled actions run as the runner runs them against the testbed
// and a loopback server speaking GitHub's Deployments and Environments API: staging builds over a
// forged sha-<commit> tag, deploys, reads back each host's digest and records its verdict on
// GitHub; production promotes only what passed (by default, by commit, refusing a rolled-back
// release, min-soak, a squash-merged main) behind an Environment that has required reviewers, to
// a production host given through an environment variable.
// Names: t15-*, port 19151.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RECORD_TASK } from "../../src/github/records.js";
import type { ReleaseRecord } from "../../src/release/promotion.js";
import { FakeGitHub, TOKEN } from "../support/fake-github.js";
import { runBundled, visible } from "../support/runner.js";
import {
  EXAMPLE_APP_DIR,
  ensureTestbed,
  hostLedger,
  REPO_ROOT,
  remoteDocker,
  resetHost,
  run,
  type Testbed,
  type TestbedHost,
  writeOperatorEnv,
} from "../support/testbed.js";

const APP = "t15-promo";
const PORT = 19151;
const C1 = "15".repeat(20);
const C2 = "25".repeat(20);

let tb: Testbed;
let staging: TestbedHost;
let production: TestbedHost;
let sshKey: string;
let knownHosts: string;
const api = new FakeGitHub();

const COMPOSE = `services:
  api:
    image: \${API_IMAGE:-unset}
    init: true
    ports:
      - "\${T15_PORT}:8080"
    env_file: .env
`;

function workspace(mode: "ok" | "unhealthy", watch = ""): string {
  const ws = mkdtempSync(join(tmpdir(), "t15-ws-"));
  cpSync(EXAMPLE_APP_DIR, join(ws, "app"), { recursive: true });
  writeFileSync(join(ws, "compose.yml"), COMPOSE);
  // Production's host comes from an environment variable, as a VPS_HOST secret would.
  const env = (h: TestbedHost) => `    url: http://${h.address}:${PORT}
    hosts: [${h === production ? `{ host-env: T15_PROD_HOST, user: deploy, alias: ${h.alias} }` : `{ host: ${h.address}, user: deploy, alias: ${h.alias} }`}]
    path: /srv/${APP}
    compose: { file: compose.yml, service: api }
    env-file: { required-keys: [T15_PORT] }
    health: { timeout: 20s }
    smoke:
      retries: 4
      interval: 1s
      checks:
        - { path: /health, json: { status: ok }, version-field: git_sha }${watch}`;
  writeFileSync(
    join(ws, "deploy-kit.yml"),
    `version: 1
app: ${APP}
image:
  name: ${tb.registry.auth}/t15-app
  context: app
  dockerfile: app/Dockerfile
  build-args: { APP_MODE: ${mode} }
environments:
  staging:
${env(staging)}
  production:
${env(production)}
`,
  );
  return ws;
}

const github = (sha = C1) => ({
  GITHUB_REPOSITORY: "acme/shop",
  GITHUB_API_URL: api.baseUrl,
  GITHUB_SHA: sha,
  GITHUB_RUN_ID: "77",
  GITHUB_SERVER_URL: "https://github.com",
});

async function build(ws: string, gitSha: string, reuseExisting: boolean) {
  const r = await runBundled("build-image", {
    cwd: ws,
    inputs: {
      "git-sha": gitSha,
      "reuse-existing": String(reuseExisting),
      "registry-username": tb.registry.username,
      "registry-password": tb.registry.password,
      "insecure-registry": "true",
    },
    env: { DOCKER_HOST: tb.localDockerHost, DOCKER_CONFIG: mkdtempSync(join(tmpdir(), "t15-docker-")) },
  });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  return r;
}

function deploy(
  ws: string,
  environment: string,
  imageRef: string,
  gitSha: string,
  runSha = gitSha,
  onLine?: (line: string) => void,
) {
  return runBundled("deploy", {
    onLine,
    cwd: ws,
    inputs: {
      environment,
      "image-ref": imageRef,
      "git-sha": gitSha,
      "ssh-key": sshKey,
      "known-hosts": knownHosts,
      "registry-username": tb.registry.username,
      "registry-password": tb.registry.password,
      "github-token": TOKEN,
    },
    env: { ...github(runSha), T15_PROD_HOST: production.address },
  });
}

function promote(ws: string, inputs: Record<string, string> = {}, runSha = C1) {
  return runBundled("promote", {
    cwd: ws,
    inputs: { "github-token": TOKEN, ...inputs },
    env: github(runSha),
    timeoutMs: 60_000,
  });
}

/** The records GitHub holds for an environment, oldest first. */
const records = (environment: string) =>
  api.deployments
    .filter((d) => d.environment === environment && d.task === RECORD_TASK)
    .map((d) => ({ ...(d.payload as ReleaseRecord), state: d.statuses.at(-1)?.state }));

const ledger = (h: TestbedHost) => hostLedger(h, APP);

async function health(h: TestbedHost): Promise<{ git_sha: string }> {
  const res = await fetch(`http://${h.address}:${PORT}/health`, { signal: AbortSignal.timeout(3000) });
  return (await res.json()) as { git_sha: string };
}

beforeAll(async () => {
  tb = await ensureTestbed();
  [staging, production] = [tb.hosts[0]!, tb.hosts[1]!];
  sshKey = readFileSync(tb.deployKeyPath, "utf8");
  knownHosts = readFileSync(tb.knownHostsPath, "utf8");
  await api.listen();
  api.reset();
  api.environments.set("production", { reviewers: [{ type: "User", name: "octocat" }] });
  for (const h of [staging, production]) {
    await resetHost(h, APP);
    await writeOperatorEnv(h, `/srv/${APP}/.env`, `T15_PORT=${PORT}\n`);
  }
});
afterAll(() => api.close());

describe("promotion: production runs only what passed staging", () => {
  let forged = "";
  let passed = "";

  it("a sha-<commit> tag pushed before staging is built over, never deployed", async () => {
    // Someone with registry access pushes their own image under the tag staging would use.
    forged = (await build(workspace("unhealthy"), C1, true)).outputs.digest!;
    const built = await build(workspace("ok"), C1, false);
    expect(built.outputs.skipped).toBe("false");
    passed = built.outputs["image-ref"]!;
    expect(built.outputs.digest).not.toBe(forged);
  });

  it("staging passes: each host's running digest is read back, the verdict recorded on GitHub and in the ledger", async () => {
    const r = await deploy(workspace("ok"), "staging", passed, C1);
    expect(r.exitCode, r.stdout).toBe(0);
    const digest = passed.split("@")[1]!;
    expect(records("staging")).toEqual([
      expect.objectContaining({
        "release-id": r.outputs["release-id"],
        digest,
        "git-sha": C1,
        outcome: "passed",
        smoke: "passed",
        hosts: { [staging.alias]: digest },
        state: "success",
      }),
    ]);
    expect(ledger(staging).at(-1)).toMatchObject({
      id: r.outputs["release-id"],
      kind: "verify",
      status: "succeeded",
      smoke: "passed",
      digests: { [staging.alias]: digest },
    });
    expect(r.summary).toContain("It can be promoted.");
    expect(JSON.stringify(records("staging"))).not.toContain(forged);
  });

  it("a release that fails staging's smoke test is rolled back and recorded; promoting it is refused by name", async () => {
    const ws = workspace("ok");
    const v2 = (await build(ws, C2, false)).outputs["image-ref"]!;
    // Deployed as if it were another commit: the version check fails, the smoke test with it.
    const r = await deploy(ws, "staging", v2, "35".repeat(20));
    expect(r.exitCode).toBe(1);
    expect(r.outputs["rolled-back"]).toBe("true");
    expect(records("staging").at(-1)).toMatchObject({
      outcome: "rolled-back",
      digest: v2.split("@")[1],
      serving: passed,
      state: "failure",
    });
    const refused = await promote(ws, { release: v2 });
    expect(refused.exitCode).toBe(1);
    expect(refused.stdout).toContain(`Refusing to promote digest ${v2.split("@")[1]}`);
    expect(refused.stdout).toContain("ROLLED-BACK");
  });

  it("a forged digest is refused; min-soak refuses a digest that passed minutes ago", async () => {
    const ws = workspace("ok");
    const f = await promote(ws, { release: forged });
    expect(f.exitCode).toBe(1);
    expect(f.stdout).toContain(`${forged} never ran on staging`);
    const young = await promote(ws, { "min-soak": "24h" });
    expect(young.exitCode).toBe(1);
    expect(young.stdout).toMatch(/min-soak asks for 1d 0h\. It is eligible from /);
  });

  it("a squash-merged main promotes the digest staging passed, and production answers with its commit", async () => {
    const ws = workspace("ok");
    const squash = "45".repeat(20); // main's commit: staging never saw it
    const plan = await promote(ws, {}, squash);
    expect(plan.exitCode, plan.stdout).toBe(0);
    expect(plan.outputs["image-ref"]).toBe(passed);
    expect(plan.outputs["git-sha"]).toBe(C1);
    expect(plan.summary).toContain("| approved by | octocat |");
    const r = await deploy(ws, "production", plan.outputs["image-ref"]!, plan.outputs["git-sha"]!, squash);
    expect(r.exitCode, r.stdout).toBe(0);
    expect((await health(production)).git_sha).toBe(C1);
    // The host came from T15_PROD_HOST: masked in the log and the summary, which name it by alias.
    // (The `url` output keeps the environment URL as deploy-kit.yml writes it, here with the IP.)
    expect(visible([r.stdout, r.stderr, r.summary].join("\n"))).not.toContain(production.address);
    expect(r.summary).toContain(production.alias);
    expect(records("production").at(-1)).toMatchObject({ outcome: "passed", digest: passed.split("@")[1] });
  });

  it("a release that starts failing during the watch window is rolled back automatically", async () => {
    const watch = "\n      watch: { duration: 40s, interval: 1s, max-failure-ratio: 0.2, min-probes: 3 }";
    const ws = workspace("ok", watch);
    const C3 = "55".repeat(20);
    const v3 = (await build(ws, C3, false)).outputs["image-ref"]!;
    let stopped: Promise<unknown> | undefined;
    const r = await deploy(ws, "staging", v3, C3, C3, (line) => {
      // The release passed its smoke test and is being watched: now it breaks.
      if (!stopped && line.includes("watch round 2")) {
        stopped = remoteDocker(staging, [
          "ps",
          "-q",
          "--filter",
          `label=com.docker.compose.project=${APP}`,
        ]).then((ps) => remoteDocker(staging, ["kill", ...ps.stdout.trim().split("\n")]));
      }
    });
    await stopped;
    expect(r.exitCode, r.stdout).toBe(1);
    expect(r.stdout).toContain("WATCH WINDOW FAILED");
    expect(r.outputs["rolled-back"]).toBe("true");
    expect(r.summary).toMatch(/\| runner \| \d+ \| \d+ \| .* \| \*\*\d+ of \d+ probes failed/);
    expect((await health(staging)).git_sha).toBe(C1);
    expect(records("staging").at(-1)).toMatchObject({
      outcome: "rolled-back",
      smoke: "passed",
      watch: "failed",
    });
    expect(ledger(staging).find((e) => e.kind === "verify" && e["git-sha"] === C3)).toMatchObject({
      status: "failed",
      watch: "failed",
    });
  });

  it("deploy-kit plan/promote --from staging: the same choice from the staging host's ledger", async () => {
    const ws = workspace("ok");
    const cli = (...args: string[]) =>
      run(process.execPath, [join(REPO_ROOT, "dist/cli/index.js"), ...args], {
        cwd: ws,
        check: false,
        timeoutMs: 180_000,
        env: {
          ...process.env,
          DEPLOY_KIT_SSH_KEY: tb.deployKeyPath,
          DEPLOY_KIT_KNOWN_HOSTS: tb.knownHostsPath,
          T15_PROD_HOST: production.address,
          HOME: ws,
        },
      });
    const plan = await cli("plan", "--env", "production", "--from", "staging", "--skip-migration-plan");
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`image    ${passed}`);
    expect(plan.stdout).toMatch(
      /passed on staging \(what staging serves now\): release \S+ of commit 151515151515/,
    );
    // The release whose smoke test failed on staging (deployed as commit 3535…), named by its
    // commit: refused from the ledger, naming it.
    const refused = await cli("promote", "--from", "staging", "--env", "production", "--release", "3535353");
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/Refusing to promote commit 3535353: .*commit 353535353535.*ROLLED-BACK/);
    expect(refused.stderr).toContain(`(${staging.alias}'s ledger)`);
    const promoted = await cli("promote", "--from", "staging", "--env", "production", "--json");
    expect(promoted.code, promoted.stderr).toBe(0);
    expect(JSON.parse(promoted.stdout)).toMatchObject({ ok: true, imageRef: passed });
    expect(promoted.stdout + promoted.stderr).not.toContain(production.address);
  });

  it("production without required reviewers: the plan fails before anything else", async () => {
    api.environments.set("production", {});
    const r = await promote(workspace("ok"));
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain('GitHub Environment "production" has no required reviewers');
  });
});
