import { type ComposeBin, type ComposeProject, composeUpScript, imageOverride } from "../commands/compose.js";
import {
  imageInfoScript,
  parseImageInfo,
  parseRunningImages,
  pruneImagesScript,
  pullImageScript,
  repositoryOf,
  runningImagesScript,
  startContainersScript,
  stopServicesScript,
} from "../commands/docker.js";
import { colorProject } from "../commands/proxy.js";
import {
  activateReleaseScript,
  copyReleaseScript,
  pruneReleaseDirsScript,
  releaseExistsScript,
  statePaths,
} from "../commands/release.js";
import type { Config, Environment } from "../config/schema.js";
import { ConfigError, ConnectionLostError, DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { registerSecret } from "../core/secrets.js";
import { checkRestore, restoreBackup } from "../migrate/backup.js";
import { checkRollbackDatabase, migrationFor, rollbackDatabasePlan } from "../migrate/ledger.js";
import { newReleaseId } from "../release/ids.js";
import {
  appendLedger,
  findRelease,
  imagesToKeep,
  isRelease,
  type LedgerEntry,
  lastGoodRelease,
  previousRelease,
  readLedger,
} from "../release/ledger.js";
import type { Remote } from "../ssh/types.js";
import { releaseOnIdleColor } from "./blue-green.js";
import type { ComposeSource } from "./compose-file.js";
import { waitHealthy } from "./health.js";
import { checkHost } from "./preflight.js";

export interface RegistryCredentials {
  username: string;
  password: string;
}

/** What every release operation needs to know, whatever front end calls it. */
export interface ReleaseContext {
  config: Config;
  env: Environment;
  compose: ComposeSource;
  /** Log in on the host for the pull (temporary DOCKER_CONFIG); absent: the host's own login. */
  registry?: RegistryCredentials;
  /** GitHub actor or user@machine. */
  actor: string;
  runUrl?: string;
  log: Log;
}

export interface DeployRequest extends ReleaseContext {
  /** name@sha256:... (a tag is accepted and pinned to the digest the host pulled). */
  imageRef: string;
  gitSha?: string;
  version?: string;
  /** Set by a caller that needs the id earlier (the all-in-one deploy names its backup after it). */
  releaseId?: string;
  backup?: string | null;
  migrationApplied?: boolean | null;
}

export type HostOutcome = "deployed" | "rolled-back" | "failed" | "rollback-failed" | "skipped";

export interface HostResult {
  alias: string;
  release: string;
  "image-ref": string;
  "duration-s": number;
  outcome: HostOutcome;
  /** The release that was live before (deploy) or replaced (rollback). */
  previous?: string;
  /** The digest this host's service containers were read to run after the switch. */
  digest?: string;
  error?: string;
}

export interface DeployResult {
  releaseId: string;
  previousReleaseId?: string;
  imageRef: string;
  hosts: HostResult[];
  rolledBack: boolean;
  /** Set when the deploy failed; the caller reports it after setting its outputs. */
  error?: Error;
}

const IMAGE_REF =
  /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;
const COMPOSE_UP_TIMEOUT = 15 * 60_000;

export function checkImageRef(ref: string): void {
  if (!IMAGE_REF.test(ref)) {
    throw new ConfigError(`image-ref "${ref}" is not an image reference.`, {
      hint: "Pass the image-ref output of build-image (name@sha256:...).",
    });
  }
}

export function checkRegistry(r?: RegistryCredentials): void {
  if (!r) return;
  registerSecret(r.password);
  if (!r.username || !r.password) {
    throw new ConfigError("registry-username and registry-password go together; only one was given.", {
      hint: "Pass both (e.g. github.actor and secrets.GITHUB_TOKEN for GHCR), or neither to use the server's own docker login.",
    });
  }
}

/** Per-host state of one run. */
interface HostRun {
  remote: Remote;
  bin: ComposeBin;
  ledger: LedgerEntry[];
  started: number;
  result: HostResult;
  /** The host's containers were switched in this run: a failure must be rolled back. */
  touched: boolean;
}

function project(ctx: ReleaseContext, bin: ComposeBin): ComposeProject {
  return {
    bin,
    project: ctx.config.app,
    dir: ctx.env.path,
    files: [ctx.compose.name, ".deploy-kit/override.yml"],
  };
}

function batchSize(parallel: number | string, hosts: number): number {
  if (typeof parallel === "number") return Math.max(1, parallel);
  return Math.max(1, Math.ceil((hosts * Number(parallel.replace("%", ""))) / 100));
}

/** Run `fn` over `items`, `size` at a time; stop starting new ones after the first failure. */
async function inBatches<T>(
  items: T[],
  size: number,
  fn: (item: T) => Promise<void>,
): Promise<Error | undefined> {
  for (let i = 0; i < items.length; i += size) {
    const settled = await Promise.allSettled(items.slice(i, i + size).map(fn));
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) return (failed as PromiseRejectedResult).reason as Error;
  }
  return undefined;
}

