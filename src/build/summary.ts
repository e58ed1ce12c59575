import { seconds } from "../core/log.js";
import type { SummarySection } from "../core/summary.js";
import type { BuildImageResult } from "./build-image.js";

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(1)} ${units[i]}`;
}

/** The job summary of build-image: what a reviewer checks before promoting an image. */
export function buildSummarySections(r: BuildImageResult): SummarySection[] {
  const result = r.skipped
    ? "promoted: the sha tag already existed, nothing was rebuilt"
    : r.pushed
      ? "built and pushed"
      : "built locally (push: false)";
  const size = r.size
    ? `${formatBytes(r.size.bytes)} ${r.size.compressed ? "compressed" : "uncompressed"}${
        r.size.platforms.length ? ` (${r.size.platforms.join(", ")})` : ""
      }`
    : "unknown";
  const rows: [string, string][] = [
    ["Image", `\`${r.name}\``],
    ["Result", result],
    ["Image ref", `\`${r.imageRef}\``],
    ["Digest", r.digest ? `\`${r.digest}\`` : "not pushed"],
    ["Tags", r.tags.map((t) => `\`${t}\``).join(" ")],
    ["Git SHA", `\`${r.sha}\``],
    ["Version", r.version],
    ["Size", size],
    ["Builder", r.builder ?? "none"],
    ["Cache", r.cache],
    ["Duration", seconds(r.durationMs)],
  ];
  if (r.imageId) rows.splice(4, 0, ["Local image id", `\`${r.imageId}\``]);
  return [{ table: { headers: ["", ""], rows } }];
}
