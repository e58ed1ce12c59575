import { ConfigError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import type { SummarySection } from "../core/summary.js";
import type { GitHubTarget } from "../github/deployments.js";
import {
  type Comparison,
  compareCommits,
  type EnvironmentProtection,
  environmentProtection,
  readRecords,
} from "../github/records.js";
import {
  checkSoak,
  choosePromotion,
  formatAge,
  type Promotion,
  type ReleaseRecord,
} from "../release/promotion.js";

/** Why an environment without reviewers is refused, and what to do: said once, for deploys and rollbacks. */
export function noReviewersMessage(environment: string, protection: EnvironmentProtection): ConfigError {
  const what = protection.exists
    ? `GitHub Environment "${environment}" has no required reviewers`
    : `There is no GitHub Environment "${environment}" (GitHub creates it, unprotected, on first use)`;
  return new ConfigError(
    `${what}: nothing would hold this job for approval, so it was stopped before any secret was used.`,
    {
      hint: [
        `Add required reviewers: Settings → Environments → ${environment} → Required reviewers.`,
        "GitHub offers required reviewers on public repositories with every plan, but on private and internal repositories only with GitHub Enterprise: on Free, Pro and Team the setting does not exist there, and the approval gate silently does not either.",
        "Options: make the repository public, move it to an Enterprise organization, or gate production another way (only a protected branch with required pull-request reviews can start this workflow) and then set `unsafe-deploy-without-approval: true` on the caller to accept deploys that nobody approves at run time.",
      ].join(" "),
    },
  );
}

/** The approval gate must exist: required reviewers on the target Environment, or an explicit opt-out. */
export async function checkApprovalGate(
  target: GitHubTarget & { environment: string; unsafeWithoutApproval: boolean },
  log: Log,
): Promise<EnvironmentProtection> {
  const protection = await environmentProtection(target, log);
  if (protection.reviewers.length) {
    log.info(`${target.environment} is approved by: ${protection.reviewers.join(", ")}`);
    return protection;
  }
  const refusal = noReviewersMessage(target.environment, protection);
  if (!target.unsafeWithoutApproval) throw refusal;
  log.warn(
    `${refusal.message.replace(", so it was stopped before any secret was used", "")}; going on because unsafe-deploy-without-approval is true.`,
  );
  return protection;
}

export interface PromotionRequest {
  github: GitHubTarget;
  /** The environment whose records say what passed (staging). */
  from: string;
  /** The environment to promote to (production). */
  to: string;
  /** A release id, commit or digest; empty: what `from` serves now. */
  select?: string;
  minSoakMs: number;
  unsafeWithoutApproval: boolean;
  /** Files whose changes the reviewer must see (the compose file, deploy-kit.yml). */
  watchFiles: string[];
  now?: number;
}

export interface PromotionPlan {
  from: string;
  to: string;
  promotion: Promotion;
  soakedMs: number;
  minSoakMs: number;
  approval: EnvironmentProtection;
  /** What `to` serves now, by its records. */
  live?: ReleaseRecord;
  comparison?: Comparison;
  /** Why the comparison is missing, when it is. */
  comparisonNote?: string;
  watchFiles: string[];
}

/**
 * Everything a reviewer needs before approving, and the refusals that make approval moot: the
 * approval gate exists, the image passed on `from` (by its records, never a registry tag), it
 * soaked long enough; then what changes against what `to` serves now.
 */
export async function planPromotion(req: PromotionRequest, log: Log): Promise<PromotionPlan> {
  const approval = await checkApprovalGate(
    { ...req.github, environment: req.to, unsafeWithoutApproval: req.unsafeWithoutApproval },
    log,
  );
  const records = await readRecords({ ...req.github, environment: req.from }, log);
  const promotion = choosePromotion(records, { from: req.from, select: req.select });
  const soakedMs = checkSoak(promotion, {
    from: req.from,
    minSoakMs: req.minSoakMs,
    now: req.now ?? Date.now(),
  });
  log.info(
    `promoting ${promotion.record["image-ref"]}: ${promotion.chosenBy}, release ${promotion.record["release-id"]} passed on ${req.from} at ${promotion.passedSince}`,
  );
  const targetRecords = await readRecords({ ...req.github, environment: req.to }, log);
  const newest = targetRecords.at(-1);
  const live = newest
    ? (targetRecords.findLast((r) => r["image-ref"] === newest.serving || r.digest === newest.serving) ??
      newest)
    : undefined;
  const plan: PromotionPlan = {
    from: req.from,
    to: req.to,
    promotion,
    soakedMs,
    minSoakMs: req.minSoakMs,
    approval,
    live,
    watchFiles: req.watchFiles,
  };
  const head = promotion.record["git-sha"];
  const base = live?.["git-sha"];
  if (!head || !base) {
    plan.comparisonNote = !base
      ? `${req.to} has no record of a release yet: this is its first promoted release.`
      : "The promoted release has no git SHA recorded.";
  } else if (base === head) {
    plan.comparisonNote = `${req.to} already runs commit ${head.slice(0, 12)}.`;
  } else {
    try {
      plan.comparison = await compareCommits({ ...req.github, base, head }, log);
    } catch (e) {
      plan.comparisonNote = `Could not compare ${base.slice(0, 12)}...${head.slice(0, 12)}: ${(e as Error).message.split("\n")[0]}`;
      log.warn(plan.comparisonNote);
    }
  }
  return plan;
}

/** The reviewer's page: what is promoted and from where, then what changes. */
export function promotionSections(p: PromotionPlan): SummarySection[] {
  const r = p.promotion.record;
  const sections: SummarySection[] = [
    {
      table: {
        headers: ["", ""],
        rows: [
          ["image", `\`${r["image-ref"]}\``],
          ["digest", `\`${r.digest}\``],
          ["chosen by", p.promotion.chosenBy],
          [`${p.from} release`, `${r["release-id"]}${r["run-url"] ? ` ([run](${r["run-url"]}))` : ""}`],
          ["commit", r["git-sha"] ?? "not recorded"],
          ["passed", `${p.promotion.passedSince} (smoke ${r.smoke}; ${r.source ?? "record"})`],
          ["soaked", `${formatAge(p.soakedMs)}${p.minSoakMs ? ` (min-soak ${formatAge(p.minSoakMs)})` : ""}`],
          ...Object.entries(r.hosts ?? {}).map(([alias, d]) => [`running on ${alias}`, `\`${d}\``]),
          [
            `${p.to} now`,
            p.live
              ? `${p.live["release-id"]}, commit ${p.live["git-sha"]?.slice(0, 12) ?? "?"}, \`${p.live.digest}\``
              : "nothing recorded",
          ],
          [
            "approved by",
            p.approval.reviewers.length
              ? p.approval.reviewers.join(", ")
              : "**nobody: unsafe-deploy-without-approval is true**",
          ],
        ],
      },
    },
  ];
  const c = p.comparison;
  sections.push({ heading: `Commits since ${p.to}'s live release` });
  if (!c) sections.push({ lines: [p.comparisonNote ?? ""] });
  else {
    sections.push({
      lines: [
        `${c.total} commit(s), [compare](${c.url})${c.total > c.commits.length ? `; the first ${c.commits.length} shown` : ""}:`,
      ],
    });
    sections.push({
      table: {
        headers: ["commit", "title", "author"],
        rows: c.commits.map((x) => [x.sha.slice(0, 12), x.title, x.author]),
      },
    });
    const watched = c.files.filter((f) => p.watchFiles.includes(f.filename));
    sections.push({ heading: "Compose and configuration changes" });
    if (!watched.length) sections.push({ lines: [`No change to ${p.watchFiles.join(" or ")}.`] });
    for (const f of watched) {
      sections.push({
        lines: [`\`${f.filename}\` (${f.status}):`],
        code: { text: f.patch ?? "(diff too large for the API: open the compare link)", lang: "diff" },
      });
    }
  }
  return sections;
}
