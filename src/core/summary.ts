import * as core from "@actions/core";
import { redact } from "./secrets.js";

export interface SummarySection {
  heading?: string;
  table?: { headers: string[]; rows: (string | number)[][] };
  lines?: string[];
  code?: { text: string; lang?: string };
}

/** Render sections as Markdown; one place builds every job summary and the CLI reuses it. */
export function renderSummary(title: string, sections: SummarySection[]): string {
  const out = [`## ${title}`, ""];
  for (const s of sections) {
    if (s.heading) out.push(`### ${s.heading}`, "");
    if (s.table) {
      const esc = (c: string | number) => String(c).replace(/\|/g, "\\|").replace(/\n/g, " ");
      out.push(`| ${s.table.headers.map(esc).join(" | ")} |`);
      out.push(`| ${s.table.headers.map(() => "---").join(" | ")} |`);
      for (const r of s.table.rows) out.push(`| ${r.map(esc).join(" | ")} |`);
      out.push("");
    }
    if (s.lines) out.push(...s.lines, "");
    if (s.code) out.push(`\`\`\`${s.code.lang ?? ""}`, s.code.text, "```", "");
  }
  return redact(out.join("\n"));
}

/** Append to the job summary when the runner gives us one; a missing file is not an error. */
export async function writeSummary(title: string, sections: SummarySection[]): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  await core.summary.addRaw(renderSummary(title, sections), true).write();
}