const elapsed = (run: HostRun) => Math.round((Date.now() - run.started) / 100) / 10;

/** Check every host and read its ledger before anything changes anywhere. */
async function preflight(remotes: readonly Remote[], ctx: ReleaseContext): Promise<HostRun[]> {
  return ctx.log.group("Preflight", async () => {
    const runs = await Promise.all(
      remotes.map(async (remote): Promise<HostRun> => {
        const [check, ledger] = await Promise.all([
          checkHost(remote, ctx.env),
          readLedger(remote, ctx.env.path, ctx.log),
        ]);
        for (const w of check.warnings) ctx.log.warn(`${remote.alias}: ${w}`);
        if (check.problems.length) {
          throw new ConfigError(`${remote.alias} is not ready for a deploy; nothing was changed.`, {
            problems: check.problems.map((m) => ({ path: remote.alias, message: m })),
            hint: "Prepare the host (see the problems above), or run validate-config with check-remote: true to see every host's state.",
          });
        }
        ctx.log.info(
          `${remote.alias}: ${check.notes.join(", ")}; ${ledger.length} ledger entr${ledger.length === 1 ? "y" : "ies"}`,
        );
        return {
          remote,
          bin: check.compose!,
          ledger,
          started: Date.now(),
          touched: false,
          result: { alias: remote.alias, release: "", "image-ref": "", "duration-s": 0, outcome: "skipped" },
        };
      }),
    );
    return runs;
  });
}

/**
 * Make sure the image is on the host; returns its ID and pinned ref. A digest names one image
 * forever, so a host holding it skips the pull; a tag moves, so it is always pulled (the copy
 * on the host may be a stale build of the same tag).
 */
