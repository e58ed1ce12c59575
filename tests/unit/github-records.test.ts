import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { DeployError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets } from "../../src/core/secrets.js";
import {
  compareCommits,
  environmentProtection,
  RECORD_TASK,
  readRecords,
  recordRelease,
} from "../../src/github/records.js";
import { choosePromotion, type ReleaseRecord } from "../../src/release/promotion.js";
import { FakeGitHub, TOKEN } from "../support/fake-github.js";

const api = new FakeGitHub();
beforeAll(() => api.listen());
afterAll(() => api.close());
beforeEach(() => api.reset());
afterEach(() => forgetSecrets());

const target = () => ({ token: TOKEN, repository: "acme/shop", baseUrl: api.baseUrl });
const D = (c: string) => `sha256:${c.repeat(64)}`;
const record = (c: string, outcome: ReleaseRecord["outcome"], minute: number): ReleaseRecord => ({
  environment: "staging",
  "release-id": `20260101-00${minute}000-${c.repeat(7)}`,
  "image-ref": `ghcr.io/acme/shop@${D(c)}`,
  digest: D(c),
  "git-sha": c.repeat(40),
  outcome,
  smoke: outcome === "passed" ? "passed" : "failed",
  time: `2026-01-01T00:0${minute}:00.000Z`,
  serving: `ghcr.io/acme/shop@${D(c)}`,
  hosts: { "staging-1": D(c) },
  "run-url": `https://github.com/acme/shop/actions/runs/${minute}`,
});

describe("records on the environment's GitHub Deployments", () => {
  test("a passed release: a deployment of its own with the record as payload, status success", async () => {
    const log = new MemoryLog();
    const id = await recordRelease(
      { ...target(), environmentUrl: "https://staging.example.com" },
      record("a", "passed", 1),
      log,
    );
    expect(id).toBe(100);
    const [create, status] = api.requests.filter((r) => r.method === "POST");
    expect(create!.path).toBe("/repos/acme/shop/deployments");
    expect(create!.body).toMatchObject({
      ref: "a".repeat(40),
      environment: "staging",
      task: RECORD_TASK,
      auto_merge: false,
      required_contexts: [],
      payload: { digest: D("a"), "git-sha": "a".repeat(40), outcome: "passed", smoke: "passed" },
    });
    expect(status!.path).toBe("/repos/acme/shop/deployments/100/statuses");
    expect(status!.body).toMatchObject({
      state: "success",
      environment_url: "https://staging.example.com",
      log_url: "https://github.com/acme/shop/actions/runs/1",
      auto_inactive: false,
    });
    expect(log.text()).toContain(`Recorded on GitHub (deployment 100, staging): passed ${D("a")}`);
  });

  test("inside a run the record hangs on the run's commit; the promoted commit stays in the payload", async () => {
    const saved = process.env.GITHUB_SHA;
    process.env.GITHUB_SHA = "9".repeat(40); // main's squash commit
    try {
      await recordRelease(target(), record("a", "passed", 1), new MemoryLog());
    } finally {
      if (saved === undefined) delete process.env.GITHUB_SHA;
      else process.env.GITHUB_SHA = saved;
    }
    expect(api.requests[0]!.body).toMatchObject({
      ref: "9".repeat(40),
      payload: { "git-sha": "a".repeat(40) },
    });
  });

  test("a rolled-back release is recorded too, with status failure", async () => {
    await recordRelease(
      target(),
      { ...record("b", "rolled-back", 2), reason: "smoke failed" },
      new MemoryLog(),
    );
    expect(api.requests.at(-1)!.body).toMatchObject({
      state: "failure",
      description: "rolled-back: smoke failed",
    });
  });

  test("read back oldest first, foreign deployments and payloads ignored, then promoted from", async () => {
    await recordRelease(target(), record("a", "passed", 1), new MemoryLog());
    await recordRelease(
      target(),
      { ...record("b", "rolled-back", 2), serving: record("a", "passed", 1)["image-ref"] },
      new MemoryLog(),
    );
    api.add(7, "staging", [["success", "9"]]); // the job's own deployment: task deploy, empty payload
    api.deployments.push({
      id: 8,
      sha: "c".repeat(40),
      ref: "x",
      environment: "staging",
      task: RECORD_TASK,
      payload: { hello: 1 },
      statuses: [],
    });
    const log = new MemoryLog();
    const records = await readRecords({ ...target(), environment: "staging" }, log);
    expect(records.map((r) => [r["release-id"], r.outcome, r.source])).toEqual([
      ["20260101-001000-aaaaaaa", "passed", "GitHub deployment 100"],
      ["20260101-002000-bbbbbbb", "rolled-back", "GitHub deployment 101"],
    ]);
    expect(api.requests.at(-1)!.path).toBe(
      `/repos/acme/shop/deployments?environment=staging&task=${encodeURIComponent(RECORD_TASK)}&per_page=100`,
    );
    expect(choosePromotion(records, { from: "staging" }).record.digest).toBe(D("a"));
    expect(() => choosePromotion(records, { from: "staging", select: "b".repeat(40) })).toThrow(
      /ROLLED-BACK.*\(GitHub deployment 101\)/,
    );
  });

  test("a record that cannot be written is a warning saying production will not promote it", async () => {
    api.refuseWith = 403;
    const log = new MemoryLog();
    expect(await recordRelease(target(), record("a", "passed", 1), log)).toBeUndefined();
    expect(log.text()).toContain(
      "Could not record release 20260101-001000-aaaaaaa (passed) on GitHub: HTTP 403",
    );
    expect(log.text()).toContain("Without this record the production pipeline will not promote it.");
    expect(log.text()).not.toContain(TOKEN);
  });

  test("records that cannot be read fail with the permission to add", async () => {
    api.refuseWith = 403;
    const err = await readRecords({ ...target(), environment: "staging" }, new MemoryLog()).catch((e) => e);
    expect(err).toBeInstanceOf(DeployError);
    expect(err.message).toContain("permissions: deployments: read");
  });
});

