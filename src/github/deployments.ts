import { Octokit } from "@octokit/rest";
import type { Log } from "../core/log.js";
import { registerSecret } from "../core/secrets.js";
import { runUrl } from "../core/workspace.js";

/**
 * The task of the deployments deploy-kit creates to hold a record. The deployment GitHub creates
 * for a job's `environment:` has an empty payload fixed at creation and statuses carry none, so
 * the record is a deployment of its own in the same environment, found again by this task.
 */
export const RECORD_TASK = "deploy-kit:record";

/** The deployment states deploy-kit reports (a subset of what the Deployments API accepts). */
export type DeploymentState = "in_progress" | "success" | "failure" | "error" | "inactive";

export interface GitHubTarget {
  /** A token with `deployments: write` (the job's GITHUB_TOKEN is enough). */
  token: string;
  /** owner/name; default GITHUB_REPOSITORY. */
  repository?: string;
  /** REST API root; default GITHUB_API_URL (GitHub Enterprise Server), else api.github.com. */
  baseUrl?: string;
}

export interface StatusReport extends GitHubTarget {
  state: DeploymentState;
  /** The GitHub environment name of the job (what `environment:` names). */
  environment: string;
  /** The commit the deployment is for; default GITHUB_SHA. */
  sha?: string;
  /** The run (or job) page: the "View logs" link of the deployment; default this run's URL. */
  logUrl?: string;
  /** The deployed app's URL: the "View deployment" link. */
  environmentUrl?: string;
  /** One line shown beside the status (the API keeps at most 140 characters). */
  description?: string;
  /** The deployment to report on, when already known (a previous call returned it). */
  deploymentId?: number;
  /** Match the deployment created for this run; default GITHUB_RUN_ID. */
  runId?: string;
}

export function client(t: GitHubTarget, log: Log): { octokit: Octokit; owner: string; repo: string } {
  registerSecret(t.token);
  const repository = t.repository || process.env.GITHUB_REPOSITORY || "";
  const [owner, repo, ...rest] = repository.split("/");
  if (!owner || !repo || rest.length) {
    throw new Error(`"${repository}" is not an owner/name repository (GITHUB_REPOSITORY is not set?)`);
  }
  const octokit = new Octokit({
    auth: t.token,
    baseUrl: (t.baseUrl || process.env.GITHUB_API_URL || "https://api.github.com").replace(/\/+$/, ""),
    userAgent: "deploy-kit",
    // Octokit's own notices go to debug, through the redacting Log, never to the console.
    log: {
      debug: () => {},
      info: () => {},
      warn: (m: string) => log.debug(m),
      error: (m: string) => log.debug(m),
    },
  });
  return { octokit, owner, repo };
}

/** Why a GitHub call failed, in words that say what to change; never the token or headers. */
export function explain(e: unknown, permission = "deployments: write"): string {
  const status = (e as { status?: number }).status;
  const message = e instanceof Error ? (e.message.split("\n")[0] ?? "") : String(e);
  if (status === 401) return "the token was refused (401): pass a valid github-token";
  if (status === 403 || status === 404) {
    return `HTTP ${status} (${message}): the job needs \`permissions: ${permission}\` and the token must belong to this repository`;
  }
  return status ? `HTTP ${status} (${message})` : message;
}

// Deployments that Actions creates for a job carry statuses whose log_url/target_url is the run page.
function belongsToRun(urls: (string | null | undefined)[], runId: string | undefined): boolean {
  if (!runId) return false;
  const needle = `/actions/runs/${runId}`;
  return urls.some((u) => !!u && (u.endsWith(needle) || u.includes(`${needle}/`)));
}

const UNFINISHED = new Set(["queued", "pending", "in_progress", "waiting"]);

/**
 * The deployment GitHub created for this job's `environment:`. deploy-kit never creates a second
 * one inside Actions: it lists the deployments for the sha and environment (newest first), takes
 * the one whose statuses link to this run, else the newest one still in flight.
 */
export async function findJobDeployment(
  opts: GitHubTarget & { environment: string; sha?: string; runId?: string },
  log: Log,
): Promise<number | undefined> {
  const { octokit, owner, repo } = client(opts, log);
  const sha = opts.sha || process.env.GITHUB_SHA;
  const runId = opts.runId || process.env.GITHUB_RUN_ID;
  const { data: deployments } = await octokit.rest.repos.listDeployments({
    owner,
    repo,
    environment: opts.environment,
    ...(sha ? { sha } : {}),
    per_page: 10,
  });
  let inFlight: number | undefined;
  for (const d of deployments) {
    if (d.task === RECORD_TASK) continue; // a record deploy-kit wrote, never a job's deployment
    const { data: statuses } = await octokit.rest.repos.listDeploymentStatuses({
      owner,
      repo,
      deployment_id: d.id,
      per_page: 10,
    });
    if (
      belongsToRun(
        statuses.flatMap((s) => [s.log_url, s.target_url]),
        runId,
      )
    )
      return d.id;
    if (inFlight === undefined && (statuses.length === 0 || UNFINISHED.has(statuses[0]!.state)))
      inFlight = d.id;
  }
  return inFlight;
}

/**
 * Set a status on the deployment of this job (found with findJobDeployment unless `deploymentId`
 * is given). Reporting is a courtesy: any failure is a warning, never a failed deploy.
 * Returns the deployment id so later calls skip the lookup.
 */
export async function reportDeploymentStatus(report: StatusReport, log: Log): Promise<number | undefined> {
  try {
    const id =
      report.deploymentId ??
      (await findJobDeployment(
        {
          token: report.token,
          repository: report.repository,
          baseUrl: report.baseUrl,
          environment: report.environment,
          sha: report.sha,
          runId: report.runId,
        },
        log,
      ));
    if (id === undefined) {
      log.warn(
        `No GitHub deployment found for environment "${report.environment}" at ${report.sha || process.env.GITHUB_SHA || "this commit"}: deployment status "${report.state}" not reported. Set \`environment:\` on the job so GitHub creates one.`,
      );
      return undefined;
    }
    const { octokit, owner, repo } = client(report, log);
    const logUrl = report.logUrl ?? runUrl();
    await octokit.rest.repos.createDeploymentStatus({
      owner,
      repo,
      deployment_id: id,
      state: report.state,
      ...(logUrl ? { log_url: logUrl } : {}),
      ...(report.environmentUrl ? { environment_url: report.environmentUrl } : {}),
      ...(report.description ? { description: report.description.slice(0, 140) } : {}),
      // A successful deploy makes the environment's earlier deployments inactive.
      auto_inactive: report.state === "success",
    });
    log.info(`GitHub deployment ${id} (${report.environment}): ${report.state}`);
    return id;
  } catch (e) {
    log.warn(`Could not report deployment status "${report.state}" to GitHub: ${explain(e)}`);
    return report.deploymentId;
  }
}
