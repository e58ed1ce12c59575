import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import {
  type BuildCommandInput,
  type Builder,
  builderEnv,
  buildxBuildArgv,
  buildxInspectArgv,
  buildxVersionArgv,
  type CacheSpec,
  classicBuildArgv,
  dockerLoginArgv,
  dockerPushArgv,
  imageInspectArgv,
  platformTagSuffix,
} from "../commands/build.js";
import { CommandError, ConfigError, DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { type LocalExecutor, ProcessExecutor } from "../exec/local.js";
import {
  type Credentials,
  imageIndex,
  type Manifest,
  RegistryClient,
  type RegistryOptions,
  resolveTag,
} from "../registry/client.js";
import { type ImageRepository, parseImageName } from "../registry/reference.js";
import {
  createTempDockerConfig,
  credentialsFromDockerConfig,
  type TempDockerConfig,
} from "./docker-config.js";
import { type BuildPlan, type ImageSpec, planBuild, shaTag, taggedRefs } from "./plan.js";

export type CacheChoice = "auto" | "none" | "gha" | "registry";

export interface BuildImageOptions {
  image: ImageSpec;
  /** The repository root: image.context and image.dockerfile are relative to it. */
  workspace: string;
  sha: string;
  ref?: string;
  version?: string;
  extraTags?: string[];
  push: boolean;
  /**
   * false: only promote. When the sha tag does not exist the build fails instead of building, so
   * production never runs an image staging did not run.
   */
  allowBuild?: boolean;
  /**
   * false: build even when the sha tag exists (and push over it), so what is deployed is what this
   * run built from its checkout, never an image someone pushed under that tag first.
   */
  reuseExisting?: boolean;
  /** Logged in through a temporary DOCKER_CONFIG; without them, an earlier docker login is used. */
  credentials?: Credentials;
  insecureRegistry?: boolean;
  cache?: CacheChoice;
  /** The GitHub Actions cache service is available (ACTIONS_RUNTIME_TOKEN set). */
  githubCache?: boolean;
  sourceUrl?: string;
  now?: Date;
}

/** The registry operations build and promotion use; RegistryClient in production, a fake in tests. */
export type ImageRegistry = Pick<
  RegistryClient,
  "registry" | "checkAccess" | "getManifest" | "putManifest" | "resolveTag" | "imageSize"
>;

export interface BuildImageDeps {
  exec: LocalExecutor;
  registry: (repo: ImageRepository, opts: { credentials?: Credentials; insecure: boolean }) => ImageRegistry;
  tempDockerConfig: () => Promise<TempDockerConfig>;
  savedCredentials: (registry: string) => Promise<Credentials | undefined>;
  clock: () => number;
}

export function defaultBuildDeps(): BuildImageDeps {
  return {
    exec: new ProcessExecutor(),
    registry: (repo, opts) => new RegistryClient({ registry: repo.registry, apiHost: repo.apiHost, ...opts }),
    tempDockerConfig: () => createTempDockerConfig(),
    savedCredentials: (registry) => credentialsFromDockerConfig(registry),
    clock: () => Date.now(),
  };
}

export interface BuildImageResult {
  name: string;
  /** name@sha256:… when pushed; name:sha-<sha> (a local tag) when not. */
  imageRef: string;
  /** The registry's manifest digest; empty when the image was not pushed. */
  digest?: string;
  /** The local engine's image id, when the image is in the local engine. */
  imageId?: string;
  tags: string[];
  /** The sha tag already existed: nothing was built, the new tags point at the existing image. */
  skipped: boolean;
  pushed: boolean;
  builder?: Builder;
  /** How the build cache was used, for the summary. */
  cache: string;
  size?: { bytes: number; compressed: boolean; platforms: string[] };
  durationMs: number;
  sha: string;
  version: string;
  created: string;
}

/**
 * Build the image for one commit and push it, or promote the image already built for that
 * commit: when `name:sha-<sha>` exists, nothing is rebuilt, so production runs the very bytes
 * staging ran. The digest always comes from the registry, never from parsing build output.
 */
export async function buildImage(
  opts: BuildImageOptions,
  log: Log,
  deps: BuildImageDeps = defaultBuildDeps(),
): Promise<BuildImageResult> {
  const started = deps.clock();
  const plan = planBuild({
    image: opts.image,
    sha: opts.sha,
    ref: opts.ref,
    version: opts.version,
    extraTags: opts.extraTags,
    sourceUrl: opts.sourceUrl,
    now: opts.now,
  });
  const repo = plan.repository;
  const allowBuild = opts.allowBuild ?? true;
  if (!allowBuild && !opts.push) {
    throw new ConfigError(
      "allow-build: false only promotes an image from the registry, so it needs push: true.",
      {
        hint: "Set push: true (the default), or allow-build: true to build locally.",
      },
    );
  }
  const context = resolve(opts.workspace, plan.context);
  const dockerfile = resolve(opts.workspace, plan.dockerfile);
  checkSources(plan, context, dockerfile);
  for (const k of plan.overridden) {
    log.warn(`image.build-args.${k} is replaced by deploy-kit's own value (${k} is stamped on every build).`);
  }
  log.info(`Image ${repo.name}, tags: ${plan.tags.join(", ")}`);

  // Credentials: the inputs, else what an earlier `docker login` saved (used as-is by docker).
  const loginWith = opts.credentials;
  const apiCredentials = loginWith ?? (opts.push ? await deps.savedCredentials(repo.registry) : undefined);
  const base = {
    name: repo.name,
    sha: plan.sha,
    version: plan.version,
    created: plan.created,
  };

  let registry: ImageRegistry | undefined;
  if (opts.push) {
    registry = deps.registry(repo, { credentials: apiCredentials, insecure: opts.insecureRegistry ?? false });
    const existing = await log.group(`Registry ${repo.registry}`, async () => {
      await registry!.checkAccess(repo.repository, "pull,push");
      log.info(`Access to ${repo.registry}/${repo.repository} confirmed.`);
      // reuse-existing: false never looks: a tag proves nothing about where the image came from.
      return opts.reuseExisting === false ? undefined : registry!.getManifest(repo.repository, plan.shaTag);
    });
    if (existing) {
      const size = await promote(registry, plan, existing, log);
      return {
        ...base,
        imageRef: `${repo.name}@${existing.digest}`,
        digest: existing.digest,
        tags: plan.tags,
        skipped: true,
        pushed: true,
        cache: "not used (promoted the existing image)",
        size,
        durationMs: deps.clock() - started,
      };
    }
    if (!allowBuild) {
      throw new DeployError(
        `No image was built for commit ${plan.sha}: ${repo.name}:${plan.shaTag} does not exist in ${repo.registry}, and allow-build is false.`,
        {
          hint: "Promotion deploys the image staging built and ran: deploy this commit to staging first, or set allow-build: true to build it here.",
        },
      );
    }
  }

  const temp = loginWith ? await deps.tempDockerConfig() : undefined;
  try {
    const env: Record<string, string> = temp ? { DOCKER_CONFIG: temp.dir } : {};
    const { builder, driver } = await detectBuilder(deps.exec, env);
    log.info(
      builder === "buildx"
        ? `Builder: docker buildx${driver ? ` (driver ${driver})` : ""}`
        : "Builder: classic docker build (docker buildx is not installed)",
    );
    if (plan.platforms.length > 1 && builder === "classic") {
      throw new ConfigError(
        `image.platforms lists ${plan.platforms.length} platforms (${plan.platforms.join(", ")}); building several platforms needs docker buildx, which this machine does not have.`,
        {
          hint: "Add docker/setup-buildx-action before this step (GitHub runners ship buildx), or list a single platform.",
        },
      );
    }
    const cache = chooseCache(opts.cache ?? "auto", {
      builder,
      driver,
      githubCache: opts.githubCache ?? false,
      push: opts.push,
      name: repo.name,
      repository: repo.repository,
    });
    if (cache.warning) log.warn(cache.warning);
    log.info(`Build cache: ${cache.used}`);

    // Logged in even without push: a FROM line may name a private base image in this registry.
    if (loginWith && temp) {
      await deps.exec.run({
        argv: dockerLoginArgv(repo.registry, loginWith.username),
        input: loginWith.password,
        env,
        what: `docker login ${repo.registry}`,
        hint: `Check registry-username and registry-password for ${repo.registry}.`,
      });
    }

    const refs = taggedRefs(plan);
    const load = !opts.push && plan.platforms.length <= 1;
    // The buildx docker driver (the engine's own BuildKit, what a runner has without
    // setup-buildx-action) builds one platform at a time: build each under its own tag, then
    // join them into one index in the registry.
    const perPlatform = builder === "buildx" && driver === "docker" && plan.platforms.length > 1;
    if (builder === "buildx" && !opts.push && !load) {
      log.warn(
        "push is false and the image has several platforms: buildx cannot load a multi-platform image into the local engine, so it is only built (a check that it builds).",
      );
    }
    const pushHint = opts.insecureRegistry
      ? `If the docker engine refuses plain HTTP, add "${repo.registry}" to insecure-registries in its daemon.json.`
      : undefined;
    const builds: { platform?: string; command: BuildCommandInput }[] = perPlatform
      ? plan.platforms.map((platform) => {
          const suffix = platformTagSuffix(platform);
          return {
            platform,
            command: {
              context,
              dockerfile,
              refs: [`${repo.name}:${plan.shaTag}-${suffix}`],
              buildArgs: plan.buildArgs,
              labels: plan.labels,
              platforms: [platform],
              cache:
                cache.spec.type === "inline"
                  ? { type: "inline", ref: `${cache.spec.ref}-${suffix}` }
                  : cache.spec,
              push: opts.push,
              load: false,
            },
          };
        })
      : [
          {
            command: {
              context,
              dockerfile,
              refs,
              buildArgs: plan.buildArgs,
              labels: plan.labels,
              platforms: plan.platforms,
              cache: cache.spec,
              push: opts.push,
              load,
            },
          },
        ];
    for (const { platform, command } of builds) {
      await log.group(`Build ${repo.name}:${plan.shaTag}${platform ? ` for ${platform}` : ""}`, async () => {
        const t = deps.clock();
        await deps.exec.run({
          argv: builder === "buildx" ? buildxBuildArgv(command) : classicBuildArgv(command),
          env: { ...env, ...builderEnv(builder) },
          what:
            builder === "buildx" ? `docker buildx build${platform ? ` (${platform})` : ""}` : "docker build",
          onLine: (l) => log.info(l),
          hint:
            (builder === "buildx" && opts.push ? pushHint : undefined) ??
            (platform
              ? `Read the build output above. A platform other than the runner's needs QEMU for RUN steps (docker/setup-qemu-action).`
              : "Read the build output above; the failing Dockerfile step is printed last."),
        });
        log.info(`Built in ${((deps.clock() - t) / 1000).toFixed(1)} s`);
      });
    }

    let imageId: string | undefined;
    let localSize: number | undefined;
    // The classic builder and the buildx docker driver build into the engine's own store.
    if (builder === "classic" || load || (driver === "docker" && !perPlatform)) {
      const inspect = await deps.exec.run({
        argv: imageInspectArgv(refs[0]!),
        env,
        what: "docker image inspect",
      });
      const [id, size] = inspect.stdout.trim().split(/\s+/);
      imageId = id;
      localSize = Number(size) || undefined;
    }

    if (!opts.push || !registry) {
      return {
        ...base,
        imageRef: refs[0]!,
        imageId,
        tags: plan.tags,
        skipped: false,
        pushed: false,
        builder,
        cache: cache.used,
        size: localSize ? { bytes: localSize, compressed: false, platforms: plan.platforms } : undefined,
        durationMs: deps.clock() - started,
      };
    }

    if (builder === "classic") {
      // One push uploads the layers; the other tags are added in the registry (no re-upload).
      await log.group(`Push ${refs[0]}`, () =>
        deps.exec.run({
          argv: dockerPushArgv(refs[0]!),
          env,
          what: `docker push ${refs[0]}`,
          onLine: (l) => log.info(l),
          hint: pushHint ?? `Check that the credentials may push to ${repo.registry}/${repo.repository}.`,
        }),
      );
    }
    if (perPlatform) await joinPlatforms(registry, plan, log);
    const pushedManifest = await registry.getManifest(repo.repository, plan.shaTag);
    if (!pushedManifest) {
      throw new DeployError(
        `The push finished but registry ${repo.registry} has no ${repo.repository}:${plan.shaTag}.`,
        {
          hint: "Check that the engine pushed to the same registry the image name points at (mirrors, proxies).",
        },
      );
    }
    if (builder === "classic" || perPlatform) await addTags(registry, plan, pushedManifest, log);
    const size = await registry.imageSize(repo.repository, pushedManifest);
    log.info(`Pushed ${repo.name}@${pushedManifest.digest}`);
    return {
      ...base,
      imageRef: `${repo.name}@${pushedManifest.digest}`,
      digest: pushedManifest.digest,
      imageId,
      tags: plan.tags,
      skipped: false,
      pushed: true,
      builder,
      cache: cache.used,
      size: { ...size, compressed: true },
      durationMs: deps.clock() - started,
    };
  } finally {
    await temp?.dispose();
  }
}

function checkSources(plan: BuildPlan, context: string, dockerfile: string): void {
  if (!existsSync(context) || !statSync(context).isDirectory()) {
    throw new ConfigError(`Build context ${plan.context} not found (looked for the directory ${context}).`, {
      problems: [{ path: "image.context", message: `no directory ${context}` }],
      hint: "image.context is relative to the repository root; check out the repository first (actions/checkout).",
    });
  }
  if (!existsSync(dockerfile) || !statSync(dockerfile).isFile()) {
    throw new ConfigError(`Dockerfile ${plan.dockerfile} not found (looked for ${dockerfile}).`, {
      problems: [{ path: "image.dockerfile", message: `no file ${dockerfile}` }],
      hint: "image.dockerfile is relative to the repository root; without it deploy-kit looks for Dockerfile inside image.context. Fix the path in deploy-kit.yml.",
    });
  }
}

/** buildx when `docker buildx version` works (GitHub runners), else the classic builder. */
export async function detectBuilder(
  exec: LocalExecutor,
  env: Record<string, string>,
): Promise<{ builder: Builder; driver?: string }> {
  let version: { exitCode: number };
  try {
    version = await exec.run({
      argv: buildxVersionArgv(),
      env,
      allowFailure: true,
      what: "docker buildx version",
    });
  } catch (e) {
    if (e instanceof CommandError) throw e;
    throw new ConfigError("The docker CLI was not found on this machine.", {
      hint: "Run this action on a runner with Docker (GitHub's ubuntu runners have it) or install docker.",
    });
  }
  if (version.exitCode !== 0) return { builder: "classic" };
  const inspect = await exec.run({
    argv: buildxInspectArgv(),
    env,
    allowFailure: true,
    what: "docker buildx inspect",
  });
  const driver = /^Driver:\s*(\S+)/m.exec(inspect.stdout)?.[1];
  return { builder: "buildx", driver };
}

/**
 * What cache a build can use. A cache that cannot be had is a warning, never a failure: the
 * build is still correct without it, only slower.
 */
export function chooseCache(
  choice: CacheChoice,
  ctx: {
    builder: Builder;
    driver?: string;
    githubCache: boolean;
    push: boolean;
    name: string;
    repository: string;
  },
): { spec: CacheSpec; used: string; warning?: string } {
  const none = (used: string, warning?: string) => ({ spec: { type: "none" } as CacheSpec, used, warning });
  if (choice === "none") return none("none");
  const wanted = choice === "auto" ? (ctx.githubCache ? "gha" : "none") : choice;
  if (ctx.builder === "classic") {
    const local = "local layer cache of the docker engine (classic builder)";
    return wanted === "none"
      ? none(local)
      : none(
          local,
          `cache: ${wanted} needs docker buildx, which this machine does not have; the classic builder only reuses the engine's local layer cache. Add docker/setup-buildx-action before this step to use it.`,
        );
  }
  if (wanted === "none") return none("local buildx cache");
  if (wanted === "gha") {
    if (ctx.driver === "docker") {
      return none(
        "local buildx cache",
        `cache: gha cannot be exported by the buildx "docker" driver; building without it. Add docker/setup-buildx-action before this step (it creates a docker-container builder).`,
      );
    }
    if (!ctx.githubCache) {
      return none(
        "local buildx cache",
        "cache: gha needs the GitHub Actions cache service (ACTIONS_RUNTIME_TOKEN), which this run does not have; building without it.",
      );
    }
    return { spec: { type: "gha", scope: ctx.repository }, used: `gha (scope ${ctx.repository})` };
  }
  if (!ctx.push) {
    return none(
      "local buildx cache",
      "cache: registry needs push: true (the cache is stored in the registry); building without it.",
    );
  }
  const ref = `${ctx.name}:buildcache`;
  if (ctx.driver === "docker") {
    // The docker driver cannot export a cache image, but it can stamp the cache into the image
    // it pushes (inline) and import it from the registry on the next build, on any machine.
    return { spec: { type: "inline", ref }, used: `registry, inline in ${ref} (buildx docker driver)` };
  }
  return { spec: { type: "registry", ref }, used: `registry (${ref})` };
}

/** The per-platform images of this build, joined into one index under the sha tag. */
async function joinPlatforms(registry: ImageRegistry, plan: BuildPlan, log: Log): Promise<void> {
  const repo = plan.repository;
  const children: { platform: string; manifest: Manifest }[] = [];
  for (const platform of plan.platforms) {
    const tag = `${plan.shaTag}-${platformTagSuffix(platform)}`;
    const manifest = await registry.getManifest(repo.repository, tag);
    if (!manifest) {
      throw new DeployError(
        `The build of ${platform} finished but registry ${repo.registry} has no ${repo.repository}:${tag}.`,
        {
          hint: "Check that the engine pushed to the same registry the image name points at (mirrors, proxies).",
        },
      );
    }
    children.push({ platform, manifest });
  }
  const index = imageIndex(children);
  await registry.putManifest(repo.repository, plan.shaTag, index);
  log.info(`${repo.name}:${plan.shaTag} -> ${index.digest}, one index of ${plan.platforms.join(", ")}`);
}

/** Point every tag of the plan except the sha tag at `manifest` (skipping those already there). */
async function addTags(
  registry: ImageRegistry,
  plan: BuildPlan,
  manifest: Manifest,
  log: Log,
): Promise<void> {
  const repo = plan.repository;
  for (const tag of plan.tags) {
    if (tag === plan.shaTag) continue;
    const current = await registry.resolveTag(repo.repository, tag);
    if (current === manifest.digest) {
      log.info(`${repo.name}:${tag} already points at ${manifest.digest}`);
      continue;
    }
    await registry.putManifest(repo.repository, tag, manifest);
    log.info(
      current
        ? `${repo.name}:${tag} moved from ${current} to ${manifest.digest}`
        : `${repo.name}:${tag} -> ${manifest.digest}`,
    );
  }
}

async function promote(
  registry: ImageRegistry,
  plan: BuildPlan,
  existing: Manifest,
  log: Log,
): Promise<BuildImageResult["size"]> {
  return log.group(`Promote ${plan.repository.name}:${plan.shaTag} (already built)`, async () => {
    log.info(
      `${plan.repository.name}:${plan.shaTag} already exists as ${existing.digest}: not rebuilding, the same image gets the new tags.`,
    );
    await addTags(registry, plan, existing, log);
    const size = await registry.imageSize(plan.repository.repository, existing);
    return { ...size, compressed: true };
  });
}

/**
 * name@sha256:… of the image built for commit `sha` (its `sha-<12 hex>` tag), or undefined when
 * that commit was never built: production deploys this digest instead of rebuilding.
 */
export async function imageForSha(
  name: string,
  sha: string,
  opts: Omit<RegistryOptions, "registry" | "apiHost"> = {},
): Promise<string | undefined> {
  const repo = parseImageName(name);
  const digest = await resolveTag(repo.name, shaTag(sha), opts);
  return digest && `${repo.name}@${digest}`;
}
