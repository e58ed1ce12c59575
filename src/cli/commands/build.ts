import { buildImage } from "../../build/build-image.js";
import { buildSummarySections } from "../../build/summary.js";
import { renderSections } from "../format.js";
import { headSha, headTagRef } from "../git.js";
import { registryCredentials } from "../remote.js";
import { type Command, EXIT, UsageError } from "../types.js";

const BUILD_ARG = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s;

export const buildCommand: Command = {
  summary: "Build the image for the current commit and push it (or promote the one already built)",
  usage:
    "deploy-kit build [--git-sha SHA] [--version V] [--tag T]... [--build-arg K=V]... [--local] [--promote-only]",
  details: [
    "Builds image.context with image.dockerfile (buildx when present, else the classic builder),",
    "stamps GIT_SHA, APP_VERSION and BUILD_DATE, pushes <name>:sha-<12 hex> and prints the",
    "image ref (name@sha256:...) to deploy. When that sha tag already exists nothing is rebuilt.",
    "The docker engine is the one DOCKER_HOST names. Credentials: --registry-username with",
    "$DEPLOY_KIT_REGISTRY_PASSWORD (a temporary DOCKER_CONFIG), else your own docker login.",
  ],
  options: {
    "git-sha": {
      type: "string",
      value: "SHA",
      description: "commit to stamp and tag (default: git rev-parse HEAD)",
    },
    version: {
      type: "string",
      value: "V",
      description: "APP_VERSION (default: the v1.2.3 tag at HEAD, else the short sha)",
    },
    tag: { type: "string", value: "T", multiple: true, description: "extra tag" },
    "build-arg": {
      type: "string",
      value: "K=V",
      multiple: true,
      description: "build arg on top of image.build-args",
    },
    local: { type: "boolean", description: "build into the local engine only, no push" },
    "promote-only": { type: "boolean", description: "never build: fail unless the sha tag already exists" },
    "insecure-registry": { type: "boolean", description: "the registry speaks plain HTTP (private address)" },
    "registry-username": {
      type: "string",
      value: "USER",
      description: "log in with this user (password from $DEPLOY_KIT_REGISTRY_PASSWORD)",
    },
  },
  async run(ctx) {
    const { config } = await ctx.config();
    const buildArgs = { ...config.image["build-args"] };
    for (const a of ctx.list("build-arg")) {
      const m = BUILD_ARG.exec(a);
      if (!m) throw new UsageError(`--build-arg ${a}: expected KEY=VALUE`);
      buildArgs[m[1]!] = m[2]!;
    }
    const sha = ctx.string("git-sha") ?? (await headSha());
    const credentials = registryCredentials(ctx);
    if (credentials && ctx.bool("local"))
      ctx.log.warn("--local: the registry login is only used for private base images.");
    const local = ctx.bool("local");
    if (local && ctx.bool("promote-only"))
      throw new UsageError("--promote-only looks the image up in the registry; it cannot go with --local");
    const result = await buildImage(
      {
        image: { ...config.image, "build-args": buildArgs },
        workspace: process.env.GITHUB_WORKSPACE || process.cwd(),
        sha,
        ref: ctx.string("git-sha") ? undefined : await headTagRef(),
        version: ctx.string("version"),
        extraTags: ctx.list("tag"),
        push: !local,
        allowBuild: !ctx.bool("promote-only"),
        credentials,
        insecureRegistry: ctx.bool("insecure-registry"),
        cache: "auto",
      },
      ctx.log,
    );
    ctx.emit(
      {
        ok: true,
        imageRef: result.imageRef,
        digest: result.digest ?? null,
        tags: result.tags,
        skipped: result.skipped,
        pushed: result.pushed,
        sha: result.sha,
        version: result.version,
        durationMs: result.durationMs,
      },
      () => {
        ctx.print(
          renderSections(
            result.skipped ? "image promoted (already built)" : "image built",
            buildSummarySections(result),
          ),
        );
        ctx.print("");
        ctx.print(result.imageRef);
      },
    );
    return EXIT.ok;
  },
};
