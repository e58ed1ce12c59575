import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets } from "../../src/core/secrets.js";
import { findJobDeployment, reportDeploymentStatus } from "../../src/github/deployments.js";

import { FakeGitHub, RUN, SHA, TOKEN } from "../support/fake-github.js";

const api = new FakeGitHub();
beforeAll(async () => {
  await new Promise<void>((r) => api.server.listen(0, "127.0.0.1", r));
});
afterAll(() => new Promise<void>((r) => api.server.close(() => r())));
beforeEach(() => {
  api.deployments = [];
  api.requests = [];
  api.refuseWith = undefined;
});
afterEach(() => forgetSecrets());

const target = () => ({ token: TOKEN, repository: "acme/shop", baseUrl: api.baseUrl });

describe("finding the deployment GitHub created for this job", () => {
  it("asks for the sha and environment, and picks the deployment whose statuses link to this run", async () => {
    api.add(7, "production", [["in_progress", "555"]]);
    api.add(8, "production", [["in_progress", "999"]]); // newer, another run (a re-run of another workflow)
    api.add(9, "staging", [["in_progress", "555"]]);
    const id = await findJobDeployment(
      { ...target(), environment: "production", sha: SHA, runId: "555" },
      new MemoryLog(),
    );
    expect(id).toBe(7);
    expect(api.requests[0]!.path).toBe(
      `/repos/acme/shop/deployments?environment=production&sha=${SHA}&per_page=10`,
    );
  });

  it("falls back to the newest deployment still in flight when no status names the run", async () => {
    api.add(3, "staging", [["success", "1"]]);
    api.add(4, "staging", [["queued", "2"]]);
    api.add(5, "staging", [["failure", "3"]]);
    const id = await findJobDeployment(
      { ...target(), environment: "staging", sha: SHA, runId: "42" },
      new MemoryLog(),
    );
    expect(id).toBe(4);
  });

  it("never takes a deploy-kit record for the job's deployment, even one still without a status", async () => {
    api.add(4, "staging", [["queued", "2"]]);
    api.deployments.push({
      id: 5,
      sha: SHA,
      ref: "x",
      environment: "staging",
      task: "deploy-kit:record",
      statuses: [],
    });
    const id = await findJobDeployment(
      { ...target(), environment: "staging", sha: SHA, runId: "42" },
      new MemoryLog(),
    );
    expect(id).toBe(4);
  });

  it("finds nothing when every deployment of the sha is finished and belongs to other runs", async () => {
    api.add(3, "staging", [["success", "1"]]);
    expect(
      await findJobDeployment(
        { ...target(), environment: "staging", sha: SHA, runId: "42" },
        new MemoryLog(),
      ),
    ).toBe(undefined);
  });
});

describe("reportDeploymentStatus", () => {
  it("sets in_progress then success on the job's deployment, with log and environment URLs, creating none", async () => {
    api.add(21, "production", [["in_progress", "777"]]);
    const log = new MemoryLog();
    const base = { ...target(), environment: "production", sha: SHA, runId: "777", logUrl: `${RUN}/777` };
    const id = await reportDeploymentStatus(
      { ...base, state: "in_progress", description: "deploying r-1" },
      log,
    );
    expect(id).toBe(21);
    const again = await reportDeploymentStatus(
      { ...base, state: "success", deploymentId: id, environmentUrl: "https://shop.example.com" },
      log,
    );
    expect(again).toBe(21);
    const posts = api.requests.filter((r) => r.method === "POST");
    expect(posts.map((p) => p.path)).toEqual([
      "/repos/acme/shop/deployments/21/statuses",
      "/repos/acme/shop/deployments/21/statuses",
    ]);
    expect(posts[0]!.body).toEqual({
      state: "in_progress",
      log_url: `${RUN}/777`,
      description: "deploying r-1",
      auto_inactive: false,
    });
    expect(posts[1]!.body).toEqual({
      state: "success",
      log_url: `${RUN}/777`,
      environment_url: "https://shop.example.com",
      auto_inactive: true,
    });
    // The second call reused the id: one listing in all, and no POST /deployments (no duplicate).
    expect(api.requests.filter((r) => r.method === "GET" && r.path.includes("deployments?"))).toHaveLength(1);
    expect(api.deployments).toHaveLength(1);
    expect(api.requests.every((r) => r.auth === `token ${TOKEN}`)).toBe(true);
    expect(log.text()).toContain("GitHub deployment 21 (production): success");
    expect(log.text()).not.toContain(TOKEN);
  });

  it("warns, and does not throw, when the job has no deployment", async () => {
    const log = new MemoryLog();
    const id = await reportDeploymentStatus(
      { ...target(), environment: "staging", sha: SHA, state: "failure" },
      log,
    );
    expect(id).toBeUndefined();
    expect(log.text()).toMatch(
      /warning: No GitHub deployment found for environment "staging".*Set `environment:` on the job/,
    );
  });

  it("turns a 403 into a warning that names the missing permission, without the token", async () => {
    api.refuseWith = 403;
    const log = new MemoryLog();
    const id = await reportDeploymentStatus(
      { ...target(), environment: "staging", sha: SHA, state: "success" },
      log,
    );
    expect(id).toBeUndefined();
    expect(log.text()).toContain('warning: Could not report deployment status "success" to GitHub: HTTP 403');
    expect(log.text()).toContain("permissions: deployments: write");
    expect(log.text()).not.toContain(TOKEN);
  });

  it("warns on a bad token without printing it", async () => {
    api.add(1, "staging", [["in_progress", "5"]]);
    const log = new MemoryLog();
    await reportDeploymentStatus(
      { ...target(), token: `${TOKEN}x`, environment: "staging", sha: SHA, runId: "5", state: "success" },
      log,
    );
    expect(log.text()).toContain("the token was refused (401)");
    expect(log.text()).not.toContain(TOKEN);
  });

  it("reads the repository, sha, run, log URL and API root from the runner's environment by default", async () => {
    api.add(60, "staging", [["in_progress", "31"]]);
    const runnerEnv = {
      GITHUB_REPOSITORY: "acme/shop",
      GITHUB_SHA: SHA,
      GITHUB_RUN_ID: "31",
      GITHUB_RUN_ATTEMPT: "2",
      GITHUB_SERVER_URL: "https://github.com",
      GITHUB_API_URL: api.baseUrl,
    };
    const saved = { ...process.env };
    Object.assign(process.env, runnerEnv);
    try {
      expect(
        await reportDeploymentStatus(
          { token: TOKEN, environment: "staging", state: "in_progress" },
          new MemoryLog(),
        ),
      ).toBe(60);
      expect(api.requests.find((r) => r.method === "POST")!.body?.log_url).toBe(`${RUN}/31/attempts/2`);
    } finally {
      for (const k of Object.keys(runnerEnv)) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });
});
