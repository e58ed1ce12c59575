/**
 * docker argv for building and pushing images, as data (docker/build-push-action's getArgs()
 * idea): nothing here runs anything, so the exact commands are unit-tested for both builders.
 */

export type Builder = "buildx" | "classic";

/**
 * What to do with the cache. `ref` is the registry cache image for type "registry". "inline" is
 * what the buildx docker driver can do: the cache metadata rides in the image pushed as `ref`,
 * and the next build imports it from there.
 */
export type CacheSpec =
  | { type: "none" }
  | { type: "gha"; scope: string }
  | { type: "registry"; ref: string }
  | { type: "inline"; ref: string };

export interface BuildCommandInput {
  /** Absolute paths: the action may run from any directory. */
  context: string;
  dockerfile: string;
  /** Full references, name:tag. */
  refs: string[];
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  platforms: string[];
  cache: CacheSpec;
  /** buildx: push straight from the builder. */
  push: boolean;
  /** buildx: load the result into the local engine (single platform only). */
  load: boolean;
}

export const buildxVersionArgv = (): string[] => ["docker", "buildx", "version"];
export const buildxInspectArgv = (): string[] => ["docker", "buildx", "inspect"];

function common(i: BuildCommandInput): string[] {
  const argv = ["--file", i.dockerfile];
  for (const r of i.refs) argv.push("--tag", r);
  for (const [k, v] of Object.entries(i.labels)) argv.push("--label", `${k}=${v}`);
  for (const [k, v] of Object.entries(i.buildArgs)) argv.push("--build-arg", `${k}=${v}`);
  return argv;
}

export function cacheArgs(cache: CacheSpec): string[] {
  switch (cache.type) {
    case "none":
      return [];
    case "gha":
      return [
        "--cache-from",
        `type=gha,scope=${cache.scope}`,
        "--cache-to",
        `type=gha,scope=${cache.scope},mode=max`,
      ];
    case "registry":
      return [
        "--cache-from",
        `type=registry,ref=${cache.ref}`,
        "--cache-to",
        `type=registry,ref=${cache.ref},mode=max`,
      ];
    case "inline":
      return ["--cache-from", `type=registry,ref=${cache.ref}`, "--cache-to", "type=inline"];
  }
}

export function buildxBuildArgv(i: BuildCommandInput): string[] {
  // An inline cache is pushed as a tag of its own, so the next build finds it by name.
  const refs = i.cache.type === "inline" ? [...i.refs, i.cache.ref] : i.refs;
  const argv = ["docker", "buildx", "build", ...common({ ...i, refs })];
  if (i.platforms.length) argv.push("--platform", i.platforms.join(","));
  argv.push(...cacheArgs(i.cache));
  if (i.push) argv.push("--push");
  else if (i.load) argv.push("--load");
  argv.push(i.context);
  return argv;
}

/** linux/arm64/v8 -> linux-arm64-v8: a tag suffix for one platform's image. */
export function platformTagSuffix(platform: string): string {
  return platform.replaceAll("/", "-");
}

/** The legacy builder (DOCKER_BUILDKIT=0): no cache export, at most one platform. */
export function classicBuildArgv(i: BuildCommandInput): string[] {
  if (i.platforms.length > 1) throw new Error("the classic builder builds one platform at a time");
  if (i.cache.type !== "none") throw new Error("the classic builder has no cache export");
  const argv = ["docker", "build", ...common(i)];
  if (i.platforms.length === 1) argv.push("--platform", i.platforms[0]!);
  argv.push(i.context);
  return argv;
}

/** The environment each builder runs with: the classic one must not try BuildKit (needs buildx). */
export function builderEnv(builder: Builder): Record<string, string> {
  return builder === "classic" ? { DOCKER_BUILDKIT: "0" } : {};
}

/** The password goes on stdin, never in argv where `ps` would show it. */
export function dockerLoginArgv(registry: string, username: string): string[] {
  return ["docker", "login", "--username", username, "--password-stdin", registry];
}

export function dockerPushArgv(ref: string): string[] {
  return ["docker", "push", ref];
}

/** Image id and uncompressed size of a local image. */
export function imageInspectArgv(ref: string): string[] {
  return ["docker", "image", "inspect", "--format", "{{.Id}} {{.Size}}", ref];
}
