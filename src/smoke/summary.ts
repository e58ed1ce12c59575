import type { SummarySection } from "../core/summary.js";
import type { SmokeOutcome } from "./run.js";

/** One row per check: what a reviewer needs to see whether the right release answers. */
export function smokeSections(
  o: SmokeOutcome,
  opts: { expectVersion?: string; from: string },
): SummarySection[] {
  return [
    {
      table: {
        headers: ["check", "result", "status", "latency", "attempts", "version", "reason"],
        rows: o.results.map((r) => [
          `${r.method} ${r.url}`,
          r.passed ? "passed" : "FAILED",
          r.status ?? "-",
          r.latencyMs === null ? "-" : `${r.latencyMs} ms`,
          r.attempts,
          r.version ?? "",
          r.reason ?? "",
        ]),
      },
    },
    {
      lines: [
        `Requests from the ${opts.from}${opts.expectVersion ? `; expected version \`${opts.expectVersion}\`` : "; no expected version given"}.`,
      ],
    },
  ];
}

/** The failures as one message: which checks, why. */
export function smokeFailureMessage(o: SmokeOutcome): string {
  const failed = o.results.filter((r) => !r.passed);
  return [
    `${failed.length} of ${o.results.length} smoke check(s) failed:`,
    ...failed.map((r) => `  - ${r.method} ${r.url} after ${r.attempts} attempt(s): ${r.reason}`),
  ].join("\n");
}
