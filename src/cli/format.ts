import { redact } from "../core/secrets.js";
import type { SummarySection } from "../core/summary.js";

/** Visible width: a few emoji the summaries use are two columns wide. */
function width(s: string): number {
  let w = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0xfe0f || (cp >= 0x300 && cp < 0x370)) continue;
    w += cp >= 0x1f000 || (cp >= 0x2600 && cp < 0x27c0 && cp !== 0x2713 && cp !== 0x2717) ? 2 : 1;
  }
  return w;
}

const cell = (c: string | number) =>
  String(c)
    .replace(/`/g, "")
    .replace(/\s*\n\s*/g, " ");

/** A plain-text table with aligned columns, for terminals (Markdown tables are for summaries). */
export function table(headers: string[], rows: (string | number)[][]): string {
  const all = [headers, ...rows].map((r) => r.map(cell));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => width(r[i] ?? ""))));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c + " ".repeat(widths[i]! - width(c))))
      .join("  ")
      .trimEnd();
  const [head, ...body] = all;
  return [line(head!), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

/** The summaries' sections (the same builders as the actions' job summaries), as terminal text. */
export function renderSections(title: string, sections: SummarySection[]): string {
  const out = [title, ""];
  for (const s of sections) {
    if (s.heading) out.push(s.heading, "");
    if (s.table) out.push(table(s.table.headers, s.table.rows), "");
    if (s.lines) out.push(...s.lines.map((l) => l.replace(/\*\*|`/g, "")), "");
    if (s.code) out.push(...s.code.text.split("\n").map((l) => `    ${l}`), "");
  }
  return redact(out.join("\n").trimEnd());
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