async function ensureImage(
  remote: Remote,
  imageRef: string,
  registry: RegistryCredentials | undefined,
  log: Log,
): Promise<{ id: string; pinned: string }> {
  const inspect = () =>
    remote.run({ what: `inspect ${imageRef}`, script: imageInfoScript(imageRef), allowFailure: true });
  const byDigest = imageRef.includes("@sha256:");
  let info = await inspect();
  if (!byDigest || info.exitCode !== 0) {
    const t = Date.now();
    await remote.run({
      what: `pull ${imageRef}`,
      // The host's own deadline ends the pull first, so its credentials are removed by the script.
      script: pullImageScript(
        imageRef,
        registry ? { username: registry.username } : undefined,
        COMPOSE_UP_TIMEOUT / 1000 - 15,
      ),
      stdin: registry ? registry.password : undefined,
      timeoutMs: COMPOSE_UP_TIMEOUT,
      hint: registry
        ? "Check registry-username/registry-password (they need read access to the image) and that the host reaches the registry."
        : "The host pulls with its own docker login: pass registry-username/registry-password for a private image, and check that the host reaches the registry.",
    });
    log.info(`${remote.alias}: pulled ${imageRef} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    info = await inspect();
    if (info.exitCode !== 0)
      throw new DeployError(`${remote.alias}: ${imageRef} is not on the host after the pull.`, {
        host: remote.alias,
      });
  }
  const { id, repoDigests } = parseImageInfo(info.stdout);
  if (byDigest) return { id, pinned: imageRef };
  // A tag was given: pin the digest this host actually pulled.
  const repo = repositoryOf(imageRef);
  const pinned = repoDigests.find((d) => d.startsWith(`${repo}@`));
  if (!pinned) {
    throw new DeployError(
      `${remote.alias}: cannot pin ${imageRef} to a digest (the engine knows none for it).`,
      {
        host: remote.alias,
        hint: "Deploy an image pushed to a registry, by the image-ref build-image outputs (name@sha256:...).",
      },
    );
  }
  return { id, pinned };
}

/** Point the deploy path at a release's files, `compose up`, and hold it to the health gate. */
async function switchAndWait(
  run: HostRun,
  ctx: ReleaseContext,
  releaseId: string,
  imageId: string,
  what: string,
): Promise<void> {
  await run.remote.run({ what, script: activateReleaseScript(ctx.env.path, releaseId, ctx.compose.name) });
  await composeUp(run, ctx);
  await waitHealthy(run.remote, {
    project: ctx.config.app,
    services: ctx.env.compose.service,
    imageId,
    timeoutMs: ctx.env.health.timeout,
    intervalMs: ctx.env.health.interval,
    log: ctx.log,
  });
}

async function composeUp(run: HostRun, ctx: ReleaseContext): Promise<void> {
  await run.remote.run({
    what: "docker compose up",
    script: composeUpScript(project(ctx, run.bin)),
    timeoutMs: COMPOSE_UP_TIMEOUT,
    onLine: (l) => ctx.log.debug(`[${run.remote.alias}] ${l}`),
    hint: "Compose could not start the release; its error is above. The compose file and the operator's .env on the host must work together.",
  });
}

/**
 * Read what the service containers run after the switch and hold it to the approved digest: the
 * health gate knows the image by its local ID, this proves by the registry digest that every
 * container runs exactly the image that was approved (and nothing left over from before).
 */
async function checkRunningDigest(run: HostRun, ctx: ReleaseContext, pinned: string, project: string) {
  const want = /sha256:[0-9a-f]{64}/.exec(pinned)?.[0];
  if (!want) return undefined;
  const res = await run.remote.run({
    what: "read the running image digests",
    script: runningImagesScript(project, ctx.env.compose.service),
  });
  const running = parseRunningImages(res.stdout);
  const wrong = running.filter((c) => !c.repoDigests.some((d) => d.endsWith(`@${want}`)));
  const missing = ctx.env.compose.service.filter((s) => !running.some((c) => c.service === s));
  if (wrong.length || missing.length) {
    const what = [
      ...wrong.map(
        (c) =>
          `${c.service} container ${c.container.slice(0, 12)} runs ${c.repoDigests.join(", ") || c.imageId}`,
      ),
      ...missing.map((s) => `no running container of ${s}`),
    ].join("; ");
    throw new DeployError(
      `${run.remote.alias}: the running containers are not the approved image ${want}: ${what}.`,
      {
        host: run.remote.alias,
        hint: "Something on the host replaced or kept containers outside this deploy (another compose project of the same name, a manual docker run, a watchtower-like updater): find it and stop it.",
      },
    );
  }
  run.result.digest = want;
  return want;
}

function entry(
  ctx: ReleaseContext,
  fields: Pick<LedgerEntry, "id" | "kind" | "image-ref" | "status"> & Partial<LedgerEntry>,
): LedgerEntry {
  return {
    "git-sha": null,
    version: null,
    time: new Date().toISOString(),
    actor: ctx.actor,
    "run-url": ctx.runUrl ?? null,
    backup: null,
    "migration-applied": null,
    ...fields,
  };
}

async function record(run: HostRun, ctx: ReleaseContext, e: LedgerEntry): Promise<void> {
  await appendLedger(run.remote, ctx.env.path, e);
  run.ledger.push(e);
}

/** Write a release's files on the host and switch compose to it. */
async function deployHost(run: HostRun, req: DeployRequest, releaseId: string): Promise<void> {
  const { remote } = run;
  const paths = statePaths(req.env.path);
  run.result.previous = lastGoodRelease(run.ledger)?.id;
  const { id: imageId, pinned } = await ensureImage(remote, req.imageRef, req.registry, req.log);
  run.result["image-ref"] = pinned;
  const dir = paths.release(releaseId);
  await remote.upload(`${dir}/${req.compose.name}`, req.compose.content, 0o644);
  await remote.upload(
    `${dir}/override.yml`,
    imageOverride(req.env.compose.service, pinned, req.compose.version),
    0o644,
  );
  const base = {
    id: releaseId,
    kind: "deploy" as const,
    "image-ref": pinned,
    "git-sha": req.gitSha ?? null,
    version: req.version ?? null,
    backup: req.backup ?? null,
    "migration-applied": req.migrationApplied ?? null,
  };
  run.touched = true;
  // strategy: blue-green (blue-green.ts): the release starts beside the live one, then the proxy switches.
  if (req.env.strategy === "blue-green") {
    const color = await releaseOnIdleColor(run, req, {
      base,
      imageId,
      record: (f) => record(run, req, entry(req, f)),
    });
    // A mismatch here fails the host: deployRelease rolls back what this run switched.
    await checkRunningDigest(run, req, pinned, colorProject(req.config.app, color));
    return;
  }
  try {
    await switchAndWait(run, req, releaseId, imageId, "switch to the new release files");
    await checkRunningDigest(run, req, pinned, req.config.app);
  } catch (e) {
    await record(run, req, entry(req, { ...base, status: "failed", reason: oneLine(e) })).catch((le) =>
      req.log.warn(`${remote.alias}: could not record the failed release: ${(le as Error).message}`),
    );
    throw e;
  }
  await record(run, req, entry(req, { ...base, status: "succeeded" }));
}

/**
 * A lost connection says what the host was left running: only this run knows whether it had
 * begun to switch the host when the connection went.
 */
function withHostState(e: unknown, run: HostRun, release: string): unknown {
  if (!(e instanceof ConnectionLostError)) return e;
  const alias = run.remote.alias;
  const before = lastGoodRelease(run.ledger)?.id;
  return e.withState(
    run.touched
      ? `${alias} was being switched to release ${release}, so it may run the new containers with no ledger line for them; when it answers again, see what serves with \`deploy-kit releases\` and put the last good release${before ? ` (${before})` : ""} back with \`deploy-kit rollback\`.`
      : `Nothing on ${alias} was switched: ${before ? `release ${before}` : "what it served before"} keeps serving.`,
  );
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 300);
}

