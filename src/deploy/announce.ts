import type { Config } from "../config/schema.js";
import type { Log } from "../core/log.js";
import { redact } from "../core/secrets.js";
import { type DeployFacts, notify } from "../github/notify.js";
import type { DeployResult, ReleaseContext, RollbackResult } from "./release.js";

/**
 * Every path that changes a host (the all-in-one deploy, deploy-ssh, the rollback action and
 * workflow, `deploy-kit deploy` and `rollback`) tells the channels `notify:` names. Callers send it
 * after the lock is released, so a slow webhook holds nothing.
 */
export async function announce(config: Config, log: Log, facts: Omit<DeployFacts, "app">): Promise<void> {
  if (!config.notify) return;
  await notify({ notify: config.notify, app: config.app, ...facts }, log);
}

/** The facts of the operation's context every message carries. */
type Context = Pick<ReleaseContext, "env" | "actor" | "runUrl">;
const common = (ctx: Context, environment: string) => ({
  environment,
  actor: ctx.actor,
  runUrl: ctx.runUrl,
  url: ctx.env.url,
});
// A host may echo a secret into an error; a message to a chat never carries it.
const firstLine = (e?: Error) => (e ? redact(e.message.split("\n")[0]!) : undefined);

export function deployFacts(
  ctx: Context,
  environment: string,
  result: DeployResult,
  req: { gitSha?: string; version?: string },
): Omit<DeployFacts, "app"> {
  return {
    ...common(ctx, environment),
    event: "deploy",
    outcome: result.error ? (result.rolledBack ? "rolled-back" : "failure") : "success",
    version: req.version,
    sha: req.gitSha,
    imageRef: result.imageRef,
    releaseId: result.releaseId || undefined,
    reason: firstLine(result.error),
  };
}

export function rollbackFacts(
  ctx: Context,
  environment: string,
  result: RollbackResult,
): Omit<DeployFacts, "app"> {
  return {
    ...common(ctx, environment),
    event: "rollback",
    outcome: result.error ? "failure" : "success",
    imageRef: result.imageRef || undefined,
    releaseId: result.releaseId || undefined,
    target: result.targetReleaseId || undefined,
    reason: firstLine(result.error),
  };
}
