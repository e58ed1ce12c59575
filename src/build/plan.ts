import { posix } from "node:path";
import { ConfigError } from "../core/errors.js";
import { type ImageRepository, isValidTag, parseImageName } from "../registry/reference.js";

/** The `image` section of deploy-kit.yml, after parsing. */
export interface ImageSpec {
  name: string;
  context: string;
  /** Relative to the repository root; default <context>/Dockerfile, as docker build and Compose do. */
  dockerfile?: string;
  "build-args": Record<string, string>;
  platforms?: string[];
}

export interface PlanInput {
  image: ImageSpec;
  /** The commit being built (GITHUB_SHA). */
  sha: string;
  /** The git ref that triggered the build (GITHUB_REF): refs/tags/v1.2.3, refs/heads/main, refs/pull/7/merge. */
  ref?: string;
  /** APP_VERSION; default: the version of a v1.2.3 tag, else the short sha. */
  version?: string;
  extraTags?: string[];
  /** https://github.com/acme/app, for the org.opencontainers.image.source label. */
  sourceUrl?: string;
  now?: Date;
}

/** Everything a build needs, computed up front and without I/O so it can be tested exactly. */
export interface BuildPlan {
  repository: ImageRepository;
  /** The immutable tag every build gets; promotion looks it up. */
  shaTag: string;
  /** Every tag, the sha tag first. */
  tags: string[];
  sha: string;
  version: string;
  created: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  /** As written in the config, relative to the repository root. */
  context: string;
  dockerfile: string;
  platforms: string[];
  /** Build args from the config that deploy-kit's own values replaced. */
  overridden: string[];
}

export const SHA_TAG_LENGTH = 12;

export function normaliseSha(sha: string): string {
  const s = sha.trim().toLowerCase();
  if (!/^[0-9a-f]{12,64}$/.test(s)) {
    throw new ConfigError(`"${sha}" is not a git commit SHA (12 to 64 hex digits).`, {
      hint: "Leave git-sha empty to use GITHUB_SHA, or pass the full commit SHA (git rev-parse HEAD).",
    });
  }
  return s;
}

export function shaTag(sha: string): string {
  return `sha-${normaliseSha(sha).slice(0, SHA_TAG_LENGTH)}`;
}

const SEMVER = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** v1.2.3 -> 1.2.3, 1.2, 1; a pre-release (v1.2.3-rc.1) gets only its own tag, never the moving ones. */
export function semverTags(gitTag: string): string[] {
  const m = SEMVER.exec(gitTag);
  if (!m) return [];
  const [, major, minor, patch, pre] = m;
  if (pre) return [`${major}.${minor}.${patch}-${pre}`];
  return [`${major}.${minor}.${patch}`, `${major}.${minor}`, `${major}`];
}

/** A string made into a valid docker tag: feature/login -> feature-login. */
export function sanitiseTag(s: string): string {
  return s
    .replace(/[^A-Za-z0-9_.-]+/g, "-")
    .replace(/^[.-]+/, "")
    .slice(0, 128)
    .replace(/-+$/, "");
}

/** Tags that follow from the git ref: semver for a version tag, the branch name, pr-N. */
export function refTags(ref: string | undefined): string[] {
  if (!ref) return [];
  const tag = /^refs\/tags\/(.+)$/.exec(ref)?.[1];
  if (tag) {
    const semver = semverTags(tag);
    return semver.length ? semver : [sanitiseTag(tag)].filter(Boolean);
  }
  const branch = /^refs\/heads\/(.+)$/.exec(ref)?.[1];
  if (branch) return [sanitiseTag(branch)].filter(Boolean);
  const pr = /^refs\/pull\/(\d+)\//.exec(ref)?.[1];
  if (pr) return [`pr-${pr}`];
  return [];
}

/** APP_VERSION when the `version` input is empty: 1.2.3 for a v1.2.3 tag, else the short sha. */
export function defaultVersion(sha: string, ref: string | undefined): string {
  const tag = ref && /^refs\/tags\/(.+)$/.exec(ref)?.[1];
  const semver = tag ? semverTags(tag)[0] : undefined;
  return semver ?? normaliseSha(sha).slice(0, SHA_TAG_LENGTH);
}

/** The build args deploy-kit always passes, so the app can report them (e.g. on /health). */
export const STAMP_ARGS = ["GIT_SHA", "BUILD_DATE", "APP_VERSION"] as const;

export function planBuild(input: PlanInput): BuildPlan {
  const repository = parseImageName(input.image.name);
  const sha = normaliseSha(input.sha);
  const sTag = shaTag(sha);
  const bad = (input.extraTags ?? []).filter((t) => !isValidTag(t));
  if (bad.length) {
    throw new ConfigError(`Not valid docker tags: ${bad.map((t) => `"${t}"`).join(", ")}.`, {
      problems: bad.map((t) => ({ path: "input tags", message: `"${t}" is not a tag` })),
      hint: "A tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'. Give tags only, without the image name.",
    });
  }
  const tags = [...new Set([sTag, ...refTags(input.ref), ...(input.extraTags ?? [])])];
  const version = input.version?.trim() || defaultVersion(sha, input.ref);
  // Seconds precision: the same shape `date -u +%Y-%m-%dT%H:%M:%SZ` gives in a Dockerfile.
  const created = (input.now ?? new Date()).toISOString().replace(/\.\d{3}Z$/, "Z");
  const stamps: Record<string, string> = { GIT_SHA: sha, BUILD_DATE: created, APP_VERSION: version };
  const userArgs = input.image["build-args"] ?? {};
  const overridden = STAMP_ARGS.filter((k) => k in userArgs && userArgs[k] !== stamps[k]);
  const labels: Record<string, string> = {
    "org.opencontainers.image.revision": sha,
    "org.opencontainers.image.created": created,
    "org.opencontainers.image.version": version,
  };
  if (input.sourceUrl) labels["org.opencontainers.image.source"] = input.sourceUrl;
  const context = input.image.context || ".";
  return {
    repository,
    shaTag: sTag,
    tags,
    sha,
    version,
    created,
    buildArgs: { ...userArgs, ...stamps },
    labels,
    context,
    dockerfile: input.image.dockerfile || posix.join(context, "Dockerfile"),
    platforms: input.image.platforms ?? [],
    overridden,
  };
}

/** name:tag for every tag of the plan. */
export function taggedRefs(plan: BuildPlan): string[] {
  return plan.tags.map((t) => `${plan.repository.name}:${t}`);
}