/**
 * Put `target` back on a host as a new release `newId` (a copy of its stored files), then hold it
 * to the same health gate. Records a rollback line either way.
 */
async function restoreHost(
  run: HostRun,
  ctx: ReleaseContext,
  target: LedgerEntry,
  newId: string,
  why: { replaces?: string; reason?: string },
): Promise<void> {
  const { remote } = run;
  const { id: imageId, pinned } = await ensureImage(remote, target["image-ref"], ctx.registry, ctx.log);
  const stored = await remote.run({
    what: "look for the stored release files",
    script: releaseExistsScript(ctx.env.path, target.id, ctx.compose.name),
  });
  if (stored.stdout.trim() === "yes") {
    await remote.run({
      what: `copy release ${target.id}`,
      script: copyReleaseScript(ctx.env.path, target.id, newId),
    });
  } else {
    // Files pruned or written by an older version: the live compose file with the target's image.
    ctx.log.warn(
      `${remote.alias}: release ${target.id} has no stored compose file; using the current one with its image.`,
    );
    const dir = statePaths(ctx.env.path).release(newId);
    await remote.upload(`${dir}/${ctx.compose.name}`, ctx.compose.content, 0o644);
    await remote.upload(
      `${dir}/override.yml`,
      imageOverride(ctx.env.compose.service, pinned, ctx.compose.version),
    );
  }
  const base = {
    id: newId,
    kind: "rollback" as const,
    "image-ref": target["image-ref"],
    "git-sha": target["git-sha"],
    version: target.version,
    target: target.id,
    ...(why.replaces ? { replaces: why.replaces } : {}),
  };
  run.touched = true;
  // strategy: blue-green (blue-green.ts): the target starts as the idle color (or is still warm there).
  if (ctx.env.strategy === "blue-green") {
    const ok = { status: "succeeded" as const, ...(why.reason ? { reason: why.reason } : {}) };
    await releaseOnIdleColor(run, ctx, {
      base,
      imageId,
      record: (f) => record(run, ctx, entry(ctx, f.status === "succeeded" ? { ...f, ...ok } : f)),
    });
    return;
  }
  try {
    await switchAndWait(run, ctx, newId, imageId, "switch to the rollback target's files");
  } catch (e) {
    await record(run, ctx, entry(ctx, { ...base, status: "failed", reason: oneLine(e) })).catch(() => {});
    throw e;
  }
  await record(
    run,
    ctx,
    entry(ctx, { ...base, status: "succeeded", ...(why.reason ? { reason: why.reason } : {}) }),
  );
}

