import type { Config, Environment } from "../config/schema.js";
import { ConfigError, DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { redact } from "../core/secrets.js";
import type { SummarySection } from "../core/summary.js";
import { announce } from "../deploy/announce.js";
import type { SshSecrets } from "../deploy/hosts.js";
import { type HeldLockRecord, type LockStateStore, withLockedEnvironment } from "../deploy/operation.js";
import {
  checkImageRef,
  checkRegistry,
  type DeployResult,
  deployRelease,
  type RegistryCredentials,
  type RollbackResult,
  rollbackRelease,
} from "../deploy/release.js";
import { hostSections } from "../deploy/summary.js";
import { type DeploymentState, reportDeploymentStatus } from "../github/deployments.js";
import type { Outcome } from "../github/notify.js";
import { recordRelease } from "../github/records.js";
import { type MigrateReport, migrateOnFirstHost } from "../migrate/action-flow.js";
import { migrateSections } from "../migrate/summary.js";
import { appendLedger, type LedgerEntry } from "../release/ledger.js";
import { digestOf, type ReleaseRecord } from "../release/promotion.js";
import { runSmokeTests, type SmokeOptions, type SmokeOutcome, smokeOptions } from "../smoke/run.js";
import { smokeFailureMessage, smokeSections } from "../smoke/summary.js";
import { type WatchOutcome, watchFailureMessage, watchRelease } from "../smoke/watch.js";
import type { Remote } from "../ssh/types.js";

export interface PipelineRequest {
  configFile: string;
  environment: string;
  imageRef: string;
  gitSha?: string;
  version?: string;
  secrets: SshSecrets;
  registry?: RegistryCredentials;
  /** Production: refuse to migrate without a verified backup. */
  requireBackup: boolean;
  actor: string;
  runUrl?: string;
  /** Report deployment statuses on the job's own GitHub Deployment. */
  github?: { token: string; baseUrl?: string };
  /** Where the lock token is kept for a cleanup step. */
  lockState?: LockStateStore;
  /** The watch window's clock; tests pass one that does not wait. */
  clock?: { now: () => number; sleep: (ms: number) => Promise<void> };
  log: Log;
}

export interface Phase {
  name: string;
  ms: number;
  result: string;
}

export interface PipelineResult {
  releaseId: string;
  imageRef: string;
  rolledBack: boolean;
  url: string;
  phases: Phase[];
  config?: Config;
  migrate?: MigrateReport;
  deploy?: DeployResult;
  smoke?: SmokeOutcome;
  smokeFrom?: string;
  rollback?: RollbackResult;
  watch?: WatchOutcome;
  /** The verdict recorded in the ledger and on GitHub (absent when nothing was deployed). */
  record?: ReleaseRecord;
  error?: Error;
}

/** Production's rule: a migration runs only after a backup that is configured and required. */
export function withRequiredBackup(env: Environment): Environment {
  const m = env.migrate;
  if (!m) return env;
  if (!m.backup) {
    throw new ConfigError(
      "require-backup is true but this environment's migrate section has no backup: no backup, no migration.",
      {
        hint: "Add migrate.backup (service and database-env) for this environment in deploy-kit.yml, or set require-backup: false.",
      },
    );
  }
  return { ...env, migrate: { ...m, backup: { ...m.backup, required: true } } };
}

async function phase<T>(
  phases: Phase[],
  name: string,
  fn: () => Promise<T>,
  describe: (r: T) => string,
): Promise<T> {
  const start = Date.now();
  try {
    const r = await fn();
    phases.push({ name, ms: Date.now() - start, result: describe(r) });
    return r;
  } catch (e) {
    phases.push({ name, ms: Date.now() - start, result: `failed: ${(e as Error).message.split("\n")[0]}` });
    throw e;
  }
}

/**
 * The whole deploy in one process and one SSH connection per host, under one lock:
 * migrate (backup first) -> deploy (health-gated) -> smoke (expecting the deployed sha) ->
 * on smoke failure, the previous release back. Never throws for a deploy failure: the error
 * is in the result, so the caller can still set outputs and write the summary.
 */
export async function runPipeline(req: PipelineRequest): Promise<PipelineResult> {
  const { log } = req;
  const phases: Phase[] = [];
  const result: PipelineResult = {
    releaseId: "",
    imageRef: req.imageRef,
    rolledBack: false,
    url: "",
    phases,
  };
  let deploymentId: number | undefined;
  const status = async (state: DeploymentState, description: string) => {
    if (!req.github) return;
    deploymentId = await reportDeploymentStatus(
      {
        token: req.github.token,
        baseUrl: req.github.baseUrl,
        state,
        environment: req.environment,
        // GitHub created the job's deployment for the run's commit (GITHUB_SHA), which differs
        // from the deployed image's commit when production promotes a squash-merged change.
        logUrl: req.runUrl,
        environmentUrl: result.url || undefined,
        description,
        deploymentId,
      },
      log,
    );
  };
  await status("in_progress", `deploying ${req.imageRef}`);
  try {
    // Migrations run before the deploy step would check these: a bad image-ref must fail before
    // any host is touched, not after the schema changed for an image that cannot be deployed.
    checkImageRef(req.imageRef);
    checkRegistry(req.registry);
    await withLockedEnvironment(
      {
        configFile: req.configFile,
        environment: req.environment,
        secrets: req.secrets,
        log,
        state: req.lockState,
      },
      async ({ config, env: configured, compose, remotes }) => {
        result.config = config;
        result.url = configured.url ?? "";
        const env = req.requireBackup ? withRequiredBackup(configured) : configured;
        const context = {
          config,
          env,
          compose,
          registry: req.registry,
          actor: req.actor,
          runUrl: req.runUrl,
          log,
        };

        if (env.migrate) {
          const report = await phase(
            phases,
            "migrate",
            async () => {
              const r = await migrateOnFirstHost(
                {
                  config,
                  environment: req.environment,
                  env,
                  remote: remotes[0]!,
                  compose,
                  imageRef: req.imageRef,
                  login: req.registry,
                  dryRun: false,
                  gitSha: req.gitSha,
                  actor: req.actor,
                  runUrl: req.runUrl,
                  holdsLock: true,
                },
                log,
              );
              result.migrate = r;
              if (r.error) throw r.error;
              return r;
            },
            (r) =>
              r.outcome?.backup
                ? `applied after backup ${r.outcome.backup.path}`
                : r.outcome?.applied
                  ? "applied (no backup configured)"
                  : "nothing to run",
          );
          log.info(`migrations: ${report.outcome?.applied ? "applied" : "none"} on ${report.host}`);
        }

        const deployed = await phase(
          phases,
          "deploy",
          async () => {
            const r = await deployRelease(remotes, {
              ...context,
              imageRef: req.imageRef,
              gitSha: req.gitSha,
              version: req.version,
            });
            result.deploy = r;
            result.releaseId = r.releaseId;
            result.imageRef = r.imageRef;
            result.rolledBack = r.rolledBack;
            if (r.error) throw r.error;
            return r;
          },
          (r) => `release ${r.releaseId} on ${r.hosts.length} host(s)`,
        );

        if (!env.smoke) {
          log.warn(
            "No smoke checks for this environment: the health gate passed, but nothing proved the new version answers. Add a `smoke:` section with version-field.",
          );
          // No verify line: a deploy line without one already reads as unverified, never promotable.
          return;
        }
        let smokeOpts: SmokeOptions | undefined;
        const smoke = await phase(
          phases,
          "smoke",
          () => {
            smokeOpts = smokeOptions(env, {
              expectVersion: req.gitSha,
              remote: env.smoke?.from === "host" ? remotes[0] : undefined,
            });
            return runSmokeTests(smokeOpts, log);
          },
          (o) => (o.passed ? `${o.results.length} check(s) passed` : "FAILED"),
        );
        result.smoke = smoke;
        result.smokeFrom = env.smoke.from === "host" ? `host ${remotes[0]!.alias}` : "runner";
        let failure = smoke.passed ? "" : smokeFailureMessage(smoke);
        let failedWhat = "its smoke test";
        const w = env.smoke.watch;
        if (smoke.passed && w) {
          // smoke.from host: every host is watched over its own session, so a bad host is named.
          const targets =
            env.smoke.from === "host"
              ? remotes.map((r) => ({ name: r.alias, smoke: { ...smokeOpts!, remote: r } }))
              : [{ name: "runner", smoke: smokeOpts! }];
          const watched = await phase(
            phases,
            "watch",
            () =>
              log.group(`Watch ${Math.round(w.duration / 1000)} s`, () =>
                watchRelease(
                  targets,
                  {
                    durationMs: w.duration,
                    intervalMs: w.interval,
                    maxFailureRatio: w["max-failure-ratio"],
                    maxLatencyMs: w["max-latency"],
                    minProbes: w["min-probes"],
                  },
                  log,
                  req.clock,
                ),
              ),
            (o) => (o.passed ? `${o.rounds} round(s) within bounds` : "FAILED"),
          );
          result.watch = watched;
          if (!watched.passed) {
            failure = `Watch window: ${watchFailureMessage(watched)}`;
            failedWhat = "its watch window";
          }
        }
        // The verdict goes into the ledger before any rollback, so the ledger reads in order.
        await recordVerdict(remotes, env.path, result, req, smoke.passed ? "passed" : "failed", failure);
        if (!failure) return;

        if (!env.rollback["on-failure"]) {
          throw new DeployError(
            `Release ${deployed.releaseId} is live but failed ${failedWhat}.\n${failure}`,
            {
              hint: "rollback.on-failure is off: run the rollback action to put the previous release back.",
            },
          );
        }
        if (!deployed.previousReleaseId) {
          throw new DeployError(
            `Release ${deployed.releaseId} failed ${failedWhat} and there is no earlier release to roll back to; it stays live.\n${failure}`,
            { hint: "Fix the release and deploy again." },
          );
        }
        log.error(
          `${failedWhat === "its smoke test" ? "SMOKE TEST FAILED" : "WATCH WINDOW FAILED"}: rolling back ${deployed.releaseId} to ${deployed.previousReleaseId}.\n${failure}`,
        );
        const back = await phase(
          phases,
          "rollback",
          async () => {
            const r = await rollbackRelease(remotes, { ...context, to: deployed.previousReleaseId });
            result.rollback = r;
            if (r.error) throw r.error;
            return r;
          },
          (r) => `${r.targetReleaseId} back as ${r.releaseId}`,
        );
        result.rolledBack = true;
        result.releaseId = back.releaseId;
        result.imageRef = back.imageRef;
        throw new DeployError(
          `Release ${deployed.releaseId} failed ${failedWhat} and was ROLLED BACK: the hosts serve ${back.targetReleaseId} (${back.imageRef}) again.\n${failure}`,
          {
            hint:
              failedWhat === "its smoke test"
                ? "Look at the failed checks above; a version mismatch means the new release did not take traffic."
                : "The release passed its smoke test, then failed while watched: the table names the host and the last failure; its logs are on the host.",
          },
        );
      },
    );
  } catch (e) {
    result.error = e as Error;
  }

  const outcome: Outcome = result.error ? (result.rolledBack ? "rolled-back" : "failure") : "success";
  await status(outcome === "success" ? "success" : "failure", outcomeLine(result, req));
  result.record = releaseRecord(result, req);
  if (result.record && req.github) {
    await recordRelease(
      { token: req.github.token, baseUrl: req.github.baseUrl, environmentUrl: result.url || undefined },
      result.record,
      log,
    );
  }
  if (result.config) {
    await announce(result.config, log, {
      event: "deploy",
      outcome,
      environment: req.environment,
      version: req.version,
      sha: req.gitSha,
      imageRef: result.imageRef,
      releaseId: result.releaseId || undefined,
      actor: req.actor,
      runUrl: req.runUrl,
      url: result.url || undefined,
      reason: result.error ? redact(result.error.message.split("\n")[0]!) : undefined,
    });
  }
  return result;
}

/** The verdict on the release this run deployed, once the run is over; none when nothing was deployed. */
export function releaseRecord(r: PipelineResult, req: PipelineRequest): ReleaseRecord | undefined {
  const d = r.deploy;
  if (!d?.releaseId) return undefined;
  const smoke: ReleaseRecord["smoke"] = r.smoke
    ? r.smoke.passed
      ? "passed"
      : "failed"
    : d.error
      ? "not-run"
      : "skipped";
  const outcome: ReleaseRecord["outcome"] = r.error
    ? r.rolledBack
      ? "rolled-back"
      : "failed"
    : smoke === "skipped"
      ? "unverified"
      : "passed";
  // What this run deployed (after a rollback the result names what serves instead).
  const deployed = digestOf(req.imageRef) ? req.imageRef : d.imageRef;
  const hosts = Object.fromEntries(d.hosts.filter((h) => h.digest).map((h) => [h.alias, h.digest!]));
  return {
    environment: req.environment,
    "release-id": d.releaseId,
    "image-ref": deployed,
    digest: digestOf(deployed) ?? digestOf(d.imageRef) ?? "",
    "git-sha": req.gitSha ?? null,
    outcome,
    smoke,
    ...(r.watch ? { watch: r.watch.passed ? ("passed" as const) : ("failed" as const) } : {}),
    time: new Date().toISOString(),
    serving: r.imageRef,
    ...(Object.keys(hosts).length ? { hosts } : {}),
    // The record leaves for GitHub: no secret a host printed may ride along in the reason.
    ...(r.error ? { reason: redact(r.error.message.split("\n")[0]!).slice(0, 300) } : {}),
    "run-url": req.runUrl ?? null,
  };
}

/**
 * Append the smoke verdict to every host's ledger (kind verify, the release's id): the record
 * the CLI promotes from. A host that cannot be written is a warning: its record is missing, so
 * promotion from it refuses rather than trusts.
 */
async function recordVerdict(
  remotes: readonly Remote[],
  path: string,
  r: PipelineResult,
  req: PipelineRequest,
  smoke: "passed" | "failed",
  failure = "",
): Promise<void> {
  const d = r.deploy!;
  const digests = Object.fromEntries(d.hosts.filter((h) => h.digest).map((h) => [h.alias, h.digest!]));
  const entry: LedgerEntry = {
    id: d.releaseId,
    kind: "verify",
    "image-ref": d.imageRef,
    "git-sha": req.gitSha ?? null,
    version: req.version ?? null,
    time: new Date().toISOString(),
    actor: req.actor,
    "run-url": req.runUrl ?? null,
    // A smoke test that passed followed by a watch window that did not is a failed release.
    status: smoke === "failed" || failure ? "failed" : "succeeded",
    backup: null,
    "migration-applied": null,
    smoke,
    ...(r.watch ? { watch: r.watch.passed ? ("passed" as const) : ("failed" as const) } : {}),
    ...(Object.keys(digests).length ? { digests } : {}),
    ...(failure ? { reason: failure.split("\n")[0]!.slice(0, 300) } : {}),
  };
  await Promise.all(
    remotes.map((remote) =>
      appendLedger(remote, path, entry).catch((e) =>
        req.log.warn(
          `${remote.alias}: could not record the smoke verdict (${smoke}) of ${d.releaseId} in the ledger: ${(e as Error).message.split("\n")[0]}. \`deploy-kit promote\` will not promote it from this host.`,
        ),
      ),
    ),
  );
}

function outcomeLine(r: PipelineResult, req: PipelineRequest): string {
  if (!r.error) return `release ${r.releaseId} live on ${req.environment}`;
  return r.rolledBack ? `failed; rolled back (${r.releaseId})` : "failed";
}

export function pipelineTitle(r: PipelineResult, environment: string): string {
  if (!r.error) return `deploy-kit: release ${r.releaseId} is live on ${environment}`;
  return r.rolledBack
    ? `deploy-kit: deploy to ${environment} FAILED and was rolled back`
    : `deploy-kit: deploy to ${environment} FAILED`;
}

/** One summary telling the whole story: phases with timings, then each phase's own table. */
export function pipelineSections(r: PipelineResult): SummarySection[] {
  const sections: SummarySection[] = [
    {
      lines: [
        `Image \`${r.imageRef}\`${r.url ? `, ${r.url}` : ""}${r.rolledBack ? " — **rolled back to the previous release**" : ""}`,
      ],
    },
    {
      table: {
        headers: ["phase", "duration", "result"],
        rows: r.phases.map((p) => [p.name, `${(p.ms / 1000).toFixed(1)} s`, p.result]),
      },
    },
  ];
  if (r.migrate) sections.push({ heading: "Migrations" }, ...migrateSections(r.migrate));
  if (r.deploy) sections.push({ heading: "Hosts" }, ...hostSections(r.deploy.hosts));
  if (r.smoke)
    sections.push({ heading: "Smoke test" }, ...smokeSections(r.smoke, { from: r.smokeFrom ?? "runner" }));
  if (r.watch)
    sections.push(
      { heading: `Watch window (${r.watch.rounds} round(s), ${Math.round(r.watch.elapsedMs / 1000)} s)` },
      {
        table: {
          headers: ["target", "probes", "failed", "p95 latency", "result"],
          rows: r.watch.targets.map((t) => [
            t.target,
            t.probes,
            t.failures,
            t.p95Ms === null ? "-" : `${t.p95Ms} ms`,
            t.breach ? `**${t.breach}**` : "within bounds",
          ]),
        },
      },
    );
  if (r.rollback) sections.push({ heading: "Rollback" }, ...hostSections(r.rollback.hosts));
  if (r.record) {
    const hosts = Object.entries(r.record.hosts ?? {}).map(([alias, digest]) => `${alias}: ${digest}`);
    sections.push(
      { heading: "Recorded" },
      {
        lines: [
          `Release ${r.record["release-id"]}: **${r.record.outcome}** (smoke ${r.record.smoke}), digest \`${r.record.digest}\`${hosts.length ? `; running digest read on ${hosts.join(", ")}` : ""}. ${r.record.outcome === "passed" ? "It can be promoted." : "It will not be promoted."}`,
        ],
      },
    );
  }
  if (r.error) sections.push({ heading: "What went wrong", code: { text: r.error.message } });
  return sections;
}

export type { HeldLockRecord };
