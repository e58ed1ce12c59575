import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import type { SmokeCheck } from "../../src/config/schema.js";
import { ConfigError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets, redact } from "../../src/core/secrets.js";
import { evaluate, jsonSubset, lookup, sameVersion } from "../../src/smoke/match.js";
import { runSmokeTests, type SmokeOptions, smokeOptions } from "../../src/smoke/run.js";

const V1 = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const V2 = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

function check(c: Partial<SmokeCheck> & { path: string }): SmokeCheck {
  return { method: "GET", status: 200, ...c } as SmokeCheck;
}

describe("evaluate", () => {
  const ok = {
    status: 200,
    headers: { "content-type": "application/json; charset=utf-8" },
    body: JSON.stringify({ status: "ok", git_sha: V1.slice(0, 7), db: { ok: true, pool: [1, 2] }, "a.b": 1 }),
    latencyMs: 12,
  };
  it.each([
    ["status", check({ path: "/", status: 201 }), "status 200, expected 201"],
    ["body regex", check({ path: "/", body: "ready" }), 'body does not match /ready/ (body starts: "{'],
    ["json value", check({ path: "/", json: { status: "down" } }), 'json status is "ok", expected "down"'],
    ["json dotted", check({ path: "/", json: { "db.ok": false } }), "json db.ok is true, expected false"],
    ["json nested", check({ path: "/", json: { db: { pool: [1, 3] } } }), "json db.pool.1 is 2, expected 3"],
    ["json missing", check({ path: "/", json: { "db.replica": true } }), "json db.replica is missing"],
    ["header", check({ path: "/", headers: { "Content-Type": "^text/html" } }), "header Content-Type is"],
    ["header missing", check({ path: "/", headers: { "X-Release": "." } }), "header X-Release is missing"],
    [
      "version",
      check({ path: "/", "version-field": "git_sha" }),
      `version-field git_sha is "1111111", expected "${V2}": another release is still answering`,
    ],
    ["latency", check({ path: "/", "max-latency": 5 }), "latency 12 ms > max-latency 5 ms"],
  ])("fails on %s", (_name, c, reason) => {
    const reasons = evaluate(c, ok, V2);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain(reason);
  });

  it("passes a response that meets every check kind at once", () => {
    const c = check({
      path: "/",
      body: '"status":\\s*"ok"',
      json: { status: "ok", "db.ok": true, db: { pool: [1, 2] }, "a.b": 1 },
      headers: { "content-type": "json" },
      "version-field": "git_sha",
      "max-latency": 800,
    });
    expect(evaluate(c, ok, V1)).toEqual([]);
  });

  it("says the body is not JSON instead of crashing", () => {
    const reasons = evaluate(check({ path: "/", json: { a: 1 } }), { ...ok, body: "<html>" }, V1);
    expect(reasons).toEqual(['body is not JSON (starts: "<html>")']);
  });

  it.each([
    [V1, V1, true],
    [V1.slice(0, 7), V1, true],
    [V1, V1.slice(0, 12), true],
    [V1.slice(0, 6), V1, false],
    [V2.slice(0, 7), V1, false],
    ["v1.2.3", "v1.2.3", true],
    ["v1.2", "v1.2.3", false],
  ])("sameVersion(%s, %s) = %s", (a, e, want) => {
    expect(sameVersion(a, e)).toBe(want);
  });

  it("looks up dotted paths, literal dotted keys and list indexes", () => {
    expect(lookup({ a: { b: [{ c: 3 }] } }, "a.b.0.c")).toEqual({ found: true, value: 3 });
    expect(lookup({ "a.b": 1, a: { b: 2 } }, "a.b")).toEqual({ found: true, value: 1 });
    expect(lookup({ a: null }, "a.b")).toEqual({ found: false });
    expect(jsonSubset({ a: null }, { a: null })).toEqual([]);
  });
});

/** A local server whose behaviour each test sets; records the requests it saw. */
let server: Server;
let base: string;
interface Reply {
  status?: number;
  body?: string;
  headers?: Record<string, string>;
  delayMs?: number;
}
let handler: (path: string, hits: number, headers: Record<string, string | string[] | undefined>) => Reply;
const hits = new Map<string, number>();
const seenAuth: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? "/";
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    if (req.headers.authorization) seenAuth.push(req.headers.authorization);
    const r = handler(path, n, req.headers);
    setTimeout(() => {
      res.writeHead(r.status ?? 200, r.headers ?? { "content-type": "application/json" });
      res.end(r.body ?? "");
    }, r.delayMs ?? 0);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function opts(checks: SmokeCheck[], o: Partial<SmokeOptions> = {}): SmokeOptions {
  hits.clear();
  return { checks, baseUrl: base, retries: 3, intervalMs: 10, timeoutMs: 1000, ...o };
}

