import { DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { runUrl } from "../core/workspace.js";
import { DIGEST, type ReleaseRecord } from "../release/promotion.js";
import { client, explain, type GitHubTarget, RECORD_TASK } from "./deployments.js";

export { RECORD_TASK };

/**
 * Record a release's verdict on the environment's GitHub Deployments: a deployment with the
 * record as payload and a `success` (passed) or `failure` status. A record that cannot be written
 * is a warning that says what it costs: without it, the release cannot be promoted.
 */
export async function recordRelease(
  target: GitHubTarget & { environmentUrl?: string },
  record: ReleaseRecord,
  log: Log,
): Promise<number | undefined> {
  try {
    const { octokit, owner, repo } = client(target, log);
    // The run's own commit always exists in the repository; the promoted release's commit (in
    // the payload) may live only on a staging branch that a squash merge left behind.
    const ref = process.env.GITHUB_SHA || record["git-sha"];
    if (!ref) throw new Error("no commit to attach it to (git-sha and GITHUB_SHA are empty)");
    const { data } = await octokit.rest.repos.createDeployment({
      owner,
      repo,
      ref,
      environment: record.environment,
      task: RECORD_TASK,
      payload: record as unknown as Record<string, unknown>,
      // A record is not a deploy request: never merge branches, never wait for commit statuses.
      auto_merge: false,
      required_contexts: [],
      transient_environment: false,
      description: `${record.outcome}: ${record["release-id"]} ${record.digest}`.slice(0, 140),
    });
    const id = (data as { id?: number }).id;
    if (typeof id !== "number")
      throw new Error(`GitHub did not create the deployment: ${JSON.stringify(data)}`);
    const logUrl = record["run-url"] || runUrl();
    await octokit.rest.repos.createDeploymentStatus({
      owner,
      repo,
      deployment_id: id,
      state: record.outcome === "passed" ? "success" : "failure",
      ...(logUrl ? { log_url: logUrl } : {}),
      ...(target.environmentUrl ? { environment_url: target.environmentUrl } : {}),
      description: `${record.outcome}${record.reason ? `: ${record.reason}` : ""}`.slice(0, 140),
      // The job's own deployment stays the environment's active one.
      auto_inactive: false,
    });
    log.info(
      `Recorded on GitHub (deployment ${id}, ${record.environment}): ${record.outcome} ${record.digest}`,
    );
    return id;
  } catch (e) {
    log.warn(
      `Could not record release ${record["release-id"]} (${record.outcome}) on GitHub: ${explain(e)}. ${record.outcome === "passed" ? "Without this record the production pipeline will not promote it." : ""}`.trim(),
    );
    return undefined;
  }
}

function asRecord(payload: unknown, environment: string, id: number): ReleaseRecord | undefined {
  let p = payload;
  if (typeof p === "string") {
    try {
      p = JSON.parse(p);
    } catch {
      return undefined;
    }
  }
  const r = p as Partial<ReleaseRecord> | null;
  if (
    !r ||
    typeof r !== "object" ||
    typeof r["release-id"] !== "string" ||
    typeof r["image-ref"] !== "string" ||
    typeof r.digest !== "string" ||
    !DIGEST.test(r.digest) ||
    typeof r.time !== "string" ||
    !["passed", "failed", "rolled-back", "unverified"].includes(r.outcome as string)
  )
    return undefined;
  // The environment is the one GitHub filed it under, whatever the payload says.
  return {
    ...(r as ReleaseRecord),
    environment,
    serving: typeof r.serving === "string" ? r.serving : r["image-ref"],
    source: `GitHub deployment ${id}`,
  };
}

/** The environment's records, oldest first (the newest 100). */
export async function readRecords(
  target: GitHubTarget & { environment: string },
  log: Log,
): Promise<ReleaseRecord[]> {
  const { octokit, owner, repo } = client(target, log);
  try {
    const { data } = await octokit.rest.repos.listDeployments({
      owner,
      repo,
      environment: target.environment,
      task: RECORD_TASK,
      per_page: 100,
    });
    const out: ReleaseRecord[] = [];
    for (const d of data) {
      const r = asRecord(d.payload, target.environment, d.id);
      if (r) out.push(r);
      else log.debug(`GitHub deployment ${d.id} has no deploy-kit record in its payload; ignored`);
    }
    // GitHub lists newest first; ties in time keep that order reversed.
    return out.reverse().sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  } catch (e) {
    throw new DeployError(
      `Could not read the records of environment "${target.environment}" from GitHub: ${explain(e, "deployments: read")}.`,
      { hint: "The job reading records needs `permissions: deployments: read` and the repository's token." },
    );
  }
}

export interface EnvironmentProtection {
  exists: boolean;
  /** Logins and team slugs of the required reviewers; empty: nobody approves. */
  reviewers: string[];
  waitTimerMinutes?: number;
}

/** Does the GitHub Environment exist, and who must approve a job that names it? */
export async function environmentProtection(
  target: GitHubTarget & { environment: string },
  log: Log,
): Promise<EnvironmentProtection> {
  const { octokit, owner, repo } = client(target, log);
  try {
    const { data } = await octokit.rest.repos.getEnvironment({
      owner,
      repo,
      environment_name: target.environment,
    });
    const reviewers: string[] = [];
    let waitTimerMinutes: number | undefined;
    for (const rule of data.protection_rules ?? []) {
      const r = rule as {
        type: string;
        wait_timer?: number;
        reviewers?: { type?: string; reviewer?: { login?: string; slug?: string; name?: string } }[];
      };
      if (r.type === "required_reviewers")
        for (const x of r.reviewers ?? []) {
          const who = x.reviewer?.login ?? x.reviewer?.slug ?? x.reviewer?.name;
          if (who) reviewers.push(x.type === "Team" ? `team ${who}` : who);
        }
      if (r.type === "wait_timer") waitTimerMinutes = r.wait_timer;
    }
    return { exists: true, reviewers, waitTimerMinutes };
  } catch (e) {
    if ((e as { status?: number }).status === 404) return { exists: false, reviewers: [] };
    throw new DeployError(
      `Could not read the protection rules of GitHub Environment "${target.environment}": ${explain(e, "actions: read")}.`,
      { hint: "The job that checks the approval gate needs `permissions: actions: read`." },
    );
  }
}

export interface Comparison {
  commits: { sha: string; title: string; author: string }[];
  total: number;
  /** Changed files with their patch (GitHub omits the patch of very large diffs). */
  files: { filename: string; status: string; patch?: string }[];
  url: string;
}

/** The commits and changed files between two commits (`base...head`). */
export async function compareCommits(
  target: GitHubTarget & { base: string; head: string },
  log: Log,
): Promise<Comparison> {
  const { octokit, owner, repo } = client(target, log);
  const { data } = await octokit.rest.repos.compareCommitsWithBasehead({
    owner,
    repo,
    basehead: `${target.base}...${target.head}`,
    per_page: 100,
  });
  return {
    commits: data.commits.map((c) => ({
      sha: c.sha,
      title: (c.commit.message.split("\n")[0] ?? "").slice(0, 120),
      author: c.author?.login ?? c.commit.author?.name ?? "",
    })),
    total: data.total_commits,
    files: (data.files ?? []).map((f) => ({ filename: f.filename, status: f.status, patch: f.patch })),
    url: data.html_url,
  };
}
