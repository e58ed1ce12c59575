import { randomBytes } from "node:crypto";

/** Release ids are file names on the host and words in shell scripts: keep them plain. */
export const RELEASE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/**
 * `20260314-101502-abc1234`: sortable, readable in a ledger, typeable in `rollback to:`.
 * A rollback ends in `-rollback`. Two releases in one second of the same commit would collide,
 * so the caller passes the ids already used and gets a suffix in that case.
 */
export function newReleaseId(
  opts: { gitSha?: string; kind?: "deploy" | "rollback"; now?: Date; taken?: Iterable<string> } = {},
): string {
  const t = (opts.now ?? new Date()).toISOString();
  const stamp = `${t.slice(0, 10).replace(/-/g, "")}-${t.slice(11, 19).replace(/:/g, "")}`;
  const tail =
    opts.kind === "rollback"
      ? "rollback"
      : opts.gitSha && /^[0-9a-f]{7,}$/i.test(opts.gitSha)
        ? opts.gitSha.slice(0, 7).toLowerCase()
        : randomBytes(3).toString("hex");
  const base = `${stamp}-${tail}`;
  const taken = new Set(opts.taken ?? []);
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}

/** A lock token: random, so a lock is released only by whoever took it. */
export function newToken(): string {
  return randomBytes(12).toString("hex");
}
