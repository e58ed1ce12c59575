import { describe, expect, test } from "vitest";
import {
  type BuildCommandInput,
  builderEnv,
  buildxBuildArgv,
  classicBuildArgv,
  dockerLoginArgv,
  dockerPushArgv,
  imageInspectArgv,
} from "../../src/commands/build.js";
import { argvToShell } from "../../src/commands/shell.js";

const base: BuildCommandInput = {
  context: "/repo/examples/app",
  dockerfile: "/repo/examples/app/Dockerfile",
  refs: ["ghcr.io/acme/app:sha-0123456789ab", "ghcr.io/acme/app:main"],
  buildArgs: { GIT_SHA: "0123456789abcdef", APP_VERSION: "1.0 beta" },
  labels: { "org.opencontainers.image.revision": "0123456789abcdef" },
  platforms: [],
  cache: { type: "none" },
  push: false,
  load: false,
};

const common =
  "--file /repo/examples/app/Dockerfile --tag ghcr.io/acme/app:sha-0123456789ab --tag ghcr.io/acme/app:main " +
  "--label org.opencontainers.image.revision=0123456789abcdef --build-arg GIT_SHA=0123456789abcdef " +
  "--build-arg 'APP_VERSION=1.0 beta'";

describe("buildx argv", () => {
  test.each<[string, Partial<BuildCommandInput>, string]>([
    ["push", { push: true }, `docker buildx build ${common} --push /repo/examples/app`],
    ["load when not pushing", { load: true }, `docker buildx build ${common} --load /repo/examples/app`],
    [
      "platforms and gha cache",
      { push: true, platforms: ["linux/amd64", "linux/arm64"], cache: { type: "gha", scope: "acme/app" } },
      `docker buildx build ${common} --platform linux/amd64,linux/arm64 --cache-from type=gha,scope=acme/app --cache-to type=gha,scope=acme/app,mode=max --push /repo/examples/app`,
    ],
    [
      "registry cache",
      { push: true, cache: { type: "registry", ref: "ghcr.io/acme/app:buildcache" } },
      `docker buildx build ${common} --cache-from type=registry,ref=ghcr.io/acme/app:buildcache --cache-to type=registry,ref=ghcr.io/acme/app:buildcache,mode=max --push /repo/examples/app`,
    ],
    [
      "inline cache (docker driver): the cache image is pushed as a tag of its own",
      { push: true, cache: { type: "inline", ref: "ghcr.io/acme/app:buildcache" } },
      `docker buildx build ${common.replace("--label", "--tag ghcr.io/acme/app:buildcache --label")} --cache-from type=registry,ref=ghcr.io/acme/app:buildcache --cache-to type=inline --push /repo/examples/app`,
    ],
  ])("%s", (_name, over, expected) => {
    expect(argvToShell(buildxBuildArgv({ ...base, ...over }))).toBe(expected);
  });
});

describe("classic argv", () => {
  test.each<[string, Partial<BuildCommandInput>, string]>([
    ["plain", {}, `docker build ${common} /repo/examples/app`],
    [
      "one platform",
      { platforms: ["linux/amd64"] },
      `docker build ${common} --platform linux/amd64 /repo/examples/app`,
    ],
  ])("%s", (_name, over, expected) => {
    expect(argvToShell(classicBuildArgv({ ...base, ...over }))).toBe(expected);
  });

  test("refuses what the classic builder cannot do", () => {
    expect(() => classicBuildArgv({ ...base, platforms: ["linux/amd64", "linux/arm64"] })).toThrow();
    expect(() => classicBuildArgv({ ...base, cache: { type: "gha", scope: "x" } })).toThrow();
  });

  test("runs without BuildKit (the 28.x client's BuildKit path needs buildx)", () => {
    expect(builderEnv("classic")).toEqual({ DOCKER_BUILDKIT: "0" });
    expect(builderEnv("buildx")).toEqual({});
  });
});

describe("registry commands", () => {
  test.each([
    [dockerLoginArgv("10.200.0.1:5001", "dk"), "docker login --username dk --password-stdin 10.200.0.1:5001"],
    [dockerPushArgv("ghcr.io/acme/app:sha-1"), "docker push ghcr.io/acme/app:sha-1"],
    [imageInspectArgv("app:sha-1"), "docker image inspect --format '{{.Id}} {{.Size}}' app:sha-1"],
  ])("%j", (argv, expected) => {
    expect(argvToShell(argv)).toBe(expected);
  });
});
