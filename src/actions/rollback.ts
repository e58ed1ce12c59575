import { z } from "zod";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { announce, rollbackFacts } from "../deploy/announce.js";
import { rollbackRelease } from "../deploy/release.js";
import { hostSections } from "../deploy/summary.js";
import { recordRelease } from "../github/records.js";
import { rollbackRecord } from "../release/promotion.js";
import { releaseSavedLock, withReleaseContext } from "./lock-state.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  environment: z.string().min(1, "required: the environment to roll back"),
  to: input.optional(),
  "ssh-key": input.string(),
  "known-hosts": input.string(),
  "registry-username": input.optional(),
  "registry-password": input.optional(),
  "restore-backup": input.bool(false),
  "github-token": input.optional(),
  "confirm-restore": input.optional(),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  const { ctx, result } = await withReleaseContext(i, log, async (ctx, remotes) => ({
    ctx,
    result: await rollbackRelease(remotes, {
      ...ctx,
      to: i.to,
      restoreBackup: i["restore-backup"],
      confirmRestore: i["confirm-restore"],
    }),
  }));
  setOutputs({
    "release-id": result.releaseId,
    "target-release-id": result.targetReleaseId,
    "image-ref": result.imageRef,
    "safety-dump": result.safetyDump ?? "",
  });
  await writeSummary(
    result.error
      ? `deploy-kit: rollback on ${i.environment} failed`
      : `deploy-kit: ${i.environment} rolled back to ${result.targetReleaseId}`,
    hostSections(result.hosts, [
      `Image \`${result.imageRef}\`, ledger entry \`${result.releaseId}\``,
      ...(result.safetyDump
        ? [
            `Database restored; the safety dump of the database as it was just before: \`${result.safetyDump}\` (first host)`,
          ]
        : []),
    ]),
  );
  await announce(ctx.config, log, rollbackFacts(ctx, i.environment, result));
  // The release taken off is condemned on GitHub too: promotion must not pick it by default.
  if (!result.error && result.replaced && i["github-token"]) {
    await recordRelease(
      { token: i["github-token"], baseUrl: process.env.GITHUB_API_URL },
      rollbackRecord(result.replaced, {
        environment: i.environment,
        serving: result.imageRef,
        reason: `rolled back to ${result.targetReleaseId} by ${ctx.actor}`,
        runUrl: ctx.runUrl,
      }),
      log,
    );
  }
  if (result.error) throw result.error;
}

export default { main, post: releaseSavedLock } satisfies ActionSpec;
