import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type BuildImageOptions,
  buildImage,
  chooseCache,
  defaultBuildDeps,
  imageForSha,
} from "../../src/build/build-image.js";
import { createTempDockerConfig } from "../../src/build/docker-config.js";
import { argvToShell } from "../../src/commands/shell.js";
import { ConfigError, describeError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets, registerSecret } from "../../src/core/secrets.js";
import type { LocalCommand, LocalExecutor, LocalResult } from "../../src/exec/local.js";
import {
  DOCKER_MANIFEST_LIST,
  FakeRegistry,
  type ImageIndexDoc,
  imageManifest,
  indexPlatforms,
} from "../support/fake-registry.js";

const SHA = "89abcdef0123456789abcdef0123456789abcdef";
const creds = { username: "dk", password: "correct-horse-battery" };

/** Records every docker call; "pushing" stores a manifest in the fake registry like a real push. */
class FakeDocker implements LocalExecutor {
  readonly calls: LocalCommand[] = [];
  constructor(
    private readonly registry: FakeRegistry,
    private readonly opts: { buildx: boolean; driver?: string },
  ) {}
  lines(): string[] {
    return this.calls.map((c) => argvToShell(c.argv));
  }
  async run(cmd: LocalCommand): Promise<LocalResult> {
    this.calls.push(cmd);
    const [, sub, sub2] = cmd.argv;
    const ok = (stdout = "") => ({ exitCode: 0, stdout, stderr: "" });
    if (sub === "buildx" && sub2 === "version")
      return this.opts.buildx
        ? ok("github.com/docker/buildx v0.23.0")
        : { exitCode: 1, stdout: "", stderr: "unknown command" };
    if (sub === "buildx" && sub2 === "inspect")
      return ok(`Name: default\nDriver: ${this.opts.driver ?? "docker-container"}\n`);
    if (sub === "login") {
      if (cmd.input !== creds.password) throw new Error("login with wrong password");
      return ok("Login Succeeded");
    }
    if (sub === "image")
      return ok("sha256:1111111111111111111111111111111111111111111111111111111111111111 2097152\n");
    const push = (ref: string) => {
      const [repo, tag] = ref.slice(this.registry.host.length + 1).split(":") as [string, string];
      // One image per platform: a per-platform build's manifest differs from the others.
      const platform = cmd.argv[cmd.argv.indexOf("--platform") + 1];
      this.registry.put(
        repo,
        tag,
        imageManifest(cmd.argv.includes("--platform") ? `${SHA}-${platform}` : SHA),
      );
    };
    if (sub === "push") push(cmd.argv[2]!);
    if (sub === "buildx" && sub2 === "build" && cmd.argv.includes("--push")) {
      cmd.argv.forEach((a, i) => {
        if (a === "--tag") push(cmd.argv[i + 1]!);
      });
    }
    return ok();
  }
}

let repo: string;
let reg: FakeRegistry;
let host: string;
beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), "dk-build-unit-"));
  mkdirSync(join(repo, "app"));
  writeFileSync(join(repo, "app/Dockerfile"), "FROM scratch\n");
  reg = new FakeRegistry({ auth: "basic", ...creds });
  host = await reg.start();
});
afterAll(() => reg.stop());
beforeEach(() => registerSecret(creds.password));
afterEach(() => forgetSecrets());

function setup(docker: { buildx: boolean; driver?: string }) {
  const exec = new FakeDocker(reg, docker);
  const temps: string[] = [];
  const deps = {
    ...defaultBuildDeps(),
    exec,
    tempDockerConfig: async () => {
      const t = await createTempDockerConfig({ parent: repo, userDir: join(repo, "no-user-config") });
      temps.push(t.dir);
      return t;
    },
    savedCredentials: async () => undefined,
  };
  return { exec, deps, temps };
}

const opts = (over: Partial<BuildImageOptions> = {}): BuildImageOptions => ({
  image: { name: `${host}/t4-unit`, context: "app", dockerfile: "app/Dockerfile", "build-args": {} },
  workspace: repo,
  sha: SHA,
  ref: "refs/heads/main",
  push: true,
  credentials: creds,
  now: new Date("2026-01-02T03:04:05Z"),
  ...over,
});