/** Remove old images and release files, never the live one or its rollback target. */
async function pruneHost(run: HostRun, ctx: ReleaseContext): Promise<void> {
  const keep = ctx.env.rollback["keep-releases"];
  const live = run.ledger.findLast((e) => e.status === "succeeded" && isRelease(e));
  const target = previousRelease(run.ledger);
  const images = imagesToKeep(run.ledger, keep, [live?.["image-ref"], target?.["image-ref"]]);
  if (images.length === 0) return;
  const res = await run.remote.run({
    what: "prune old images",
    script: pruneImagesScript(ctx.config.image.name, images),
    allowFailure: true,
  });
  const removed = res.stdout.split("\n").filter((l) => l.startsWith("removed ")).length;
  const keepIds = run.ledger.filter((e) => images.includes(e["image-ref"])).map((e) => e.id);
  await run.remote.run({
    what: "prune old release files",
    script: pruneReleaseDirsScript(ctx.env.path, [
      ...new Set([...keepIds, ...run.ledger.slice(-10).map((e) => e.id)]),
    ]),
    allowFailure: true,
  });
  if (removed)
    ctx.log.info(`${run.remote.alias}: removed ${removed} old image reference(s), kept ${images.length}`);
}

/**
 * Deploy one image to the environment's hosts (the caller holds the lock and the connections):
 * `parallel` hosts at a time, fail-fast, each held to the health gate; on failure with
 * rollback.on-failure, every host this run switched goes back to its last good release.
 */
