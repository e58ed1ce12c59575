import { type LedgerEntry, liveRelease, previousRelease, readLedger } from "../../release/ledger.js";
import { table } from "../format.js";
import { SSH_FLAGS, withHosts } from "../remote.js";
import { type Command, EXIT, UsageError } from "../types.js";

export const releasesCommand: Command = {
  summary: "The release ledger of each host, as a table (live release and rollback target marked)",
  usage: "deploy-kit releases --env E [--host ALIAS] [--last N]",
  details: [
    "Reads <path>/.deploy-kit/releases.jsonl on each host over SSH: every deploy, rollback and",
    "migration with its image, commit, time, actor, status and backup. `*` marks the live",
    "release, `<` the default rollback target. Changes nothing.",
  ],
  options: {
    host: { type: "string", value: "ALIAS", description: "only this host" },
    last: {
      type: "string",
      value: "N",
      description: "only the newest N entries per host (default 20; 0 = all)",
    },
    ...SSH_FLAGS,
  },
  async run(ctx) {
    const environment = ctx.environment();
    const last = Number(ctx.string("last") ?? "20");
    if (!Number.isInteger(last) || last < 0) throw new UsageError("--last N: a whole number");
    const only = ctx.string("host");
    const ledgers = await withHosts(
      ctx,
      ({ env, remotes }) =>
        Promise.all(
          remotes.map(async (r) => ({ alias: r.alias, entries: await readLedger(r, env.path, ctx.log) })),
        ),
      only ? { only: [only] } : {},
    );
    ctx.emit(
      {
        ok: true,
        environment,
        hosts: ledgers.map((l) => ({
          alias: l.alias,
          live: liveRelease(l.entries)?.id ?? null,
          rollbackTarget: previousRelease(l.entries)?.id ?? null,
          entries: l.entries,
        })),
      },
      () => {
        for (const [i, l] of ledgers.entries()) {
          if (i > 0) ctx.print("");
          ctx.print(ledgerTable(l.alias, l.entries, last));
        }
      },
    );
    return EXIT.ok;
  },
};

/** The ledger as a terminal table, newest last (as the file is). */
export function ledgerTable(alias: string, entries: readonly LedgerEntry[], last = 0): string {
  if (entries.length === 0) return `${alias}: no releases yet`;
  const live = liveRelease(entries)?.id;
  const target = previousRelease(entries)?.id;
  const shown = last > 0 ? entries.slice(-last) : entries;
  // A verify line carries its release's id: the marks go on the release line only.
  const rows = shown.map((e) => [
    e.kind === "verify" ? "" : e.id === live ? "*" : e.id === target ? "<" : "",
    e.id,
    e.kind,
    e.status,
    e.time.replace("T", " ").replace(/\.\d+Z$/, "Z"),
    shortImage(e["image-ref"]),
    e["git-sha"]?.slice(0, 12) ?? "",
    e.version ?? "",
    e.actor,
    [
      e.kind === "verify" ? `smoke ${e.smoke ?? "?"}${e.watch ? `, watch ${e.watch}` : ""}` : "",
      e.target ? `back to ${e.target}` : "",
      e.backup ? `backup ${e.backup}` : "",
      e["migration-applied"] ? "migrated" : "",
      e.reason && e.reason.length > 90 ? `${e.reason.slice(0, 89)}…` : (e.reason ?? ""),
    ]
      .filter(Boolean)
      .join("; "),
  ]);
  const head = `${alias}: ${entries.length} entr${entries.length === 1 ? "y" : "ies"}${shown.length < entries.length ? ` (newest ${shown.length} shown)` : ""}; live ${live ?? "none"}${target ? `, rollback target ${target}` : ""}`;
  return `${head}\n${table(["", "id", "kind", "status", "time", "image", "git sha", "version", "actor", "notes"], rows)}`;
}

/** name@sha256:<12 hex>: enough to tell images apart in a table; --json has the full ref. */
function shortImage(ref: string): string {
  return ref.replace(/@sha256:([0-9a-f]{12})[0-9a-f]{52}$/, "@sha256:$1");
}
