import { imageForSha } from "../build/build-image.js";
import { shaTag } from "../build/plan.js";
import { parseDuration } from "../config/duration.js";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../core/errors.js";
import { type LedgerEntry, readLedger } from "../release/ledger.js";
import {
  checkSoak,
  choosePromotion,
  formatAge,
  recordsFromLedger,
  servingFromLedger,
} from "../release/promotion.js";
import { headSha } from "./git.js";
import { registryCredentials, withHosts } from "./remote.js";
import type { CliContext, FlagSpec } from "./types.js";
import { UsageError } from "./types.js";

export const IMAGE_FLAGS: Record<string, FlagSpec> = {
  image: {
    type: "string",
    value: "REF",
    description: "image to deploy (name@sha256:...; default: the image built for --git-sha)",
  },
  "git-sha": {
    type: "string",
    value: "SHA",
    description: "the commit deployed; smoke checks expect it (default: git rev-parse HEAD)",
  },
  "insecure-registry": {
    type: "boolean",
    description: "the registry speaks plain HTTP (private address), for looking the image up",
  },
  from: {
    type: "string",
    value: "ENV",
    description: "promote: deploy what passed on ENV (its hosts' ledger), never a registry tag",
  },
  release: {
    type: "string",
    value: "ID|SHA|DIGEST",
    description: "with --from: the release id, commit or digest that passed (default: what ENV serves)",
  },
  "min-soak": {
    type: "string",
    value: "DURATION",
    description: "with --from: refuse until it has been passing on ENV this long (e.g. 24h)",
  },
};

/**
 * Promotion from `from`'s hosts' ledgers: the records of the first host (where migrations run),
 * what it serves now, held to the same rules as the production workflow. Hosts that serve
 * different images are named: the first host's answer is used.
 */
export function promotionFromLedgers(
  ledgers: { alias: string; entries: LedgerEntry[] }[],
  opts: { from: string; select?: string; minSoakMs: number; now: number },
): ChosenImage & { warnings: string[] } {
  const first = ledgers[0]!;
  const serving = ledgers.map((l) => `${l.alias}: ${servingFromLedger(l.entries) ?? "nothing"}`);
  const warnings =
    new Set(ledgers.map((l) => servingFromLedger(l.entries))).size > 1
      ? [
          `${opts.from}'s hosts serve different images (${serving.join("; ")}); reading ${first.alias}'s ledger.`,
        ]
      : [];
  const records = recordsFromLedger(first.entries, opts.from).map((r) => ({
    ...r,
    source: `${first.alias}'s ledger`,
  }));
  const p = choosePromotion(records, {
    from: opts.from,
    select: opts.select,
    serving: opts.select ? undefined : servingFromLedger(first.entries),
  });
  const soaked = checkSoak(p, { from: opts.from, minSoakMs: opts.minSoakMs, now: opts.now });
  const r = p.record;
  return {
    imageRef: r["image-ref"],
    gitSha: r["git-sha"] ?? undefined,
    source: `passed on ${opts.from} (${p.chosenBy}): release ${r["release-id"]}${r["git-sha"] ? ` of commit ${r["git-sha"].slice(0, 12)}` : ""}, passing since ${p.passedSince} (${formatAge(soaked)})`,
    warnings,
  };
}

/** The promotion flags, checked before anything connects: undefined when --from is not given. */
export function promotionFlags(ctx: CliContext): { from: string; minSoakMs: number } | undefined {
  const from = ctx.string("from");
  if (!from) {
    if (ctx.string("release") || ctx.string("min-soak"))
      throw new UsageError("--release and --min-soak choose what to promote: they need --from ENV");
    return undefined;
  }
  if (ctx.string("image"))
    throw new UsageError("--from and --image exclude each other: --from chooses the image");
  if (from === ctx.environment()) throw new UsageError(`--from ${from} is the environment being deployed`);
  const soak = ctx.string("min-soak");
  const minSoakMs = soak === undefined ? 0 : parseDuration(soak);
  if (minSoakMs === undefined) throw new UsageError(`--min-soak ${soak}: a duration such as 24h or 90m`);
  return { from, minSoakMs };
}

async function promoteFrom(
  ctx: CliContext,
  { from, minSoakMs }: { from: string; minSoakMs: number },
): Promise<ChosenImage> {
  const ledgers = await withHosts(
    ctx,
    ({ env, remotes }) =>
      Promise.all(
        remotes.map(async (r) => ({ alias: r.alias, entries: await readLedger(r, env.path, ctx.log) })),
      ),
    { environment: from },
  );
  const chosen = promotionFromLedgers(ledgers, {
    from,
    select: ctx.string("release"),
    minSoakMs,
    now: Date.now(),
  });
  for (const w of chosen.warnings) ctx.log.warn(w);
  return { imageRef: chosen.imageRef, gitSha: chosen.gitSha, source: chosen.source };
}

export interface ChosenImage {
  imageRef: string;
  gitSha?: string;
  /** How it was chosen, for the plan. */
  source: string;
}

/**
 * What to deploy: --image as given, or the image build pushed for the commit (its sha-<12 hex>
 * tag, resolved to a digest in the registry), as production promotion does.
 */
export async function chooseImage(
  ctx: CliContext,
  config: Config,
  opts: { offline?: boolean } = {},
): Promise<ChosenImage> {
  const promotion = promotionFlags(ctx);
  if (promotion) return promoteFrom(ctx, promotion);
  const given = ctx.string("image");
  if (given) {
    const gitSha = ctx.string("git-sha");
    if (!gitSha)
      ctx.log.warn(
        "--image without --git-sha: the smoke checks' version-field cannot be compared with the deployed commit.",
      );
    return { imageRef: given, gitSha, source: "--image" };
  }
  const gitSha = ctx.string("git-sha") ?? (await headSha());
  const tagged = `${config.image.name}:${shaTag(gitSha)}`;
  if (opts.offline)
    return {
      imageRef: tagged,
      gitSha,
      source: `tag of commit ${gitSha.slice(0, 12)} (not resolved: --offline)`,
    };
  const ref = await imageForSha(config.image.name, gitSha, {
    insecure: ctx.bool("insecure-registry"),
    credentials: registryCredentials(ctx),
  });
  if (!ref) {
    throw new ConfigError(`No image was built for commit ${gitSha}: ${tagged} is not in the registry.`, {
      hint: "Run `deploy-kit build` first (or let CI build it), or pass --image REF.",
    });
  }
  return { imageRef: ref, gitSha, source: `built for commit ${gitSha.slice(0, 12)} (${tagged})` };
}
