import { type Document, isMap, isPair, isScalar, isSeq, type LineCounter, type Node } from "yaml";

export type PathKey = string | number;

export function dotted(path: readonly PathKey[]): string {
  let out = "";
  for (const k of path) out += typeof k === "number" ? `[${k}]` : out ? `.${k}` : k;
  return out;
}

/** Line/column of the deepest node that exists along `path` (or of a map key when `key` is given). */
export function locate(
  doc: Document,
  lc: LineCounter,
  path: readonly PathKey[],
  key?: string,
): { line: number; col: number } | undefined {
  let node: unknown = doc.contents;
  let best: Node | undefined = (doc.contents as Node | null) ?? undefined;
  for (const k of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(k));
      if (!pair) break;
      node = pair.value;
      if (node && (node as Node).range) best = node as Node;
      else if (isScalar(pair.key)) best = pair.key;
    } else if (isSeq(node) && typeof k === "number") {
      node = node.items[k];
      if (!node) break;
      best = node as Node;
    } else break;
  }
  if (key !== undefined && isMap(node)) {
    const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === key);
    if (pair && isScalar(pair.key) && pair.key.range) best = pair.key;
  }
  const offset = best?.range?.[0];
  if (offset === undefined) return undefined;
  const pos = lc.linePos(offset);
  return { line: pos.line, col: pos.col };
}
