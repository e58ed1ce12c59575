import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { RECORD_TASK } from "../../src/github/records.js";
import type { ReleaseRecord } from "../../src/release/promotion.js";
import { FakeGitHub, TOKEN } from "../support/fake-github.js";
import { runBundled } from "../support/runner.js";

// The bundled promote action, run as the runner runs it, against a loopback GitHub.
const api = new FakeGitHub();
beforeAll(() => api.listen());
afterAll(() => api.close());

const workspace = mkdtempSync(join(tmpdir(), "dk-promote-"));
writeFileSync(
  join(workspace, "deploy-kit.yml"),
  `version: 1
app: shop
image: { name: ghcr.io/acme/shop }
environments:
  staging:
    hosts: [deploy@203.0.113.10]
    path: /srv/shop
    compose: { file: compose.yml, service: api }
  production:
    hosts: [deploy@198.51.100.20]
    path: /srv/shop
    compose: { file: deploy/compose.yml, service: api }
`,
);

const D = (c: string) => `sha256:${c.repeat(64)}`;
const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();
let nextId = 500;
function record(
  environment: string,
  c: string,
  outcome: ReleaseRecord["outcome"],
  at: string,
  over: Partial<ReleaseRecord> = {},
) {
  const r: ReleaseRecord = {
    environment,
    "release-id": `20260101-000000-${c.repeat(7)}`,
    "image-ref": `ghcr.io/acme/shop@${D(c)}`,
    digest: D(c),
    "git-sha": c.repeat(40),
    outcome,
    smoke: outcome === "passed" ? "passed" : "failed",
    time: at,
    serving: `ghcr.io/acme/shop@${D(c)}`,
    ...over,
  };
  api.deployments.push({
    id: nextId++,
    sha: c.repeat(40),
    ref: "main",
    environment,
    task: RECORD_TASK,
    payload: r,
    statuses: [],
  });
}

const promote = (inputs: Record<string, string> = {}, sha = "f".repeat(40)) =>
  runBundled("promote", {
    cwd: workspace,
    inputs: { config: "deploy-kit.yml", "github-token": TOKEN, ...inputs },
    env: { GITHUB_REPOSITORY: "acme/shop", GITHUB_API_URL: api.baseUrl, GITHUB_SHA: sha },
    timeoutMs: 30_000,
  });

beforeEach(() => {
  api.reset();
  api.environments.set("production", { reviewers: [{ type: "User", name: "octocat" }] });
});

