import { ConfigError } from "../core/errors.js";
import { isRelease, type LedgerEntry } from "./ledger.js";

/**
 * What happened to one release on an environment, as recorded by deploy-kit: in the hosts' ledger
 * (`verify` lines) and in the environment's GitHub Deployments (a `deploy-kit:record` deployment
 * whose payload is this object). Promotion reads these, never a registry tag: a tag can be pushed
 * by anyone with registry access, a record only by a deploy that ran.
 */
export interface ReleaseRecord {
  environment: string;
  "release-id": string;
  "image-ref": string;
  /** sha256:<64 hex>, the image's digest. */
  digest: string;
  "git-sha": string | null;
  /**
   * passed: health gate, digest check and smoke test passed. failed: it did not and stayed live
   * (rollback off or impossible). rolled-back: it failed and `serving` went back. unverified: it
   * went live without a smoke test, so nothing proved it works.
   */
  outcome: "passed" | "failed" | "rolled-back" | "unverified";
  smoke: "passed" | "failed" | "skipped" | "not-run";
  /** The watch window after the smoke test, when the environment has one. */
  watch?: "passed" | "failed";
  /** ISO 8601 time of the verdict. */
  time: string;
  /** The image the environment serves after this run (differs from image-ref after a rollback). */
  serving: string;
  /** Per host alias: the digest its containers were read to run. */
  hosts?: Record<string, string>;
  reason?: string;
  "run-url"?: string | null;
  /** Where the record was read (a GitHub deployment, a host's ledger): said in messages. */
  source?: string;
}

export const DIGEST = /sha256:[0-9a-f]{64}/;

export function digestOf(ref: string): string | undefined {
  return DIGEST.exec(ref)?.[0];
}

/**
 * The records a host's ledger holds, oldest first. A release's verdict is its `verify` line; a
 * release that failed its health gate is `failed`; one a later rollback replaced is `rolled-back`
 * (an operator's rollback condemns a release as surely as a failed smoke test); a release with no
 * verdict is `unverified` (deployed without smoke checks, or by an older deploy-kit).
 */
export function recordsFromLedger(entries: readonly LedgerEntry[], environment: string): ReleaseRecord[] {
  const out = new Map<string, ReleaseRecord>();
  for (const e of entries) {
    if (e.kind === "deploy") {
      out.set(e.id, {
        environment,
        "release-id": e.id,
        "image-ref": e["image-ref"],
        digest: digestOf(e["image-ref"]) ?? "",
        "git-sha": e["git-sha"],
        outcome: e.status === "failed" ? "failed" : "unverified",
        smoke: "not-run",
        time: e.time,
        serving: e["image-ref"],
        ...(e.reason ? { reason: e.reason } : {}),
        "run-url": e["run-url"],
      });
    } else if (e.kind === "verify") {
      const r = out.get(e.id);
      if (!r) continue;
      out.delete(e.id);
      out.set(e.id, r);
      r.smoke = e.smoke ?? "not-run";
      r.outcome = e.status === "succeeded" ? (e.smoke === "skipped" ? "unverified" : "passed") : "failed";
      r.time = e.time;
      if (e.digests) r.hosts = e.digests;
      if (e.watch) r.watch = e.watch;
      if (e.reason) r.reason = e.reason;
    } else if (e.kind === "rollback" && e.replaces) {
      const r = out.get(e.replaces);
      if (!r) continue;
      // The newest verdict wins: a passed release rolled back later is no longer promotable.
      out.delete(e.replaces);
      out.set(e.replaces, {
        ...r,
        outcome: "rolled-back",
        time: e.time,
        serving: e.status === "succeeded" ? e["image-ref"] : r["image-ref"],
        reason: e.reason ?? r.reason,
      });
    }
  }
  return [...out.values()];
}

/**
 * What a rollback records about the release it took off: rolled back, whatever its smoke test
 * said, so the default promotion follows what the environment serves again (as the ledger does).
 */
export function rollbackRecord(
  replaced: LedgerEntry,
  opts: { environment: string; serving: string; reason: string; runUrl?: string; now?: Date },
): ReleaseRecord {
  return {
    environment: opts.environment,
    "release-id": replaced.id,
    "image-ref": replaced["image-ref"],
    digest: digestOf(replaced["image-ref"]) ?? "",
    "git-sha": replaced["git-sha"],
    outcome: "rolled-back",
    smoke: "not-run",
    time: (opts.now ?? new Date()).toISOString(),
    serving: opts.serving,
    reason: opts.reason,
    "run-url": opts.runUrl ?? null,
  };
}

/** The image a ledger says is live, with the time it went live. */
export function servingFromLedger(entries: readonly LedgerEntry[]): string | undefined {
  const live = entries.findLast((e) => isRelease(e) && e.status === "succeeded");
  return live?.["image-ref"];
}

export interface Promotion {
  record: ReleaseRecord;
  /** When the digest first passed in its current unbroken run of passes (soak is counted from it). */
  passedSince: string;
  /** How the record was chosen, in words. */
  chosenBy: string;
}

const RELEASE_LIKE = /^\d{8}-\d{6}-[A-Za-z0-9._-]+$/;
const COMMIT = /^[0-9a-f]{7,40}$/i;

