import { backupStamp } from "../commands/postgres.js";
import type { Config, Environment } from "../config/schema.js";
import type { Log } from "../core/log.js";
import type { ComposeSource } from "../deploy/compose-file.js";
import { newReleaseId } from "../release/ids.js";
import { appendLedger, readLedger } from "../release/ledger.js";
import { withLock } from "../release/lock.js";
import type { Remote } from "../ssh/types.js";
import { migrateLedgerEntry } from "./ledger.js";
import { BackupFailed, type MigrateOutcome, MigrationFailed, migrateService, runMigrations } from "./run.js";
import { stageMigration } from "./stage.js";

export interface MigrateRequest {
  config: Config;
  environment: string;
  env: Environment;
  /** The environment's first host: migrations run once per environment. */
  remote: Remote;
  compose: ComposeSource;
  imageRef: string;
  login?: { username: string; password: string };
  dryRun: boolean;
  gitSha?: string;
  actor: string;
  runUrl?: string;
  /** The caller already holds the deploy lock (the all-in-one deploy holds one lock across phases). */
  holdsLock?: boolean;
  /** The lock token, for a post step that releases it after a cancel. */
  onLock?: (token: string) => void;
  onUnlock?: () => void;
}

export interface MigrateReport {
  title: string;
  environment: string;
  host: string;
  imageRef: string;
  service: string;
  command: string;
  dryRun: boolean;
  outcome?: MigrateOutcome;
  /** The ledger entry written (not on dry-run). */
  ledgerId?: string;
  /** Set when it failed: the caller reports it after writing outputs and the summary. */
  error?: Error;
}

/**
 * The migrate action's whole flow on the first host, under the deploy lock: stage the new image,
 * back up, migrate, and record a `migrate` line in the ledger (success or failure) so deploy-ssh
 * and rollback know the backup and whether migrations applied.
 */
export async function migrateOnFirstHost(req: MigrateRequest, log: Log): Promise<MigrateReport> {
  const m = req.env.migrate!;
  const report: MigrateReport = {
    title: "",
    environment: req.environment,
    host: req.remote.alias,
    imageRef: req.imageRef,
    service: migrateService(req.env),
    command: req.dryRun ? (m["plan-command"] ?? "") : m.command,
    dryRun: req.dryRun,
  };
  const label =
    (req.gitSha && /^[0-9a-f]{7,}$/i.test(req.gitSha) ? req.gitSha.slice(0, 7) : undefined) ??
    /sha256:([0-9a-f]{7})/.exec(req.imageRef)?.[1] ??
    "";
  const lockOptions = {
    path: req.env.path,
    waitMs: req.env.lock.wait,
    leaseMs: req.env.lock.lease,
    log,
    onAcquired: (token: string) => req.onLock?.(token),
    onReleased: () => req.onUnlock?.(),
  };
  const locked = (fn: () => Promise<void>) =>
    req.holdsLock ? fn() : withLock([req.remote], lockOptions, fn);
  try {
    await locked(async () => {
      const compose = await log.group(`Prepare ${req.remote.alias}`, () =>
        stageMigration(
          req.remote,
          {
            app: req.config.app,
            env: req.env,
            compose: req.compose,
            imageRef: req.imageRef,
            login: req.login,
          },
          log,
        ),
      );
      const ledger = req.dryRun ? [] : await readLedger(req.remote, req.env.path, log);
      const id = newReleaseId({ gitSha: req.gitSha, taken: ledger.map((e) => e.id) });
      const base = {
        id,
        "image-ref": req.imageRef,
        "git-sha": req.gitSha ?? null,
        version: null,
        time: new Date().toISOString(),
        actor: req.actor,
        "run-url": req.runUrl ?? null,
      };
      try {
        report.outcome = await runMigrations(
          {
            app: req.config.app,
            env: req.env,
            remote: req.remote,
            compose,
            label: label || backupStamp(new Date()),
            dryRun: req.dryRun,
          },
          log,
        );
      } catch (e) {
        if (!req.dryRun && (e instanceof MigrationFailed || e instanceof BackupFailed)) {
          const entry = migrateLedgerEntry(
            base,
            e instanceof MigrationFailed ? { failed: e } : { backupFailed: e },
          );
          await appendLedger(req.remote, req.env.path, entry).catch((le) =>
            log.warn(`could not record the failed migration in the ledger: ${(le as Error).message}`),
          );
          report.ledgerId = id;
          if (e instanceof MigrationFailed && e.details.backup) {
            report.outcome = { configured: true, applied: false, backup: e.details.backup, durationMs: 0 };
          }
        }
        throw e;
      }
      if (!req.dryRun) {
        await appendLedger(req.remote, req.env.path, migrateLedgerEntry(base, { outcome: report.outcome }));
        report.ledgerId = id;
      }
    });
  } catch (e) {
    report.error = e as Error;
  }
  report.title = req.dryRun
    ? `deploy-kit: migration plan for ${req.environment}${report.error ? " failed" : ""}`
    : report.error
      ? `deploy-kit: migration failed on ${req.environment}`
      : `deploy-kit: migrations applied on ${req.environment}`;
  return report;
}