describe("runSmokeTests against a local server", () => {
  it("passes v1 with v1's sha and fails v1 with v2's sha, with the reason", async () => {
    handler = () => ({ body: JSON.stringify({ status: "ok", git_sha: V1 }) });
    const c = check({ path: "/health", json: { status: "ok" }, "version-field": "git_sha" });
    const good = await runSmokeTests(opts([c], { expectVersion: V1 }), new MemoryLog());
    expect(good.passed).toBe(true);
    expect(good.results[0]).toMatchObject({ url: `${base}/health`, status: 200, attempts: 1, version: V1 });

    const log = new MemoryLog();
    const bad = await runSmokeTests(opts([c], { expectVersion: V2, retries: 2 }), log);
    expect(bad.passed).toBe(false);
    expect(bad.results[0]).toMatchObject({ status: 200, attempts: 3, passed: false, version: V1 });
    expect(bad.results[0]!.reason).toContain(`version-field git_sha is "${V1}", expected "${V2}"`);
    expect(log.text()).toContain("attempt 3/3: 200 in");
  });

  it("retries through a slow start: refused, then 503, then healthy", async () => {
    handler = (_p, n) => (n < 3 ? { status: 503, body: "starting" } : { body: '{"status":"ok"}' });
    const log = new MemoryLog();
    const out = await runSmokeTests(opts([check({ path: "/slow", json: { status: "ok" } })]), log);
    expect(out.passed).toBe(true);
    expect(out.results[0]!.attempts).toBe(3);
    expect(log.text()).toMatch(/attempt 1\/4: 503 in \d+ ms: status 503, expected 200/);

    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await runSmokeTests(
      opts([check({ path: "/" })], { baseUrl: `http://127.0.0.1:${port}`, retries: 1 }),
      new MemoryLog(),
    );
    expect(refused.results[0]).toMatchObject({
      status: null,
      attempts: 2,
      reason: "connection refused (nothing listening?)",
    });
  });

  it("times out a request that does not answer in time", async () => {
    handler = () => ({ body: "late", delayMs: 500 });
    const out = await runSmokeTests(
      opts([check({ path: "/late" })], { timeoutMs: 100, retries: 0 }),
      new MemoryLog(),
    );
    expect(out.results[0]).toMatchObject({ passed: false, reason: "no response within 100 ms" });
  });

  it("follows redirects and checks the final response", async () => {
    handler = (p): Reply =>
      p === "/old"
        ? { status: 302, headers: { location: "/new" } }
        : { body: "ready", headers: { "x-release": "r2" } };
    const out = await runSmokeTests(
      opts([check({ path: "/old", body: "^ready$", headers: { "X-Release": "^r2$" } })]),
      new MemoryLog(),
    );
    expect(out.passed).toBe(true);
    expect(hits.get("/new")).toBe(1);
  });

  it("measures latency against max-latency", async () => {
    handler = () => ({ body: "ok", delayMs: 120 });
    const out = await runSmokeTests(
      opts([check({ path: "/slowish", "max-latency": 50 })], { retries: 0 }),
      new MemoryLog(),
    );
    expect(out.results[0]!.latencyMs).toBeGreaterThanOrEqual(100);
    expect(out.results[0]!.reason).toMatch(/^latency \d+ ms > max-latency 50 ms$/);
  });

  it("sends the bearer token and never logs it", async () => {
    forgetSecrets();
    seenAuth.length = 0;
    handler = (_p, _n, h) => ({ status: h.authorization === "Bearer s3cr3t-token-value" ? 200 : 401 });
    const env = parseConfig(`version: 1
app: t5
image: { name: example/app }
environments:
  staging:
    url: ${base}
    hosts: [deploy@10.0.0.1]
    path: /srv/t5
    compose: { service: api }
    smoke:
      bearer-token-env: T5_TOKEN
      retries: 0
      checks: [{ path: /private }]
`).environments.staging!;
    const o = smokeOptions(env, {}, { T5_TOKEN: "s3cr3t-token-value" });
    expect(o.baseUrl).toBe(base);
    const log = new MemoryLog();
    const out = await runSmokeTests(o, log);
    expect(out.passed).toBe(true);
    expect(seenAuth).toEqual(["Bearer s3cr3t-token-value"]);
    expect(redact("Bearer s3cr3t-token-value")).toBe("Bearer ***");
    expect(JSON.stringify(out) + log.text()).not.toContain("s3cr3t");
    expect(() => smokeOptions(env, {}, {})).toThrow(ConfigError);
    forgetSecrets();
  });
});
