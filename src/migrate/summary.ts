import type { SummarySection } from "../core/summary.js";
import type { MigrateReport } from "./action-flow.js";
import { describeVerification, size } from "./backup.js";

/** The job summary of a migration: where, what ran, the backup, the result; the plan on dry-run. */
export function migrateSections(r: MigrateReport): SummarySection[] {
  const o = r.outcome;
  const backup = o?.backup
    ? `\`${o.backup.path}\` (${size(o.backup.bytes)}, ${o.backup.entries} entries, ${describeVerification(o.backup)})`
    : "none";
  const result = r.error
    ? `failed: ${r.error.message.split("\n")[0]}`
    : r.dryRun
      ? "plan only, nothing changed"
      : o?.applied
        ? "applied"
        : "not run";
  const sections: SummarySection[] = [
    {
      table: {
        headers: ["environment", "host", "service", "command", "backup", "result", "duration"],
        rows: [
          [
            r.environment,
            r.host,
            r.service,
            `\`${r.command}\``,
            r.dryRun ? "skipped (dry-run)" : backup,
            result,
            o ? `${(o.durationMs / 1000).toFixed(1)} s` : "",
          ],
        ],
      },
    },
    { lines: [`Image \`${r.imageRef}\`${r.ledgerId ? `; ledger entry \`${r.ledgerId}\`` : ""}`] },
  ];
  if (r.dryRun && o?.plan !== undefined)
    sections.push({ heading: "Plan", code: { text: o.plan || "(no output)", lang: "sql" } });
  if (r.error) {
    const hint = (r.error as { hint?: string }).hint;
    sections.push({ heading: "What happened", code: { text: r.error.message } });
    if (hint) sections.push({ lines: [`**What to do:** ${hint}`] });
  }
  return sections;
}
