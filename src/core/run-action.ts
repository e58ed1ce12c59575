import * as core from "@actions/core";
import { ActionLog } from "./action-log.js";
import { ConfigError, describeError, isUserFacing } from "./errors.js";
import type { Log } from "./log.js";
import { redact } from "./secrets.js";

export interface ActionSpec {
  main: (log: Log) => Promise<void>;
  /** Runs in the post step, also when the job failed or was cancelled. */
  post?: (log: Log) => Promise<void>;
}

/**
 * The one error boundary of every action. Main errors fail the step with a message a person
 * can act on; post errors only warn, because the job's result was decided already.
 */
export async function runAction(spec: ActionSpec): Promise<void> {
  const log = new ActionLog();
  const isPost = core.getState("isPost") === "true";
  if (isPost) {
    if (!spec.post) return;
    try {
      await spec.post(log);
    } catch (e) {
      core.warning(redact(`cleanup failed: ${describeError(e)}`));
    }
    return;
  }
  core.saveState("isPost", "true");
  try {
    await spec.main(log);
  } catch (e) {
    reportFailure(log, e);
  }
}

export function reportFailure(log: Log, e: unknown): void {
  if (e instanceof ConfigError) {
    for (const p of e.problems) {
      log.error(`${p.path ? `${p.path}: ` : ""}${p.message}`, {
        file: p.file,
        line: p.line,
        col: p.col,
        title: "deploy-kit config",
      });
    }
  }
  if (!isUserFacing(e)) log.debug(e instanceof Error ? (e.stack ?? e.message) : String(e));
  core.setFailed(redact(describeError(e)));
}
