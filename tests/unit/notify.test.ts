import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets } from "../../src/core/secrets.js";
import { type DeployFacts, notify } from "../../src/github/notify.js";

const DIGEST = `sha256:${"ab12".repeat(16)}`;
const facts: DeployFacts = {
  outcome: "success",
  app: "shop",
  environment: "production",
  version: "v1.4.0",
  sha: "0123456789abcdef0123456789abcdef01234567",
  imageRef: `ghcr.io/acme/shop@${DIGEST}`,
  releaseId: "20261122-040000-01234567",
  actor: "octocat",
  runUrl: "https://github.com/acme/shop/actions/runs/77",
  url: "https://shop.example.com",
};

/** A webhook receiver on loopback: records every POST; `plan` scripts the status codes per path. */
const received: { path: string; body: Record<string, unknown> }[] = [];
let plan: Record<string, number[]> = {};
const server: Server = createServer(async (req, res) => {
  let text = "";
  for await (const c of req) text += c;
  received.push({ path: req.url ?? "", body: JSON.parse(text) });
  const status = plan[req.url ?? ""]?.shift() ?? 200;
  res.writeHead(status).end(status === 200 ? "ok" : "nope");
});
let base = "";
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  received.length = 0;
  plan = {};
});
afterEach(() => forgetSecrets());

// Real webhook URLs carry their credential in the path: these must never reach a log.
const SLACK = "/services/T0000/B0000/SlackSecretPathXYZ123";
const DISCORD = "/api/webhooks/123456/DiscordSecretTokenABC987";
const HOOK = "/hooks/generic-secret-7f3a9c";
const NOTIFY = {
  "slack-webhook-env": "SLACK_WEBHOOK_URL",
  "discord-webhook-env": "DISCORD_WEBHOOK_URL",
  "webhook-env": "DEPLOY_WEBHOOK_URL",
};
const env = () => ({
  SLACK_WEBHOOK_URL: `${base}${SLACK}`,
  DISCORD_WEBHOOK_URL: `${base}${DISCORD}`,
  DEPLOY_WEBHOOK_URL: `${base}${HOOK}`,
});

function expectNoSecrets(log: MemoryLog) {
  for (const s of [SLACK, DISCORD, HOOK, "SlackSecretPathXYZ123", "DiscordSecretTokenABC987", base])
    expect(log.text()).not.toContain(s);
}