describe("the approval gate: does the Environment have required reviewers?", () => {
  test("reviewers (users and teams) and the wait timer are read", async () => {
    api.environments.set("production", {
      reviewers: [
        { type: "User", name: "octocat" },
        { type: "Team", name: "ops" },
      ],
      waitTimer: 5,
    });
    expect(await environmentProtection({ ...target(), environment: "production" }, new MemoryLog())).toEqual({
      exists: true,
      reviewers: ["octocat", "team ops"],
      waitTimerMinutes: 5,
    });
  });

  test("an environment with only a branch policy has no reviewers; a missing one does not exist", async () => {
    api.environments.set("production", {});
    expect(await environmentProtection({ ...target(), environment: "production" }, new MemoryLog())).toEqual({
      exists: true,
      reviewers: [],
    });
    expect(await environmentProtection({ ...target(), environment: "prod" }, new MemoryLog())).toEqual({
      exists: false,
      reviewers: [],
    });
  });

  test("a refused read says which permission the job needs", async () => {
    api.refuseWith = 403;
    const err = await environmentProtection(
      { ...target(), environment: "production" },
      new MemoryLog(),
    ).catch((e) => e);
    expect(err.message).toContain("permissions: actions: read");
  });
});

test("compare: the commits after base up to head, and the changed files with their patches", async () => {
  api.history = ["1", "2", "3", "4"].map((c) => ({
    sha: c.repeat(40),
    message: `change ${c}\n\nbody`,
    login: "dev",
  }));
  api.files = [{ filename: "compose.yml", status: "modified", patch: "@@ -1 +1 @@\n-a\n+b" }];
  const c = await compareCommits(
    { ...target(), base: "1".repeat(40), head: "3".repeat(40) },
    new MemoryLog(),
  );
  expect(c.commits).toEqual([
    { sha: "2".repeat(40), title: "change 2", author: "dev" },
    { sha: "3".repeat(40), title: "change 3", author: "dev" },
  ]);
  expect(c.total).toBe(2);
  expect(c.files[0]!.patch).toContain("+b");
});
