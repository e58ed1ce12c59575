import { z } from "zod";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { announce, deployFacts } from "../deploy/announce.js";
import { deployRelease } from "../deploy/release.js";
import { hostSections } from "../deploy/summary.js";
import { releaseSavedLock, withReleaseContext } from "./lock-state.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  environment: z.string().min(1, "required: the environment to deploy to"),
  "image-ref": z.string().min(1, "required: the image to deploy (build-image's image-ref output)"),
  "ssh-key": input.string(),
  "known-hosts": input.string(),
  "registry-username": input.optional(),
  "registry-password": input.optional(),
  "git-sha": input.optional(),
  version: input.optional(),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  const gitSha = i["git-sha"] ?? process.env.GITHUB_SHA;
  const { ctx, result } = await withReleaseContext(i, log, async (ctx, remotes) => ({
    ctx,
    result: await deployRelease(remotes, { ...ctx, imageRef: i["image-ref"], gitSha, version: i.version }),
  }));
  setOutputs({
    "release-id": result.releaseId,
    "previous-release-id": result.previousReleaseId ?? "",
    hosts: JSON.stringify(result.hosts),
    "rolled-back": result.rolledBack,
  });
  const title = result.error
    ? result.rolledBack
      ? `deploy-kit: release ${result.releaseId} failed and was rolled back`
      : `deploy-kit: release ${result.releaseId} failed`
    : `deploy-kit: release ${result.releaseId} is live on ${i.environment}`;
  await writeSummary(
    title,
    hostSections(result.hosts, [
      `Image \`${result.imageRef}\`${result.previousReleaseId ? `, previous release \`${result.previousReleaseId}\`` : ""}`,
    ]),
  );
  await announce(ctx.config, log, deployFacts(ctx, i.environment, result, { gitSha, version: i.version }));
  if (result.error) throw result.error;
}

export default { main, post: releaseSavedLock } satisfies ActionSpec;