export async function deployRelease(
  remotes: readonly Remote[],
  request: DeployRequest,
): Promise<DeployResult> {
  let req = request;
  checkImageRef(req.imageRef);
  checkRegistry(req.registry);
  if (repositoryOf(req.imageRef) !== req.config.image.name) {
    req.log.warn(
      `image-ref ${req.imageRef} is not from image.name ${req.config.image.name}; old images of it will not be pruned.`,
    );
  }
  const runs = await preflight(remotes, req);
  const releaseId =
    req.releaseId ??
    newReleaseId({ gitSha: req.gitSha, taken: runs.flatMap((r) => r.ledger.map((e) => e.id)) });
  const previousReleaseId = lastGoodRelease(runs[0]!.ledger)?.id;
  // Migrations run once, on the first host, which records them in its ledger (kind "migrate"):
  // every host's entry for this release carries that backup path and outcome.
  if (req.backup === undefined && req.migrationApplied === undefined) {
    const m = migrationFor(runs[0]!.ledger, req.imageRef);
    req = { ...req, backup: m.backup, migrationApplied: m["migration-applied"] };
  }
  for (const r of runs) r.result.release = releaseId;
  req.log.info(
    `release ${releaseId}: ${req.imageRef}${previousReleaseId ? ` (previous ${previousReleaseId})` : " (first release)"}`,
  );

  const error = await req.log.group(`Deploy ${releaseId}`, () =>
    inBatches(runs, batchSize(req.env.parallel, runs.length), async (run) => {
      run.started = Date.now();
      try {
        await deployHost(run, req, releaseId);
        run.result.outcome = "deployed";
        req.log.info(`${run.remote.alias}: release ${releaseId} is live (${elapsed(run)} s)`);
      } catch (e) {
        const err = withHostState(e, run, releaseId);
        run.result.outcome = "failed";
        run.result.error = oneLine(err);
        throw err;
      } finally {
        run.result["duration-s"] = elapsed(run);
      }
    }),
  );

  let rolledBack = false;
  if (error && req.env.rollback["on-failure"]) {
    const touched = runs.filter((r) => r.touched);
    if (touched.length) {
      rolledBack = await req.log.group("Roll back", async () => {
        const rollbackId = newReleaseId({
          kind: "rollback",
          taken: runs.flatMap((r) => r.ledger.map((e) => e.id)),
        });
        let all = true;
        await Promise.all(
          touched.map(async (run) => {
            const target = lastGoodRelease(run.ledger.filter((e) => e.id !== releaseId));
            if (!target) {
              req.log.error(
                `${run.remote.alias}: no earlier good release to roll back to; the failed release stays.`,
              );
              run.result.outcome = run.result.outcome === "deployed" ? "deployed" : "failed";
              all = false;
              return;
            }
            try {
              await restoreHost(run, req, target, rollbackId, {
                replaces: releaseId,
                reason: `${releaseId} failed: ${oneLine(error)}`,
              });
              run.result.outcome = "rolled-back";
              run.result.release = rollbackId;
              run.result["image-ref"] = target["image-ref"];
              req.log.info(`${run.remote.alias}: rolled back to ${target.id} (${target["image-ref"]})`);
            } catch (e) {
              all = false;
              run.result.outcome = "rollback-failed";
              run.result.error = `${run.result.error ?? oneLine(error)}; rollback: ${oneLine(e)}`;
              req.log.error(`${run.remote.alias}: rollback to ${target.id} failed: ${oneLine(e)}`);
            } finally {
              run.result["duration-s"] = elapsed(run);
            }
          }),
        );
        return all;
      });
    }
  }
  if (!error) {
    await Promise.all(
      runs.map((r) =>
        pruneHost(r, req).catch((e) => req.log.warn(`${r.remote.alias}: prune: ${oneLine(e)}`)),
      ),
    );
  }
  const result: DeployResult = {
    releaseId,
    previousReleaseId,
    imageRef: runs[0]!.result["image-ref"] || req.imageRef,
    hosts: runs.map((r) => r.result),
    rolledBack,
  };
  if (error) {
    result.error = new DeployError(
      rolledBack
        ? `Release ${releaseId} failed and was rolled back; the hosts serve ${previousReleaseId ?? "the previous release"} again.\n${error.message}`
        : `Release ${releaseId} failed.\n${error.message}`,
      {
        host: (error as DeployError).host,
        hint: [
          (error as DeployError).hint,
          req.env.rollback["on-failure"]
            ? undefined
            : "rollback.on-failure is off: run the rollback action to restore the previous release.",
        ]
          .filter(Boolean)
          .join(" "),
        cause: error,
      },
    );
  }
  return result;
}

