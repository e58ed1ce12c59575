import { type Document, isMap, isPair, isScalar, isSeq, type LineCounter, type Node } from "yaml";

export type PathKey = string | number;

export function dotted(path: readonly PathKey[]): string {
  let out = "";
  for (const k of path) out += typeof k === "number" ? `[${k}]` : out ? `.${k}` : k;
  return out;
}

/**
 * Line/column for a problem at `path`: the key of the deepest mapping entry that exists along
 * it (so a missing key points at its parent's line), a list item's own position, or, with `key`,
 * that key inside the mapping at `path`.
 */
export function locate(
  doc: Document,
  lc: LineCounter,
  path: readonly PathKey[],
  key?: string,
): { line: number; col: number } | undefined {
  const at = (n: Node | undefined | null) => {
    const offset = n?.range?.[0];
    if (offset === undefined) return undefined;
    const pos = lc.linePos(offset);
    return { line: pos.line, col: pos.col };
  };
  let node: unknown = doc.contents;
  let best: Node | undefined = (doc.contents as Node | null) ?? undefined;
  for (const k of [...path, ...(key === undefined ? [] : [key])]) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(k));
      if (!pair) break;
      node = pair.value;
      best = isScalar(pair.key) ? pair.key : ((node as Node) ?? best);
    } else if (isSeq(node) && typeof k === "number") {
      node = node.items[k];
      if (!node) break;
      best = node as Node;
    } else break;
  }
  return at(best);
}