describe("buildImage with the classic builder", () => {
  it("logs in to a temporary DOCKER_CONFIG, builds, pushes once and tags in the registry", async () => {
    const { exec, deps, temps } = setup({ buildx: false });
    const log = new MemoryLog();
    const r = await buildImage(opts({ extraTags: ["latest"] }), log, deps);
    const name = `${host}/t4-unit`;
    expect(exec.lines()).toEqual([
      "docker buildx version",
      `docker login --username dk --password-stdin ${host}`,
      `docker build --file ${repo}/app/Dockerfile --tag ${name}:sha-89abcdef0123 --tag ${name}:main --tag ${name}:latest ` +
        `--label org.opencontainers.image.revision=${SHA} --label org.opencontainers.image.created=2026-01-02T03:04:05Z ` +
        `--label org.opencontainers.image.version=89abcdef0123 --build-arg GIT_SHA=${SHA} ` +
        `--build-arg BUILD_DATE=2026-01-02T03:04:05Z --build-arg APP_VERSION=89abcdef0123 ${repo}/app`,
      `docker image inspect --format '{{.Id}} {{.Size}}' ${name}:sha-89abcdef0123`,
      `docker push ${name}:sha-89abcdef0123`,
    ]);
    // Every docker call used the temporary config; the build ran without BuildKit.
    const dir = temps[0]!;
    for (const c of exec.calls) expect(c.env?.DOCKER_CONFIG).toBe(dir);
    expect(exec.calls[2]!.env?.DOCKER_BUILDKIT).toBe("0");
    expect(existsSync(dir)).toBe(false);
    // The digest is the registry's, and every tag points at it.
    const digest = reg.digestOf("t4-unit", "sha-89abcdef0123")!;
    expect(r).toMatchObject({
      imageRef: `${name}@${digest}`,
      digest,
      tags: ["sha-89abcdef0123", "main", "latest"],
      skipped: false,
      pushed: true,
      builder: "classic",
      imageId: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
      size: { bytes: 3100, compressed: true, platforms: [] },
    });
    expect(reg.digestOf("t4-unit", "main")).toBe(digest);
    expect(reg.digestOf("t4-unit", "latest")).toBe(digest);
    expect(log.text()).not.toContain(creds.password);
  });

  it("a second run for the same sha builds nothing and adds the new tags to the same digest", async () => {
    const { exec, deps } = setup({ buildx: false });
    const digest = reg.digestOf("t4-unit", "sha-89abcdef0123")!;
    const r = await buildImage(opts({ ref: "refs/tags/v3.1.0" }), new MemoryLog(), deps);
    expect(exec.calls).toEqual([]);
    expect(r).toMatchObject({ skipped: true, digest, tags: ["sha-89abcdef0123", "3.1.0", "3.1", "3"] });
    for (const t of ["3.1.0", "3.1", "3"]) expect(reg.digestOf("t4-unit", t)).toBe(digest);
  });

  it("reuse-existing: false builds over a sha tag pushed beforehand and deploys its own digest, never the forged one", async () => {
    const { exec, deps } = setup({ buildx: false });
    const forged = reg.put("t4-unit", "sha-89abcdef0123", { schemaVersion: 2, forged: true });
    const r = await buildImage(opts({ reuseExisting: false }), new MemoryLog(), deps);
    expect(exec.lines().some((l) => l.startsWith("docker build "))).toBe(true);
    expect(exec.lines().at(-1)).toBe(`docker push ${host}/t4-unit:sha-89abcdef0123`);
    expect(r.skipped).toBe(false);
    expect(r.digest).not.toBe(forged);
    expect(reg.digestOf("t4-unit", "sha-89abcdef0123")).toBe(r.digest);
  });

  it("push: false pushes nothing, reports the local image, and still logs in for private base images", async () => {
    const { exec, deps } = setup({ buildx: false });
    const before = reg.requests.length;
    const r = await buildImage(opts({ push: false, sha: "f".repeat(40) }), new MemoryLog(), deps);
    expect(reg.requests.length).toBe(before);
    expect(exec.lines().some((l) => l.startsWith("docker push"))).toBe(false);
    expect(exec.lines()[1]).toBe(`docker login --username dk --password-stdin ${host}`);
    expect(r).toMatchObject({
      imageRef: `${host}/t4-unit:sha-ffffffffffff`,
      imageId: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
      pushed: false,
      size: { bytes: 2097152, compressed: false },
    });
    expect(r.digest).toBeUndefined();
  });

  it("several platforms need buildx: a clear error before building", async () => {
    const { exec, deps } = setup({ buildx: false });
    const e = await buildImage(
      opts({
        push: false,
        image: { ...opts().image, platforms: ["linux/amd64", "linux/arm64"] },
      }),
      new MemoryLog(),
      deps,
    ).catch((x) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain("building several platforms needs docker buildx");
    expect(exec.lines()).toEqual(["docker buildx version"]);
  });

  it("asking for a cache the classic builder cannot use is a warning, not a failure", async () => {
    const { deps } = setup({ buildx: false });
    const log = new MemoryLog();
    const r = await buildImage(opts({ push: false, cache: "gha", sha: "e".repeat(40) }), log, deps);
    expect(r.cache).toContain("local layer cache");
    expect(log.text()).toContain("warning: cache: gha needs docker buildx");
  });
});

describe("buildImage without credentials", () => {
  it("uses the user's docker config as it is: no temporary config, no login", async () => {
    const { exec, deps, temps } = setup({ buildx: false });
    await buildImage(
      opts({ push: false, credentials: undefined, sha: "d".repeat(40) }),
      new MemoryLog(),
      deps,
    );
    expect(temps).toEqual([]);
    expect(exec.lines().some((l) => l.startsWith("docker login"))).toBe(false);
    for (const c of exec.calls) expect(c.env?.DOCKER_CONFIG).toBeUndefined();
  });
});

describe("buildImage with buildx", () => {
  it("pushes every tag from the builder and reads the digest back from the registry", async () => {
    const { exec, deps } = setup({ buildx: true });
    const sha = "a".repeat(40);
    const r = await buildImage(opts({ sha, cache: "gha", githubCache: true }), new MemoryLog(), deps);
    const build = exec.lines().find((l) => l.startsWith("docker buildx build"))!;
    expect(build).toContain(
      "--cache-from type=gha,scope=t4-unit --cache-to type=gha,scope=t4-unit,mode=max --push",
    );
    expect(exec.lines().some((l) => l.startsWith("docker push"))).toBe(false);
    expect(r.builder).toBe("buildx");
    expect(r.digest).toBe(reg.digestOf("t4-unit", "sha-aaaaaaaaaaaa"));
    expect(r.imageId).toBeUndefined();
  });

  it("the docker driver cannot export a gha cache: warns and builds without one", async () => {
    const { exec, deps } = setup({ buildx: true, driver: "docker" });
    const log = new MemoryLog();
    await buildImage(opts({ sha: "b".repeat(40), cache: "gha", githubCache: true }), log, deps);
    expect(exec.lines().find((l) => l.startsWith("docker buildx build"))).not.toContain("--cache");
    expect(log.text()).toContain('cannot be exported by the buildx "docker" driver');
  });

  it("the docker driver keeps a registry cache inline, in a buildcache tag it pushes and imports", async () => {
    const { exec, deps } = setup({ buildx: true, driver: "docker" });
    const r = await buildImage(opts({ sha: "c".repeat(40), cache: "registry" }), new MemoryLog(), deps);
    const build = exec.lines().find((l) => l.startsWith("docker buildx build"))!;
    expect(build).toContain(`--tag ${host}/t4-unit:main --tag ${host}/t4-unit:buildcache --label`);
    expect(build).toContain(
      `--cache-from type=registry,ref=${host}/t4-unit:buildcache --cache-to type=inline --push`,
    );
    expect(r.cache).toBe(`registry, inline in ${host}/t4-unit:buildcache (buildx docker driver)`);
    expect(reg.digestOf("t4-unit", "buildcache")).toBe(r.digest);
  });

  it("the docker driver builds each platform apart and joins them into one index the tags point at", async () => {
    const { exec, deps } = setup({ buildx: true, driver: "docker" });
    const sha = "f".repeat(40);
    const name = `${host}/t4-unit`;
    const r = await buildImage(
      opts({
        sha,
        image: { ...opts().image, platforms: ["linux/amd64", "linux/arm64"] },
        extraTags: ["edge"],
      }),
      new MemoryLog(),
      deps,
    );
    const builds = exec.lines().filter((l) => l.startsWith("docker buildx build"));
    expect(builds).toHaveLength(2);
    expect(builds[0]).toContain(`--tag ${name}:sha-ffffffffffff-linux-amd64 --label`);
    expect(builds[0]).toContain("--platform linux/amd64 --push");
    expect(builds[1]).toContain(`--tag ${name}:sha-ffffffffffff-linux-arm64 --label`);
    expect(builds[1]).toContain("--platform linux/arm64 --push");
    const index = reg.manifestOf("t4-unit", "sha-ffffffffffff") as ImageIndexDoc;
    expect(index.mediaType).toBe(DOCKER_MANIFEST_LIST);
    expect(indexPlatforms(index)).toEqual(["linux/amd64", "linux/arm64"]);
    expect(index.manifests.map((m) => m.digest)).toEqual([
      reg.digestOf("t4-unit", "sha-ffffffffffff-linux-amd64"),
      reg.digestOf("t4-unit", "sha-ffffffffffff-linux-arm64"),
    ]);
    // The deployed digest is the index's, and every tag points at it.
    expect(r.digest).toBe(reg.digestOf("t4-unit", "sha-ffffffffffff"));
    expect(reg.digestOf("t4-unit", "edge")).toBe(r.digest);
    expect(reg.digestOf("t4-unit", "main")).toBe(r.digest);
    expect(r.size?.platforms).toEqual(["linux/amd64", "linux/arm64"]);
  });
});

describe("buildImage errors", () => {
  it("allow-build: false promotes an existing image but never builds a missing one", async () => {
    const { exec, deps } = setup({ buildx: false });
    const digest = reg.put("t4-unit", "sha-666666666666", imageManifest("staging-built"));
    const promoted = await buildImage(
      opts({ allowBuild: false, sha: "6".repeat(40), extraTags: ["prod"] }),
      new MemoryLog(),
      deps,
    );
    expect(promoted).toMatchObject({ skipped: true, digest });
    expect(reg.digestOf("t4-unit", "prod")).toBe(digest);
    const e = await buildImage(opts({ allowBuild: false, sha: "7".repeat(40) }), new MemoryLog(), deps).catch(
      (x) => x,
    );
    expect(describeError(e)).toContain(
      `No image was built for commit ${"7".repeat(40)}: ${host}/t4-unit:sha-777777777777 does not exist in ${host}, and allow-build is false.`,
    );
    expect(describeError(e)).toContain("deploy this commit to staging first");
    expect(exec.calls).toEqual([]);
  });

  it("a missing Dockerfile names the path, before any docker or registry call", async () => {
    const { exec, deps } = setup({ buildx: false });
    const before = reg.requests.length;
    const e = await buildImage(
      opts({ image: { ...opts().image, dockerfile: "app/Dockerfile.prod" } }),
      new MemoryLog(),
      deps,
    ).catch((x) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toBe(
      `Dockerfile app/Dockerfile.prod not found (looked for ${repo}/app/Dockerfile.prod).`,
    );
    expect(exec.calls).toEqual([]);
    expect(reg.requests.length).toBe(before);
  });

  it("a wrong password fails in the registry check, naming the registry, before building", async () => {
    const { exec, deps } = setup({ buildx: false });
    const wrong = { username: "dk", password: "wrong-password-42" };
    registerSecret(wrong.password);
    const e = await buildImage(
      opts({ credentials: wrong, sha: "c".repeat(40) }),
      new MemoryLog(),
      deps,
    ).catch((x) => x);
    expect(e).toBeInstanceOf(ConfigError);
    const text = describeError(e);
    expect(text).toContain(`Registry ${host} rejected the credentials for user "dk"`);
    expect(text).not.toContain("wrong-password-42");
    expect(exec.calls).toEqual([]);
  });
});

describe("chooseCache", () => {
  const ctx = {
    builder: "buildx" as const,
    driver: "docker-container",
    githubCache: false,
    push: true,
    name: "ghcr.io/a/b",
    repository: "a/b",
  };
  it.each([
    ["auto", { ...ctx, githubCache: true }, "gha (scope a/b)", false],
    ["auto", ctx, "local buildx cache", false],
    ["none", { ...ctx, githubCache: true }, "none", false],
    ["gha", ctx, "local buildx cache", true],
    ["registry", ctx, "registry (ghcr.io/a/b:buildcache)", false],
    ["registry", { ...ctx, push: false }, "local buildx cache", true],
  ] as const)("%s (case %#) -> %s", (choice, c, used, warns) => {
    const r = chooseCache(choice, c);
    expect(r.used).toBe(used);
    expect(Boolean(r.warning)).toBe(warns);
  });
});

describe("imageForSha (promotion lookup)", () => {
  it("finds the digest built for a commit, and nothing for an unbuilt one", async () => {
    const digest = reg.put("t4-lookup", "sha-89abcdef0123", imageManifest("lookup"));
    const name = `${host}/t4-lookup`;
    expect(await imageForSha(name, SHA, { credentials: creds })).toBe(`${name}@${digest}`);
    expect(await imageForSha(name, "9".repeat(40), { credentials: creds })).toBeUndefined();
  });
});