export interface RollbackRequest extends ReleaseContext {
  /** A release id or image reference from the ledger; default: the previous release. */
  to?: string;
  /**
   * Also restore the database backup taken before the first migration after the target (on the
   * first host, where migrations run). Destroys data written since: an explicit opt-in.
   */
  restoreBackup?: boolean;
  /** Must equal `<database>@<backup file name>` for restore-backup to go ahead. */
  confirmRestore?: string;
}

export interface RollbackResult {
  releaseId: string;
  targetReleaseId: string;
  imageRef: string;
  hosts: HostResult[];
  /** The release this rollback took off the first host: a record says it must not be promoted. */
  replaced?: LedgerEntry;
  /** restore-backup: the dump of the database taken just before the restore (kept on the first host). */
  safetyDump?: string;
  error?: Error;
}

/** Choose the rollback target on each host; refuse (changing nothing) when a host has none. */
export function chooseTargets(runs: { alias: string; ledger: LedgerEntry[] }[], to?: string): LedgerEntry[] {
  return runs.map((r) => {
    if (to) {
      try {
        return findRelease(r.ledger, to);
      } catch (e) {
        if (e instanceof ConfigError) throw new ConfigError(`${r.alias}: ${e.message}`, { hint: e.hint });
        throw e;
      }
    }
    const prev = previousRelease(r.ledger);
    if (!prev) {
      throw new ConfigError(
        `${r.alias}: the ledger has no earlier release to roll back to; nothing was changed.`,
        {
          hint: "Pass `to:` with a release id or image reference from the ledger, or deploy the version you want.",
        },
      );
    }
    return prev;
  });
}

/**
 * What rollback does about the database: with restore-backup, the backup the ledger names
 * (refused when there is none), checked before anything changes (verified, confirmation naming
 * the database and the file) and restored later by `restore`; without it, a warning when the
 * target predates migrations that stay applied.
 */
async function databaseStep(
  runs: HostRun[],
  target: LedgerEntry,
  req: RollbackRequest,
): Promise<((label: string) => Promise<string>) | undefined> {
  const first = runs[0]!;
  const plan = rollbackDatabasePlan(first.ledger, target);
  const file = checkRollbackDatabase(plan, target, req.restoreBackup ?? false, (m) => req.log.warn(m));
  if (!file) return undefined;
  const backup = req.env.migrate?.backup;
  if (!backup) {
    throw new ConfigError(
      "restore-backup: true needs migrate.backup in deploy-kit.yml (the database service to restore into).",
      {
        hint: "Add migrate.backup (service, database-env or database) for this environment, or roll back without restore-backup.",
      },
    );
  }
  const db = { remote: first.remote, path: req.env.path, compose: project(req, first.bin), backup, file };
  await req.log.group(`Check database backup ${file} on ${first.remote.alias}`, () =>
    checkRestore({ ...db, confirm: req.confirmRestore }, req.log),
  );
  // Writers stopped on every host, then the safety dump and the restore: every write up to the
  // stop is in the safety dump, and none lands between the dump and the restore.
  return async (label) => {
    const stopped = await Promise.all(
      runs.map(async (r) => {
        const res = await r.remote.run({
          what: "stop the app's containers for the restore",
          script: stopServicesScript(req.config.app, req.env.compose.service),
          onLine: (l) => req.log.info(`${r.remote.alias}: ${l}`),
        });
        return [...res.stdout.matchAll(/^stopped ([0-9a-f]+)$/gm)].map((m) => m[1]!);
      }),
    );
    try {
      const { safety } = await restoreBackup({ ...db, label, timeoutMs: req.env.migrate!.timeout }, req.log);
      return safety.path;
    } finally {
      // Restored or not (a failed restore changed nothing), the stopped containers serve again.
      await Promise.all(
        runs.map((r, i) =>
          r.remote
            .run({ what: "start the app's containers again", script: startContainersScript(stopped[i]!) })
            .catch((e) =>
              req.log.warn(`${r.remote.alias}: could not start the stopped containers: ${oneLine(e)}`),
            ),
        ),
      );
    }
  };
}

