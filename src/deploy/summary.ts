import type { SummarySection } from "../core/summary.js";
import type { HostResult } from "./release.js";

const SHOWN: Record<HostResult["outcome"], string> = {
  deployed: "✅ deployed",
  "rolled-back": "↩️ rolled back",
  failed: "❌ failed",
  "rollback-failed": "❌ rollback failed",
  skipped: "⏭️ not started",
};

/** One row per host: alias, release, image, duration, outcome. */
export function hostSections(hosts: readonly HostResult[], lines: string[] = []): SummarySection[] {
  return [
    ...(lines.length ? [{ lines }] : []),
    {
      table: {
        headers: ["host", "release", "image", "duration", "outcome"],
        rows: hosts.map((h) => [
          h.alias,
          h.release,
          h["image-ref"] ? `\`${h["image-ref"]}\`` : "",
          `${h["duration-s"].toFixed(1)} s`,
          h.error ? `${SHOWN[h.outcome]}: ${h.error}` : SHOWN[h.outcome],
        ]),
      },
    },
  ];
}
