import type { z } from "zod";
import type { PathKey } from "./locate.js";

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}

export function closest(word: string, candidates: string[]): string | undefined {
  const lower = word.toLowerCase();
  // "hostname" for "host", "dockerfile-path" for "dockerfile": a known key inside the typo.
  const contained = candidates.find((c) => c.length >= 3 && (lower.startsWith(c) || c.startsWith(lower)));
  if (contained) return contained;
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dd = distance(word.toLowerCase(), c.toLowerCase());
    if (dd < bestD) [best, bestD] = [c, dd];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  options?: z.ZodType[];
  element?: z.ZodType;
  valueType?: z.ZodType;
}
const def = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The keys the schema allows for the object found at `path`, to suggest a spelling. */
export function knownKeys(schema: z.ZodType, path: readonly PathKey[]): string[] {
  const objects = (s: z.ZodType | undefined, depth = 0): Def[] => {
    if (!s || depth > 20) return [];
    const d = def(s);
    switch (d.type) {
      case "object":
        return [d];
      case "optional":
      case "nullable":
      case "default":
      case "prefault":
      case "readonly":
        return objects(d.innerType, depth + 1);
      case "pipe":
        return [...objects(d.in, depth + 1), ...objects(d.out, depth + 1)];
      case "union":
        return (d.options ?? []).flatMap((o) => objects(o, depth + 1));
      default:
        return [];
    }
  };
  const step = (s: z.ZodType | undefined, k: PathKey, depth = 0): z.ZodType[] => {
    if (!s || depth > 20) return [];
    const d = def(s);
    switch (d.type) {
      case "object":
        return typeof k === "string" && d.shape?.[k] ? [d.shape[k]] : [];
      case "record":
        return d.valueType ? [d.valueType] : [];
      case "array":
        return d.element ? [d.element] : [];
      case "optional":
      case "nullable":
      case "default":
      case "prefault":
      case "readonly":
        return step(d.innerType, k, depth + 1);
      case "pipe":
        return [...step(d.in, k, depth + 1), ...step(d.out, k, depth + 1)];
      case "union":
        return (d.options ?? []).flatMap((o) => step(o, k, depth + 1));
      default:
        return [];
    }
  };
  let current: z.ZodType[] = [schema];
  for (const k of path) current = current.flatMap((s) => step(s, k));
  return [...new Set(current.flatMap((s) => objects(s)).flatMap((d) => Object.keys(d.shape ?? {})))];
}
