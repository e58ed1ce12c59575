import { describe, expect, test } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { MemoryLog } from "../../src/core/log.js";
import type { CheckResult, SmokeOptions } from "../../src/smoke/run.js";
import { judgeTarget, watchFailureMessage, watchRelease } from "../../src/smoke/watch.js";

const probe = (passed: boolean, latencyMs: number | null = 50): CheckResult => ({
  url: "http://h/health",
  method: "GET",
  status: passed ? 200 : 500,
  latencyMs,
  attempts: 1,
  passed,
  ...(passed ? {} : { reason: "status 500, expected 200" }),
});
/** An environment's parsed smoke section, from its YAML flow mapping. */
const smokeSection = (yaml: string) =>
  parseConfig(`version: 1
app: a
image: { name: r.example/a }
environments:
  e:
    hosts: [h.example]
    path: /srv/a
    compose: { service: api }
    smoke: ${yaml}
`).environments.e!.smoke!;

const bounds = { maxFailureRatio: 0.2, maxLatencyMs: 800, minProbes: 5 };

describe("judging a target of the watch window", () => {
  test.each([
    ["4 probes, all failed: too few to judge", [false, false, false, false], undefined],
    ["5 probes, 1 failed (20%): within", [true, true, false, true, true], undefined],
    [
      "5 probes, 2 failed (40%): over",
      [true, false, true, false, true],
      "2 of 5 probes failed (40% > max-failure-ratio 20%)",
    ],
  ])("%s", (_n, passes, breach) => {
    const r = judgeTarget({ target: "h1", results: passes.map((p) => probe(p)) }, bounds);
    expect(r.breach).toBe(breach);
  });

  test("p95 latency over max-latency is a breach even when every probe passed", () => {
    const results = [50, 60, 70, 900, 950, 1000].map((l) => probe(true, l));
    const r = judgeTarget({ target: "h1", results }, bounds);
    expect(r).toMatchObject({
      probes: 6,
      failures: 0,
      p95Ms: 1000,
      breach: "p95 latency 1000 ms > max-latency 800 ms",
    });
  });
});

describe("watchRelease", () => {
  const smoke = (answers: boolean[]): SmokeOptions => {
    let i = 0;
    return {
      checks: smokeSection("{ checks: [{ path: /health }] }").checks,
      baseUrl: "http://h",
      retries: 0,
      intervalMs: 0,
      timeoutMs: 1000,
      requester: async () => {
        const ok = answers[Math.min(i++, answers.length - 1)]!;
        return { status: ok ? 200 : 503, headers: {}, body: "", latencyMs: 10 };
      },
    };
  };
  const fakeClock = () => {
    let t = 0;
    return {
      now: () => t,
      sleep: async (ms: number) => {
        t += ms;
      },
    };
  };
  const w = { durationMs: 60_000, intervalMs: 10_000, maxFailureRatio: 0.2, minProbes: 3 };

  test("healthy for the whole window: passes after duration/interval rounds, reported per target", async () => {
    const log = new MemoryLog();
    const o = await watchRelease(
      [
        { name: "h1", smoke: smoke([true]) },
        { name: "h2", smoke: smoke([true]) },
      ],
      w,
      log,
      fakeClock(),
    );
    expect(o).toMatchObject({ passed: true, rounds: 7 }); // at 0, 10, … 60 s
    expect(o.targets.map((t) => [t.target, t.probes, t.failures])).toEqual([
      ["h1", 7, 0],
      ["h2", 7, 0],
    ]);
    expect(log.text()).toContain("watch round 7 (60 s): h1 0/7 failed, p95 10 ms; h2 0/7 failed, p95 10 ms");
  });

  test("a host that starts failing is caught as soon as it crosses the bound, and named", async () => {
    const o = await watchRelease(
      [
        { name: "h1", smoke: smoke([true]) },
        { name: "h2", smoke: smoke([true, true, false, false]) },
      ],
      w,
      new MemoryLog(),
      fakeClock(),
    );
    expect(o.passed).toBe(false);
    expect(o.rounds).toBe(3);
    expect(watchFailureMessage(o)).toBe(
      "h2: 1 of 3 probes failed (33% > max-failure-ratio 20%); last failure: http://h/health: status 503, expected 200",
    );
    expect(o.targets[0]!.breach).toBeUndefined();
  });

  test("a probe that throws (the session went) counts as a failed probe", async () => {
    const broken: SmokeOptions = {
      ...smoke([true]),
      requester: async () => Promise.reject(new Error("connection lost")),
    };
    const o = await watchRelease(
      [{ name: "h1", smoke: broken }],
      { ...w, minProbes: 1 },
      new MemoryLog(),
      fakeClock(),
    );
    expect(o.passed).toBe(false);
    expect(o.targets[0]!.lastFailure).toContain("connection lost");
  });

  test("the smoke.watch config section and its defaults", () => {
    expect(
      smokeSection("{ checks: [{ path: /health }], watch: { duration: 10m, max-latency: 2s } }").watch,
    ).toEqual({
      duration: 600_000,
      interval: 10_000,
      "max-failure-ratio": 0.1,
      "max-latency": 2000,
      "min-probes": 5,
    });
  });
});