describe("notify", () => {
  it("sends one message per channel the config names, with app, environment, version, digest, actor and run URL", async () => {
    const log = new MemoryLog();
    const result = await notify({ ...facts, notify: NOTIFY, env: env() }, log);
    expect(result.sent.sort()).toEqual(["discord", "slack", "webhook"]);
    expect(received).toHaveLength(3);

    const slack = received.find((r) => r.path === SLACK)!.body;
    expect(slack.text).toBe("shop deployed to production (v1.4.0)");
    const slackText = JSON.stringify(slack.blocks);
    for (const s of [
      "shop",
      "production",
      "v1.4.0",
      "sha256:ab12ab12ab12",
      "octocat",
      facts.runUrl!,
      facts.url!,
    ])
      expect(slackText).toContain(s);

    const discord = received.find((r) => r.path === DISCORD)!.body as {
      embeds: { title: string; fields: { name: string; value: string }[] }[];
      allowed_mentions: unknown;
    };
    expect(discord.allowed_mentions).toEqual({ parse: [] });
    expect(discord.embeds[0]!.title).toBe("shop deployed to production (v1.4.0)");
    expect(Object.fromEntries(discord.embeds[0]!.fields.map((f) => [f.name, f.value]))).toMatchObject({
      App: "shop",
      Environment: "production",
      Version: "v1.4.0",
      Digest: "sha256:ab12ab12ab12",
      Actor: "octocat",
      Run: facts.runUrl,
    });

    const hook = received.find((r) => r.path === HOOK)!.body;
    expect(hook).toMatchObject({
      event: "deploy",
      outcome: "success",
      app: "shop",
      environment: "production",
      version: "v1.4.0",
      digest: DIGEST,
      imageRef: facts.imageRef,
      actor: "octocat",
      runUrl: facts.runUrl,
      reason: null,
    });
    expectNoSecrets(log);
  });

  it.each([
    ["failure", "shop deploy FAILED to production (v1.4.0)"],
    ["rolled-back", "shop deploy failed and was ROLLED BACK to production (v1.4.0)"],
  ] as const)("says %s loudly, with the reason", async (outcome, title) => {
    const log = new MemoryLog();
    await notify(
      { ...facts, outcome, reason: "smoke /health: status 500 <html>", notify: NOTIFY, env: env() },
      log,
    );
    const slack = received.find((r) => r.path === SLACK)!.body;
    expect(slack.text).toBe(title);
    // Slack control characters in the reason are escaped, not interpreted.
    expect(JSON.stringify(slack.blocks)).toContain("status 500 &lt;html&gt;");
    expect(received.find((r) => r.path === HOOK)!.body).toMatchObject({
      outcome,
      reason: "smoke /health: status 500 <html>",
    });
  });

  it.each([
    ["success", "shop ROLLED BACK on production to 20261121-090000-aaaa", ":rewind:", 0xbf8700],
    ["failure", "shop rollback FAILED on production", ":x:", 0xd1242f],
  ] as const)(
    "a rollback (%s) has its own headline, and names the release put back",
    async (outcome, title, icon, color) => {
      await notify(
        { ...facts, event: "rollback", outcome, target: "20261121-090000-aaaa", notify: NOTIFY, env: env() },
        new MemoryLog(),
      );
      const slack = received.find((r) => r.path === SLACK)!.body;
      expect(slack.text).toBe(title);
      expect(JSON.stringify(slack.blocks)).toContain(icon);
      expect(JSON.stringify(slack.blocks)).toContain("*Back to:* 20261121-090000-aaaa");
      const discord = received.find((r) => r.path === DISCORD)!.body as { embeds: { color: number }[] };
      expect(discord.embeds[0]!.color).toBe(color);
      expect(received.find((r) => r.path === HOOK)!.body).toMatchObject({
        event: "rollback",
        outcome,
        target: "20261121-090000-aaaa",
      });
    },
  );

  it("takes the actor and run URL from the runner when the caller gives none", async () => {
    const runnerEnv = {
      GITHUB_ACTOR: "hubot",
      GITHUB_REPOSITORY: "acme/shop",
      GITHUB_RUN_ID: "91",
      GITHUB_SERVER_URL: "https://github.com",
    };
    const saved = { ...process.env };
    Object.assign(process.env, runnerEnv);
    try {
      await notify(
        {
          ...facts,
          actor: undefined,
          runUrl: undefined,
          notify: { "webhook-env": "DEPLOY_WEBHOOK_URL" },
          env: env(),
        },
        new MemoryLog(),
      );
    } finally {
      for (const k of Object.keys(runnerEnv)) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
    expect(received[0]!.body).toMatchObject({
      actor: "hubot",
      runUrl: "https://github.com/acme/shop/actions/runs/91",
    });
  });

  it("sends nothing when the config has no notify section", async () => {
    const log = new MemoryLog();
    expect(await notify({ ...facts, notify: undefined, env: env() }, log)).toEqual({ sent: [], failed: [] });
    expect(received).toHaveLength(0);
    expect(log.lines).toEqual([]);
  });

  it("warns (never throws) when a named env var is empty, and still sends the others", async () => {
    const log = new MemoryLog();
    const result = await notify(
      { ...facts, notify: NOTIFY, env: { ...env(), DISCORD_WEBHOOK_URL: "" } },
      log,
    );
    expect(result).toEqual({ sent: expect.arrayContaining(["slack", "webhook"]), failed: ["discord"] });
    expect(log.text()).toContain(
      "warning: notify.discord-webhook-env names DISCORD_WEBHOOK_URL, which is not set",
    );
  });

  it("retries a 5xx once, then succeeds", async () => {
    plan[SLACK] = [503];
    const log = new MemoryLog();
    const result = await notify(
      { ...facts, notify: { "slack-webhook-env": "SLACK_WEBHOOK_URL" }, env: env(), retryDelayMs: 10 },
      log,
    );
    expect(result.sent).toEqual(["slack"]);
    expect(received.filter((r) => r.path === SLACK)).toHaveLength(2);
  });

  it("warns on a 4xx without retrying and without printing the URL", async () => {
    plan[DISCORD] = [404];
    const log = new MemoryLog();
    const result = await notify({ ...facts, notify: NOTIFY, env: env(), retryDelayMs: 10 }, log);
    expect(result.failed).toEqual(["discord"]);
    expect(received.filter((r) => r.path === DISCORD)).toHaveLength(1);
    expect(log.text()).toContain(
      "warning: Discord notification (DISCORD_WEBHOOK_URL) failed: HTTP 404. The deploy result is unchanged.",
    );
    expectNoSecrets(log);
  });

  it("warns when the receiver is unreachable, without the URL, within the timeout", async () => {
    // A port that was just free: connection refused on loopback.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const log = new MemoryLog();
    const url = `http://127.0.0.1:${port}/hooks/unreachable-secret-42`;
    const start = Date.now();
    const result = await notify(
      { ...facts, notify: { "webhook-env": "HOOK" }, env: { HOOK: url }, retryDelayMs: 10, timeoutMs: 2000 },
      log,
    );
    expect(Date.now() - start).toBeLessThan(3000);
    expect(result.failed).toEqual(["webhook"]);
    expect(log.text()).toContain("warning: webhook notification (HOOK) failed: ECONNREFUSED (after a retry)");
    expect(log.text()).not.toContain("unreachable-secret-42");
    expect(log.text()).not.toContain(String(port));
  });

  it("times out a receiver that never answers", async () => {
    const hang = createServer(() => {});
    await new Promise<void>((r) => hang.listen(0, "127.0.0.1", r));
    const log = new MemoryLog();
    const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}/slow-secret`;
    const result = await notify(
      { ...facts, notify: { "webhook-env": "HOOK" }, env: { HOOK: url }, retryDelayMs: 10, timeoutMs: 200 },
      log,
    );
    hang.closeAllConnections();
    await new Promise<void>((r) => hang.close(() => r()));
    expect(result.failed).toEqual(["webhook"]);
    expect(log.text()).toContain("failed: timed out (after a retry)");
    expect(log.text()).not.toContain("slow-secret");
  });
});
