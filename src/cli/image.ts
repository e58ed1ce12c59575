import { imageForSha } from "../build/build-image.js";
import { shaTag } from "../build/plan.js";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../core/errors.js";
import { headSha } from "./git.js";
import { registryCredentials } from "./remote.js";
import type { CliContext, FlagSpec } from "./types.js";

export const IMAGE_FLAGS: Record<string, FlagSpec> = {
  image: {
    type: "string",
    value: "REF",
    description: "image to deploy (name@sha256:...; default: the image built for --git-sha)",
  },
  "git-sha": {
    type: "string",
    value: "SHA",
    description: "the commit deployed; smoke checks expect it (default: git rev-parse HEAD)",
  },
  "insecure-registry": {
    type: "boolean",
    description: "the registry speaks plain HTTP (private address), for looking the image up",
  },
};

export interface ChosenImage {
  imageRef: string;
  gitSha?: string;
  /** How it was chosen, for the plan. */
  source: string;
}

/**
 * What to deploy: --image as given, or the image build pushed for the commit (its sha-<12 hex>
 * tag, resolved to a digest in the registry), as production promotion does.
 */
export async function chooseImage(
  ctx: CliContext,
  config: Config,
  opts: { offline?: boolean } = {},
): Promise<ChosenImage> {
  const given = ctx.string("image");
  if (given) {
    const gitSha = ctx.string("git-sha");
    if (!gitSha)
      ctx.log.warn(
        "--image without --git-sha: the smoke checks' version-field cannot be compared with the deployed commit.",
      );
    return { imageRef: given, gitSha, source: "--image" };
  }
  const gitSha = ctx.string("git-sha") ?? (await headSha());
  const tagged = `${config.image.name}:${shaTag(gitSha)}`;
  if (opts.offline)
    return {
      imageRef: tagged,
      gitSha,
      source: `tag of commit ${gitSha.slice(0, 12)} (not resolved: --offline)`,
    };
  const ref = await imageForSha(config.image.name, gitSha, {
    insecure: ctx.bool("insecure-registry"),
    credentials: registryCredentials(ctx),
  });
  if (!ref) {
    throw new ConfigError(`No image was built for commit ${gitSha}: ${tagged} is not in the registry.`, {
      hint: "Run `deploy-kit build` first (or let CI build it), or pass --image REF.",
    });
  }
  return { imageRef: ref, gitSha, source: `built for commit ${gitSha.slice(0, 12)} (${tagged})` };
}
