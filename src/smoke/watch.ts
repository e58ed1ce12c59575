import type { Log } from "../core/log.js";
import { type CheckResult, probeOnce, type SmokeOptions } from "./run.js";

export interface WatchBounds {
  durationMs: number;
  intervalMs: number;
  maxFailureRatio: number;
  maxLatencyMs?: number;
  minProbes: number;
}

/** One series of probes: a host (smoke.from: host, each over its own session) or the runner. */
export interface WatchTarget {
  name: string;
  smoke: SmokeOptions;
}

export interface TargetReport {
  target: string;
  probes: number;
  failures: number;
  /** 95th percentile of the latencies seen, ms. */
  p95Ms: number | null;
  lastFailure?: string;
  /** Why this target crossed a bound. */
  breach?: string;
}

export interface WatchOutcome {
  passed: boolean;
  rounds: number;
  elapsedMs: number;
  targets: TargetReport[];
}

function p95(values: number[]): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)]!;
}

/** PURE: is a target over a bound? Judged only once it has `minProbes` probes, so one blip is not a trend. */
export function judgeTarget(
  t: { target: string; results: CheckResult[] },
  bounds: Pick<WatchBounds, "maxFailureRatio" | "maxLatencyMs" | "minProbes">,
): TargetReport {
  const failed = t.results.filter((r) => !r.passed);
  const latencies = t.results.flatMap((r) => (r.latencyMs === null ? [] : [r.latencyMs]));
  const report: TargetReport = {
    target: t.target,
    probes: t.results.length,
    failures: failed.length,
    p95Ms: p95(latencies),
    ...(failed.length ? { lastFailure: `${failed.at(-1)!.url}: ${failed.at(-1)!.reason ?? "failed"}` } : {}),
  };
  if (report.probes < bounds.minProbes) return report;
  const ratio = report.failures / report.probes;
  if (ratio > bounds.maxFailureRatio) {
    report.breach = `${report.failures} of ${report.probes} probes failed (${(ratio * 100).toFixed(0)}% > max-failure-ratio ${(bounds.maxFailureRatio * 100).toFixed(0)}%)`;
  } else if (
    bounds.maxLatencyMs !== undefined &&
    report.p95Ms !== null &&
    report.p95Ms > bounds.maxLatencyMs
  ) {
    report.breach = `p95 latency ${report.p95Ms} ms > max-latency ${bounds.maxLatencyMs} ms`;
  }
  return report;
}

/**
 * The watch window: probe every check on every target each interval for the duration, and stop
 * at the first round after which a target is over a bound (the caller rolls back).
 */
export async function watchRelease(
  targets: readonly WatchTarget[],
  bounds: WatchBounds,
  log: Log,
  clock: { now: () => number; sleep: (ms: number) => Promise<void> } = {
    now: Date.now,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  },
): Promise<WatchOutcome> {
  const started = clock.now();
  const results = new Map(targets.map((t) => [t.name, [] as CheckResult[]]));
  let rounds = 0;
  let reports: TargetReport[] = [];
  const judge = () =>
    targets.map((t) => judgeTarget({ target: t.name, results: results.get(t.name)! }, bounds));
  for (;;) {
    rounds++;
    await Promise.all(
      targets.map(async (t) => {
        try {
          results.get(t.name)!.push(...(await probeOnce(t.smoke)));
        } catch (e) {
          // The probe itself failed (the SSH session went): that is a failed probe, not a crash.
          results.get(t.name)!.push({
            url: t.smoke.baseUrl,
            method: "GET",
            status: null,
            latencyMs: null,
            attempts: 1,
            passed: false,
            reason: (e as Error).message.split("\n")[0],
          });
        }
      }),
    );
    reports = judge();
    const breached = reports.filter((r) => r.breach);
    const elapsed = clock.now() - started;
    log.info(
      `watch round ${rounds} (${Math.round(elapsed / 1000)} s): ${reports.map((r) => `${r.target} ${r.failures}/${r.probes} failed${r.p95Ms === null ? "" : `, p95 ${r.p95Ms} ms`}`).join("; ")}`,
    );
    if (breached.length) return { passed: false, rounds, elapsedMs: elapsed, targets: reports };
    if (elapsed + bounds.intervalMs > bounds.durationMs) break;
    await clock.sleep(bounds.intervalMs);
  }
  return { passed: true, rounds, elapsedMs: clock.now() - started, targets: reports };
}

export function watchFailureMessage(o: WatchOutcome): string {
  return o.targets
    .filter((t) => t.breach)
    .map((t) => `${t.target}: ${t.breach}${t.lastFailure ? `; last failure: ${t.lastFailure}` : ""}`)
    .join("\n");
}
