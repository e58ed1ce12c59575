import { appendLedgerScript, readLedgerScript } from "../commands/release.js";
import { ConfigError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { redact } from "../core/secrets.js";
import type { Remote } from "../ssh/types.js";
import { RELEASE_ID } from "./ids.js";

/**
 * `verify`: the verdict on a release after its smoke test (and watch), appended once the deploy
 * is done; it carries the release's id. Promotion reads it (src/release/promotion.ts).
 */
export type LedgerKind = "deploy" | "rollback" | "migrate" | "verify";
export type LedgerStatus = "succeeded" | "failed";

/**
 * One line of <path>/.deploy-kit/releases.jsonl. Append-only: a later line never edits an
 * earlier one; a rollback is a line of its own naming the release it put back (`target`) and
 * the one it replaced (`replaces`).
 */
export interface LedgerEntry {
  id: string;
  kind: LedgerKind;
  "image-ref": string;
  "git-sha": string | null;
  version: string | null;
  /** ISO 8601, UTC. */
  time: string;
  /** Who deployed: the GitHub actor, or user@machine outside Actions. */
  actor: string;
  "run-url": string | null;
  status: LedgerStatus;
  /** Path on the host of the database backup taken before this release's migration. */
  backup: string | null;
  /** verify: restore: what the trial restore of `backup` into a scratch database produced. */
  "backup-trial"?: { bytes: number; tables: number; "duration-s": number };
  /** Whether a migration ran for this release (null: not known / no migration step). */
  "migration-applied": boolean | null;
  target?: string;
  replaces?: string;
  /** Why a release failed or was rolled back, one line. */
  reason?: string;
  /** strategy: blue-green: the color (compose project <app>-<color>) this release ran as. */
  color?: "blue" | "green";
  /** kind verify: the smoke test's verdict ("skipped": the environment has no smoke checks). */
  smoke?: "passed" | "failed" | "skipped";
  /** kind verify: the watch window's verdict, when the environment has one. */
  watch?: "passed" | "failed";
  /** kind verify: the digest each host's containers were read to run after the switch. */
  digests?: Record<string, string>;
}

const KINDS = new Set(["deploy", "rollback", "migrate", "verify"]);

/** Parse the ledger; lines that are not entries (hand edits, a torn write) are skipped with a warning. */
export function parseLedger(text: string, onBadLine?: (lineNo: number) => void): LedgerEntry[] {
  const out: LedgerEntry[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const e = JSON.parse(line) as LedgerEntry;
      if (
        typeof e === "object" &&
        e !== null &&
        typeof e.id === "string" &&
        RELEASE_ID.test(e.id) &&
        KINDS.has(e.kind) &&
        typeof e["image-ref"] === "string" &&
        (e.status === "succeeded" || e.status === "failed")
      ) {
        out.push(e);
        return;
      }
    } catch {}
    onBadLine?.(i + 1);
  });
  return out;
}

/** One JSON line; every text field redacted, so no host output (a reason) puts a secret in the ledger. */
export function serializeEntry(e: LedgerEntry): string {
  return JSON.stringify(e, (_k, v) => (typeof v === "string" ? redact(v) : v));
}

export async function readLedger(remote: Remote, path: string, log?: Log): Promise<LedgerEntry[]> {
  const res = await remote.run({ what: "read the release ledger", script: readLedgerScript(path) });
  return parseLedger(res.stdout, (n) =>
    log?.warn(`${remote.alias}: releases.jsonl line ${n} is not a ledger entry; ignored`),
  );
}

export async function appendLedger(remote: Remote, path: string, entry: LedgerEntry): Promise<void> {
  await remote.run({
    what: `record release ${entry.id} in the ledger`,
    script: appendLedgerScript(path, serializeEntry(entry)),
  });
}

export const isRelease = (e: LedgerEntry) => e.kind === "deploy" || e.kind === "rollback";

/**
 * The release the host was last switched to (it may have failed). A failed blue-green release
 * (one with a color) never stays live: its proxy was never switched, or was switched back.
 */
export function liveRelease(entries: readonly LedgerEntry[]): LedgerEntry | undefined {
  return entries.findLast((e) => isRelease(e) && !(e.status === "failed" && e.color));
}

/**
 * Releases that passed their health gate and whose image was not rolled back from LATER in the
 * ledger. Rolling back from an image condemns the earlier releases of it too (so repeated
 * rollbacks walk back through history instead of toggling), while a later redeploy of that
 * image is a fresh, eligible release.
 */
function goodReleases(entries: readonly LedgerEntry[]): LedgerEntry[] {
  const imageOf = new Map(entries.map((e) => [e.id, e["image-ref"]]));
  const condemned = new Set<string>();
  const out: LedgerEntry[] = [];
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    if (isRelease(e) && e.status === "succeeded" && !condemned.has(e["image-ref"])) out.push(e);
    if (e.kind === "rollback" && e.replaces && imageOf.has(e.replaces))
      condemned.add(imageOf.get(e.replaces)!);
  }
  return out.reverse();
}

/** The last good release: what a failed deploy puts back. */
export function lastGoodRelease(entries: readonly LedgerEntry[]): LedgerEntry | undefined {
  return goodReleases(entries).at(-1);
}

/**
 * The default `rollback` target: the newest good release running a different image than the
 * live one. Images that were rolled back from are not chosen again by default.
 */
export function previousRelease(entries: readonly LedgerEntry[]): LedgerEntry | undefined {
  const live = liveRelease(entries);
  const good = goodReleases(entries);
  if (!live) return undefined;
  if (live.status !== "succeeded") return good.at(-1);
  return good.findLast((e) => e["image-ref"] !== live["image-ref"]);
}

function digestOf(ref: string): string | undefined {
  return /sha256:[0-9a-f]{64}/.exec(ref)?.[0];
}

/** `to:` is a release id, an image reference, or a digest from the ledger. */
export function findRelease(entries: readonly LedgerEntry[], to: string): LedgerEntry {
  const releases = entries.filter(isRelease);
  const byId = releases.find((e) => e.id === to);
  const digest = digestOf(to);
  const byImage =
    byId ??
    releases.findLast(
      (e) =>
        e.status === "succeeded" &&
        (e["image-ref"] === to || (digest !== undefined && digestOf(e["image-ref"]) === digest)),
    );
  const recent = releases
    .filter((e) => e.status === "succeeded")
    .slice(-5)
    .reverse()
    .map((e) => `${e.id} (${e["image-ref"]})`);
  if (!byImage) {
    throw new ConfigError(`No release "${to}" in the ledger.`, {
      hint: recent.length
        ? `Use a release id or image reference from the ledger; recent good releases: ${recent.join(", ")}.`
        : "The ledger has no good release yet: deploy one with deploy-ssh first.",
    });
  }
  if (byImage.status !== "succeeded") {
    throw new ConfigError(`Release ${byImage.id} failed its health gate; it is not a rollback target.`, {
      hint: recent.length ? `Recent good releases: ${recent.join(", ")}.` : undefined,
    });
  }
  return byImage;
}

/** Image references to keep on the host: the newest `keep` distinct good images, plus `also`. */
export function imagesToKeep(
  entries: readonly LedgerEntry[],
  keep: number,
  also: (string | undefined)[],
): string[] {
  const out: string[] = [];
  for (const e of [...goodReleases(entries)].reverse()) {
    if (out.length >= keep) break;
    if (!out.includes(e["image-ref"])) out.push(e["image-ref"]);
  }
  for (const a of also) if (a && !out.includes(a)) out.push(a);
  return out;
}
