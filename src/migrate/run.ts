import type { ComposeProject } from "../commands/compose.js";
import { backupStamp } from "../commands/postgres.js";
import type { Environment } from "../config/schema.js";
import { ConfigError, DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import type { Remote } from "../ssh/types.js";
import { type BackupResult, describeVerification, restoreCommand, takeBackup } from "./backup.js";
import { oneOffScript, TIMED_OUT } from "./commands.js";

export interface MigrateContext {
  app: string;
  env: Environment;
  /** The first host: migrations run once per environment. */
  remote: Remote;
  /** The new release's compose project, its services pinned to the new image (see stageMigration). */
  compose: ComposeProject;
  /** Names the backup file and the one-off container: a short git SHA or the release id. */
  label: string;
  dryRun?: boolean;
  now?: () => Date;
}

export interface MigrateOutcome {
  /** False when the environment has no `migrate` section. */
  configured: boolean;
  applied: boolean;
  backup?: BackupResult;
  /** dry-run: what plan-command printed. */
  plan?: string;
  durationMs: number;
}

/** A migration that exited non-zero: carries what the ledger and the summary need. */
export class MigrationFailed extends DeployError {
  override name = "MigrationFailed";
  constructor(
    message: string,
    readonly details: { exitCode: number; outputTail: string; backup?: BackupResult; command: string },
    opts: { hint?: string; host?: string },
  ) {
    super(message, opts);
  }
}

/** A required backup could not be taken: nothing was migrated. */
export class BackupFailed extends DeployError {
  override name = "BackupFailed";
}

const TAIL_LINES = 30;

/** The service migrations run in: migrate.service, else the first service deploy-kit sets the image of. */
export function migrateService(env: Environment): string {
  return env.migrate?.service ?? env.compose.service[0]!;
}

/**
 * Backup (when configured), then the migration command in a one-off container of the NEW image,
 * on one host. Does not take the deploy lock or write the ledger: the caller (the migrate action,
 * or the all-in-one deploy holding its lock across migrate and deploy) does both.
 */
export async function runMigrations(ctx: MigrateContext, log: Log): Promise<MigrateOutcome> {
  const started = Date.now();
  const m = ctx.env.migrate;
  if (!m) {
    log.info("No `migrate` section for this environment: nothing to run.");
    return { configured: false, applied: false, durationMs: 0 };
  }
  const now = ctx.now ?? (() => new Date());
  const service = migrateService(ctx.env);
  const name = (kind: string) => `${ctx.app}-${kind}-${backupStamp(now()).toLowerCase()}`;

  if (ctx.dryRun) {
    const planCommand = m["plan-command"];
    if (!planCommand) {
      throw new ConfigError("dry-run needs migrate.plan-command, which this environment does not set.", {
        hint: "Add e.g. `plan-command: alembic upgrade head --sql` under migrate in deploy-kit.yml.",
      });
    }
    const r = await oneOff(
      ctx,
      log,
      { service, command: planCommand, name: name("plan"), timeoutMs: m.timeout },
      "Migration plan (dry-run)",
    );
    if (r.exitCode !== 0) throw failure(ctx, r, planCommand, undefined, "The migration plan command");
    return { configured: true, applied: false, plan: r.stdout.trimEnd(), durationMs: Date.now() - started };
  }

  let backup: BackupResult | undefined;
  if (m.backup) {
    const b = m.backup;
    backup = await log.group(`Backup database (service ${b.service}) on ${ctx.remote.alias}`, async () => {
      try {
        const res = await takeBackup(
          { remote: ctx.remote, path: ctx.env.path, compose: ctx.compose, backup: b },
          { label: ctx.label, now: now(), timeoutMs: m.timeout },
          log,
        );
        log.info(
          `backup ${res.path}: ${res.bytes} bytes, ${res.entries} entries (${describeVerification(res)})`,
        );
        return res;
      } catch (e) {
        if (b.required) {
          throw new BackupFailed(
            `No backup, no migration: the database backup on ${ctx.remote.alias} failed, so the migration did not run and the running release is untouched.\n${(e as Error).message}`,
            { host: ctx.remote.alias, hint: (e as { hint?: string }).hint, cause: e },
          );
        }
        log.warn(
          `The database backup failed on ${ctx.remote.alias}; migrating without one because backup.required is false.\n${(e as Error).message}`,
        );
        return undefined;
      }
    });
  }

  const r = await oneOff(
    ctx,
    log,
    { service, command: m.command, name: name("migrate"), timeoutMs: m.timeout },
    "Migrate",
  );
  if (r.exitCode !== 0) throw failure(ctx, r, m.command, backup, "The migration");
  log.info(`migration applied in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { configured: true, applied: true, backup, durationMs: Date.now() - started };
}

interface OneOffResult {
  exitCode: number;
  stdout: string;
  tail: string[];
  timedOut: boolean;
}

async function oneOff(
  ctx: MigrateContext,
  log: Log,
  o: { service: string; command: string; name: string; timeoutMs: number },
  title: string,
): Promise<OneOffResult> {
  return log.group(`${title}: \`${o.command}\` in service ${o.service} on ${ctx.remote.alias}`, async () => {
    const tail: string[] = [];
    const res = await ctx.remote.run({
      what: `${o.command} (compose run ${o.service})`,
      script: oneOffScript(ctx.compose, o),
      // The host's timeout(1) stops it first; this only catches a host without one.
      timeoutMs: o.timeoutMs + 60_000,
      allowFailure: true,
      onLine: (l) => {
        log.info(l);
        tail.push(l);
        if (tail.length > TAIL_LINES) tail.shift();
      },
    });
    return { exitCode: res.exitCode, stdout: res.stdout, tail, timedOut: res.exitCode === TIMED_OUT };
  });
}

function failure(
  ctx: MigrateContext,
  r: OneOffResult,
  command: string,
  backup: BackupResult | undefined,
  what: string,
): MigrationFailed {
  const how = r.timedOut
    ? `timed out after ${Math.round(ctx.env.migrate!.timeout / 1000)} s`
    : `exited ${r.exitCode}`;
  const output = r.tail.length ? `\nLast output:\n${r.tail.map((l) => `  | ${l}`).join("\n")}` : "";
  const restore = backup
    ? `The backup taken before it is ${backup.path} on ${ctx.remote.alias}. If the migration left the database half-changed, restore it on the host with:\n  ${restoreCommand({ path: ctx.env.path, compose: ctx.compose, backup: ctx.env.migrate!.backup! }, backup.path)}`
    : "No backup was taken (none configured).";
  return new MigrationFailed(
    `${what} \`${command}\` ${how} on ${ctx.remote.alias}. The running release is untouched.${output}`,
    { exitCode: r.exitCode, outputTail: r.tail.join("\n"), backup, command },
    {
      host: ctx.remote.alias,
      hint: `${r.timedOut ? "Raise migrate.timeout if the migration needs longer, or fix it; " : "Fix the migration and deploy again; "}${restore}`,
    },
  );
}