function describe(r: ReleaseRecord): string {
  const sha = r["git-sha"] ? `commit ${r["git-sha"].slice(0, 12)}, ` : "";
  const why = r.reason ? `: ${r.reason}` : "";
  return `release ${r["release-id"]} (${sha}${r.digest || r["image-ref"]}) ${r.outcome.toUpperCase()} at ${r.time}${why}`;
}

function recent(records: readonly ReleaseRecord[]): string {
  const last = records.slice(-5).reverse();
  return last.length ? `Recent records: ${last.map(describe).join("; ")}.` : "There are no records at all.";
}

/** The newest verdict on a digest decides: a digest that passed and later failed is refused. */
function verdictOn(records: readonly ReleaseRecord[], digest: string): ReleaseRecord | undefined {
  return records.findLast((r) => r.digest === digest);
}

function passedSince(records: readonly ReleaseRecord[], digest: string): string {
  let since = "";
  for (const r of records) {
    if (r.digest !== digest) continue;
    since = r.outcome === "passed" ? since || r.time : "";
  }
  return since;
}

/**
 * Choose what to promote from `from`'s records (oldest first). `select` empty: the digest the
 * environment serves now, which must have passed. Otherwise a release id, a commit SHA (7-40 hex)
 * or a digest (`sha256:…` or `name@sha256:…`); whichever it names must have passed, and its
 * newest record must still say so. Refusals name what was found.
 */
export function choosePromotion(
  records: readonly ReleaseRecord[],
  opts: { from: string; select?: string; serving?: string },
): Promotion {
  const { from } = opts;
  const select = opts.select?.trim() ?? "";
  const refuse = (message: string, hint: string): never => {
    throw new ConfigError(message, { hint: `${hint} ${recent(records)}` });
  };
  let candidate: ReleaseRecord | undefined;
  let chosenBy: string;
  if (!select) {
    const newest = records.at(-1);
    const serving = opts.serving ?? newest?.serving;
    if (!serving) {
      return refuse(
        `Nothing to promote: ${from} has no record of any release.`,
        `Deploy to ${from} first; a release is recorded when its smoke test passes.`,
      );
    }
    const digest = digestOf(serving);
    candidate = digest ? verdictOn(records, digest) : undefined;
    chosenBy = `what ${from} serves now`;
    if (!candidate) {
      return refuse(
        `${from} serves ${serving}, but no record says it passed there.`,
        `Deploy it to ${from} again so its smoke test is recorded, or name a release that passed.`,
      );
    }
  } else if (records.some((r) => r["release-id"] === select)) {
    chosenBy = `release ${select}`;
    const named = records.findLast((r) => r["release-id"] === select)!;
    // The release's digest may have been judged again later (a redeploy that failed).
    candidate = verdictOn(records, named.digest) ?? named;
  } else if (digestOf(select)) {
    const digest = digestOf(select)!;
    candidate = verdictOn(records, digest);
    chosenBy = `digest ${digest}`;
    if (!candidate) {
      return refuse(
        `${digest} never ran on ${from}: no record names it.`,
        `Only a digest that passed on ${from} can be promoted; deploy it there first.`,
      );
    }
  } else if (COMMIT.test(select)) {
    const sha = select.toLowerCase();
    const ofCommit = records.filter((r) => r["git-sha"]?.toLowerCase().startsWith(sha));
    chosenBy = `commit ${sha}`;
    candidate = ofCommit.findLast((r) => r.outcome === "passed") ?? ofCommit.at(-1);
    if (!candidate) {
      return refuse(
        `No release of commit ${sha} is recorded on ${from}.`,
        `A squash-merged or rebased commit has a new SHA: name the release id or digest that passed on ${from} instead, or leave it empty to promote what ${from} serves now.`,
      );
    }
    candidate = verdictOn(records, candidate.digest) ?? candidate;
  } else if (RELEASE_LIKE.test(select)) {
    return refuse(`No release ${select} is recorded on ${from}.`, "Name a release id from its records.");
  } else {
    return refuse(
      `"${select}" is not a release id, a commit SHA or a digest.`,
      "Pass a release id (20260102-101500-abc1234), a commit SHA (7 to 40 hex) or a digest (sha256:<64 hex>), or nothing.",
    );
  }
  if (candidate.outcome !== "passed") {
    return refuse(
      `Refusing to promote ${chosenBy}: on ${from} its newest record is ${describe(candidate)}${candidate.source ? ` (${candidate.source})` : ""}.`,
      `Only an image whose deploy to ${from} passed its health gate and smoke test, and was not rolled back since, can be promoted.`,
    );
  }
  return { record: candidate, passedSince: passedSince(records, candidate.digest), chosenBy };
}

/** min-soak: refuse until the digest has been passing on `from` for `minSoakMs`. */
export function checkSoak(p: Promotion, opts: { from: string; minSoakMs: number; now: number }): number {
  const since = Date.parse(p.passedSince);
  const soaked = opts.now - since;
  if (opts.minSoakMs > 0 && soaked < opts.minSoakMs) {
    const eligible = new Date(since + opts.minSoakMs).toISOString();
    throw new ConfigError(
      `${p.record.digest} passed on ${opts.from} at ${p.passedSince}, ${formatAge(soaked)} ago; min-soak asks for ${formatAge(opts.minSoakMs)}. It is eligible from ${eligible}.`,
      { hint: "Run the promotion again after that time, or lower min-soak." },
    );
  }
  return soaked;
}

export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m`;
  return `${s}s`;
}
