import { appendFileSync, existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Where adversarial suites record "category: tried N, failures M" for the closing summary. */
export const TALLY_FILE = join(tmpdir(), "deploy-kit-adversarial-tally.jsonl");

export interface Tally {
  category: string;
  tried: number;
  failures: number;
  notes?: string;
}

export function recordTally(t: Tally): void {
  appendFileSync(TALLY_FILE, `${JSON.stringify(t)}\n`);
}

export function resetTally(): void {
  rmSync(TALLY_FILE, { force: true });
}

/** One line per category, summed over the files that reported it. */
export function tallyLines(): string[] {
  if (!existsSync(TALLY_FILE)) return [];
  const by = new Map<string, Tally>();
  for (const line of readFileSync(TALLY_FILE, "utf8").split("\n").filter(Boolean)) {
    const t = JSON.parse(line) as Tally;
    const prev = by.get(t.category) ?? { category: t.category, tried: 0, failures: 0 };
    by.set(t.category, { ...prev, tried: prev.tried + t.tried, failures: prev.failures + t.failures });
  }
  return [...by.values()].map((t) => `adversarial ${t.category}: tried ${t.tried}, failures ${t.failures}`);
}