describe("promote (bundled): production runs only what passed staging", () => {
  test("staging passed: that digest, and the reviewer's plan in the job summary", async () => {
    api.history = ["1", "2", "a"].map((c) => ({ sha: c.repeat(40), message: `commit ${c}`, login: "dev" }));
    api.files = [
      {
        filename: "deploy/compose.yml",
        status: "modified",
        patch: "@@ -3 +3 @@\n-    image: x\n+    image: y",
      },
      {
        filename: "deploy-kit.yml",
        status: "modified",
        patch: "+    env-file: { required-keys: [NEW_KEY] }",
      },
      { filename: "src/app.py", status: "modified", patch: "+print()" },
    ];
    record("production", "1", "passed", minutesAgo(600));
    record("staging", "a", "passed", minutesAgo(30), { hosts: { "staging-1": D("a") } });
    const r = await promote();
    expect(r.stdout).not.toContain("::error::");
    expect(r.exitCode).toBe(0);
    expect(r.outputs).toMatchObject({
      "image-ref": `ghcr.io/acme/shop@${D("a")}`,
      digest: D("a"),
      "git-sha": "a".repeat(40),
      "release-id": "20260101-000000-aaaaaaa",
    });
    expect(r.summary).toContain(`| digest | \`${D("a")}\` |`);
    expect(r.summary).toContain("| chosen by | what staging serves now |");
    expect(r.summary).toMatch(/\| soaked \| 30m \|/);
    expect(r.summary).toContain("| approved by | octocat |");
    expect(r.summary).toContain(`| running on staging-1 | \`${D("a")}\` |`);
    expect(r.summary).toContain("2 commit(s)");
    expect(r.summary).toContain("| 222222222222 | commit 2 | dev |");
    expect(r.summary).toContain("+    image: y");
    expect(r.summary).toContain("required-keys: [NEW_KEY]");
    expect(r.summary).not.toContain("+print()");
    // Only the runner's own ::add-mask:: line names the token.
    const readable = r.everything.split("\n").filter((l) => !l.startsWith("::add-mask::"));
    expect(readable.join("\n")).not.toContain(TOKEN);
    expect(r.stdout).toContain(`::add-mask::${TOKEN}`);
  });

  test("staging's release failed and stayed: refused, naming the failed release", async () => {
    record("staging", "a", "passed", minutesAgo(60));
    record("staging", "b", "failed", minutesAgo(5), { reason: "1 of 1 smoke check(s) failed" });
    const r = await promote();
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain("Refusing to promote what staging serves now");
    expect(r.stdout).toContain("release 20260101-000000-bbbbbbb");
    expect(r.stdout).toContain("FAILED");
    expect(r.outputs["image-ref"]).toBeUndefined();
  });

  test("staging rolled back: the commit of the rolled-back release is refused; by default the digest serving again", async () => {
    record("staging", "a", "passed", minutesAgo(60));
    record("staging", "b", "rolled-back", minutesAgo(5), { serving: `ghcr.io/acme/shop@${D("a")}` });
    const refused = await promote({ release: "b".repeat(40) });
    expect(refused.exitCode).toBe(1);
    expect(refused.stdout).toMatch(/Refusing to promote commit b{40}: .*ROLLED-BACK/);
    const ok = await promote();
    expect(ok.outputs.digest).toBe(D("a"));
  });

  test("a digest pushed to the registry that never ran on staging is refused", async () => {
    record("staging", "a", "passed", minutesAgo(60));
    const r = await promote({ release: `ghcr.io/acme/shop@${D("e")}` });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain(`${D("e")} never ran on staging: no record names it.`);
  });

  test("a squash-merged commit on main promotes the digest staging passed", async () => {
    record("staging", "a", "passed", minutesAgo(60));
    const r = await promote({}, "9".repeat(40)); // main's squash commit: a SHA staging never saw
    expect(r.exitCode).toBe(0);
    expect(r.outputs.digest).toBe(D("a"));
  });

  test("no required reviewers: fails before anything else, explaining the plan limitation; opt-out goes on", async () => {
    api.environments.set("production", {});
    record("staging", "a", "passed", minutesAgo(60));
    const r = await promote();
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain('GitHub Environment "production" has no required reviewers');
    expect(r.stdout).toContain("only with GitHub Enterprise");
    expect(r.stdout).toContain("unsafe-deploy-without-approval: true");
    // The records were never read: the refusal came first.
    expect(api.requests.some((q) => q.path.includes("/deployments"))).toBe(false);
    const unsafe = await promote({ "unsafe-deploy-without-approval": "true" });
    expect(unsafe.exitCode).toBe(0);
    expect(unsafe.stdout).toContain("::warning::");
    expect(unsafe.summary).toContain("**nobody: unsafe-deploy-without-approval is true**");
  });

  test("min-soak: refuses a digest that passed 5 minutes ago, accepts one that passed 25 hours ago", async () => {
    record("staging", "a", "passed", minutesAgo(5));
    const young = await promote({ "min-soak": "24h" });
    expect(young.exitCode).toBe(1);
    expect(young.stdout).toMatch(
      /passed on staging at .*, 5m ago; min-soak asks for 1d 0h\. It is eligible from 20/,
    );
    api.reset();
    api.environments.set("production", { reviewers: [{ type: "Team", name: "ops" }] });
    record("staging", "a", "passed", minutesAgo(25 * 60));
    const old = await promote({ "min-soak": "24h" });
    expect(old.exitCode).toBe(0);
    expect(old.summary).toContain("(min-soak 1d 0h)");
  });

  test("a min-soak that is not a duration is refused as an input error", async () => {
    const r = await promote({ "min-soak": "a day" });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain("input min-soak");
  });
});

describe("approval-gate (bundled): the rollback workflow's check", () => {
  const gate = (inputs: Record<string, string>) =>
    runBundled("approval-gate", {
      cwd: workspace,
      inputs: { "github-token": TOKEN, ...inputs },
      env: { GITHUB_REPOSITORY: "acme/shop", GITHUB_API_URL: api.baseUrl },
      timeoutMs: 30_000,
    });

  test("reviewers: passes and names them", async () => {
    api.environments.set("production", {
      reviewers: [
        { type: "User", name: "octocat" },
        { type: "Team", name: "ops" },
      ],
    });
    const r = await gate({ environment: "production" });
    expect(r.exitCode).toBe(0);
    expect(r.outputs.reviewers).toBe("octocat, team ops");
  });

  test("no such Environment: fails closed; the opt-out passes with a warning", async () => {
    const r = await gate({ environment: "staging" });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain('There is no GitHub Environment "staging"');
    expect(r.stdout).toContain("stopped before any secret was used");
    const unsafe = await gate({ environment: "staging", "unsafe-deploy-without-approval": "true" });
    expect(unsafe.exitCode).toBe(0);
    expect(unsafe.stdout).toMatch(/::warning::.*going on because unsafe-deploy-without-approval is true/);
    expect(unsafe.outputs.reviewers).toBe("");
  });
});