/** Put an earlier release back on every host of the environment (the caller holds the lock). */
export async function rollbackRelease(
  remotes: readonly Remote[],
  req: RollbackRequest,
): Promise<RollbackResult> {
  checkRegistry(req.registry);
  const runs = await preflight(remotes, req);
  const targets = chooseTargets(
    runs.map((r) => ({ alias: r.remote.alias, ledger: r.ledger })),
    req.to,
  );
  const database = await databaseStep(runs, targets[0]!, req);
  const distinct = new Set(targets.map((t) => t["image-ref"]));
  if (distinct.size > 1)
    req.log.warn(`the hosts' ledgers differ: rolling back to ${[...distinct].join(", ")}`);
  const newId = newReleaseId({ kind: "rollback", taken: runs.flatMap((r) => r.ledger.map((e) => e.id)) });
  runs.forEach((r, i) => {
    r.result.release = newId;
    r.result["image-ref"] = targets[i]!["image-ref"];
    r.result.previous = r.ledger.findLast(isRelease)?.id;
  });
  const error = await req.log.group(`Roll back to ${targets[0]!.id}`, () =>
    inBatches(runs, batchSize(req.env.parallel, runs.length), async (run) => {
      const target = targets[runs.indexOf(run)]!;
      run.started = Date.now();
      try {
        await restoreHost(run, req, target, newId, {
          replaces: run.result.previous,
          reason: "rollback requested",
        });
        run.result.outcome = "rolled-back";
        req.log.info(
          `${run.remote.alias}: ${target.id} (${target["image-ref"]}) is live again (${elapsed(run)} s)`,
        );
      } catch (e) {
        const err = withHostState(e, run, `${newId} (${target.id} again)`);
        run.result.outcome = "failed";
        run.result.error = oneLine(err);
        throw err;
      } finally {
        run.result["duration-s"] = elapsed(run);
      }
    }),
  );
  // The code goes back first, so what starts after the restore is the release the backup belongs to.
  let restoreError: Error | undefined;
  let safetyDump: string | undefined;
  if (!error && database) {
    try {
      safetyDump = await database(newId);
    } catch (e) {
      restoreError = e as Error;
    }
  }
  if (!error) {
    await Promise.all(
      runs.map((r) =>
        pruneHost(r, req).catch((e) => req.log.warn(`${r.remote.alias}: prune: ${oneLine(e)}`)),
      ),
    );
  }
  const replaced = runs[0]!.ledger.findLast((e) => isRelease(e) && e.id === runs[0]!.result.previous);
  if (restoreError) {
    return {
      releaseId: newId,
      targetReleaseId: targets[0]!.id,
      imageRef: targets[0]!["image-ref"],
      hosts: runs.map((r) => r.result),
      error: new DeployError(
        `Rollback ${newId}: the code of ${targets[0]!.id} is back, but the database was not restored.\n${restoreError.message}`,
        {
          host: (restoreError as DeployError).host,
          hint: (restoreError as DeployError).hint,
          cause: restoreError,
        },
      ),
    };
  }
  return {
    ...(safetyDump ? { safetyDump } : {}),
    releaseId: newId,
    targetReleaseId: targets[0]!.id,
    imageRef: targets[0]!["image-ref"],
    hosts: runs.map((r) => r.result),
    ...(replaced ? { replaced } : {}),
    error: error
      ? new DeployError(`Rollback ${newId} failed.\n${error.message}`, {
          host: (error as DeployError).host,
          hint: (error as DeployError).hint,
          cause: error,
        })
      : undefined,
  };
}
