import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DOCKER_MANIFEST_LIST, type ImageIndexDoc, indexPlatforms } from "../support/fake-registry.js";
import { runBundled } from "../support/runner.js";
import { dockerEnv, ensureTestbed, type Testbed } from "../support/testbed.js";

// build-image through the real docker buildx plugin (0.13, docker driver: the engine's own
// BuildKit, what a runner has before docker/setup-buildx-action) on the testbed's local engine.
// Image names tx-* are this suite's.
let testbed: Testbed;
let ws: string;
const docker = (args: string[]) =>
  execFileSync("docker", args, { env: dockerEnv(testbed.localDockerHost), encoding: "utf8" }).trim();

// Slow steps first, the per-commit build args last: what stays the same between commits is
// cached, as in a well-ordered app Dockerfile.
const DOCKERFILE = `FROM scratch
COPY salt /salt
ARG TARGETARCH
COPY busybox-\${TARGETARCH} /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN uname -m > /arch
ARG GIT_SHA
ARG APP_VERSION
ARG FLAVOUR
ENV GIT_SHA=\${GIT_SHA} APP_VERSION=\${APP_VERSION} FLAVOUR=\${FLAVOUR}
CMD ["cat", "/arch"]
`;

const config = (name: string, platforms?: string[]) =>
  [
    "version: 1",
    "app: tx-buildx",
    "image:",
    `  name: ${name}`,
    "  context: app", // no dockerfile: app/Dockerfile, as docker build and Compose default it
    "  build-args: { FLAVOUR: crisp }",
    ...(platforms ? [`  platforms: [${platforms.join(", ")}]`] : []),
    "environments:",
    "  staging:",
    "    hosts: [deploy@10.200.0.2]",
    "    path: /srv/tx-buildx",
    "    compose: { service: web }",
    "",
  ].join("\n");

async function build(name: string, inputs: Record<string, string> = {}, platforms?: string[]) {
  writeFileSync(join(ws, "deploy-kit.yml"), config(name, platforms));
  const r = await runBundled("build-image", {
    cwd: ws,
    inputs: {
      config: "deploy-kit.yml",
      "git-sha": randomBytes(20).toString("hex"),
      "registry-username": testbed.registry.username,
      "registry-password": testbed.registry.password,
      "insecure-registry": "true",
      ...inputs,
    },
    env: { DOCKER_HOST: testbed.localDockerHost },
  });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  return r;
}

/** A document from the registry's HTTP API, read with plain fetch (not deploy-kit's client). */
async function registryGet(registry: string, path: string, accept = "*/*"): Promise<Record<string, unknown>> {
  const auth = Buffer.from(`${testbed.registry.username}:${testbed.registry.password}`).toString("base64");
  const res = await fetch(`http://${registry}/v2/${path}`, {
    headers: {
      accept,
      ...(registry === testbed.registry.auth ? { authorization: `Basic ${auth}` } : {}),
    },
  });
  expect(res.status, path).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}
const MANIFESTS =
  "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

beforeAll(async () => {
  testbed = await ensureTestbed();
  ws = mkdtempSync(join(tmpdir(), "tx-buildx-"));
  execFileSync("mkdir", ["-p", join(ws, "app")]);
  writeFileSync(join(ws, "app/Dockerfile"), DOCKERFILE);
  writeFileSync(join(ws, "app/salt"), randomBytes(16).toString("hex"));
  copyFileSync("/bin/busybox", join(ws, "app/busybox-amd64"));
  copyFileSync(testbed.arm64Busybox, join(ws, "app/busybox-arm64"));
});
afterAll(() => {
  if (ws) rmSync(ws, { recursive: true, force: true });
});

describe("build-image with docker buildx (docker driver), on the runner's engine", () => {
  it("uses buildx, and the pushed image carries the labels and build args; its digest is the registry's", async () => {
    expect(docker(["buildx", "version"])).toContain("github.com/docker/buildx 0.13");
    const name = `${testbed.registry.auth}/tx-labels`;
    const r = await build(name);
    expect(r.stdout).toContain("Builder: docker buildx (driver docker)");
    const sha = r.outputs.tags!.split("\n")[0]!.replace("sha-", "");
    const manifest = await registryGet(testbed.registry.auth, `tx-labels/manifests/sha-${sha}`, MANIFESTS);
    const head = await fetch(`http://${testbed.registry.auth}/v2/tx-labels/manifests/sha-${sha}`, {
      method: "HEAD",
      headers: {
        accept: MANIFESTS,
        authorization: `Basic ${Buffer.from(`${testbed.registry.username}:${testbed.registry.password}`).toString("base64")}`,
      },
    });
    expect(r.outputs.digest).toBe(head.headers.get("docker-content-digest"));
    const configDigest = (manifest.config as { digest: string }).digest;
    const image = (await registryGet(testbed.registry.auth, `tx-labels/blobs/${configDigest}`)) as {
      config: { Labels: Record<string, string>; Env: string[] };
    };
    const gitSha = image.config.Env.find((e) => e.startsWith("GIT_SHA="))!.slice(8);
    expect(gitSha.startsWith(sha)).toBe(true);
    expect(image.config.Labels["org.opencontainers.image.revision"]).toBe(gitSha);
    expect(image.config.Labels["org.opencontainers.image.version"]).toBe(sha);
    expect(image.config.Env).toContain(`APP_VERSION=${sha}`);
    expect(image.config.Env).toContain("FLAVOUR=crisp");
    // The docker driver built into the engine's own store: the image id is reported.
    expect(r.outputs["image-id"]).toBe(
      docker(["image", "inspect", "--format", "{{.Id}}", `${name}:sha-${sha}`]),
    );
  });

  it("a registry cache makes a build on an engine with no local layers reuse them (counted cached steps)", async () => {
    // The loopback registry: the engine's BuildKit imports a plain-HTTP cache only from there.
    const name = `${testbed.registry.loopback}/tx-cache-${randomBytes(4).toString("hex")}`;
    const cached = (out: string) => out.split("\n").filter((l) => /^#\d+ CACHED$/.test(l.trim())).length;
    // Content no engine has seen: nothing of the first build can come from a local cache.
    writeFileSync(join(ws, "app/salt"), randomBytes(16).toString("hex"));
    const first = await build(name, { cache: "registry" });
    expect(first.stdout).toContain(`Build cache: registry, inline in ${name}:buildcache`);
    expect(cached(first.stdout)).toBe(0);
    // Forget every local layer of it: the next build can only get them from the registry.
    docker(["image", "rm", "-f", first.outputs["image-id"]!]);
    docker(["builder", "prune", "--all", "--force"]);
    const second = await build(name, { cache: "registry" });
    expect(second.stdout).toContain(`importing cache manifest from ${name}:buildcache`);
    // COPY salt, COPY busybox, RUN --install, RUN uname: every step before the per-commit args.
    expect(cached(second.stdout)).toBe(4);
    expect(second.outputs.digest).not.toBe(first.outputs.digest);
  });

  it("two platforms make ONE index with both; the arm64 image's binary is aarch64", async () => {
    const name = `${testbed.registry.auth}/tx-multi`;
    const r = await build(name, {}, ["linux/amd64", "linux/arm64"]);
    expect(r.stdout).toMatch(/Build .*tx-multi:sha-[0-9a-f]{12} for linux\/arm64/);
    const shaTag = r.outputs.tags!.split("\n")[0]!;
    const index = (await registryGet(
      testbed.registry.auth,
      `tx-multi/manifests/${shaTag}`,
      MANIFESTS,
    )) as unknown as ImageIndexDoc;
    expect(index.mediaType).toBe(DOCKER_MANIFEST_LIST);
    expect(indexPlatforms(index)).toEqual(["linux/amd64", "linux/arm64"]);
    // The digest deployed is the index's.
    expect(r.outputs["image-ref"]).toBe(`${name}@${r.outputs.digest}`);
    expect(r.outputs["image-id"]).toBe("");
    const cfg = mkdtempSync(join(tmpdir(), "tx-pull-"));
    try {
      const env = dockerEnv(testbed.localDockerHost, { DOCKER_CONFIG: cfg });
      const d = (args: string[], input?: string) =>
        execFileSync("docker", args, { env, input, encoding: "utf8" }).trim();
      d(
        ["login", "--username", testbed.registry.username, "--password-stdin", testbed.registry.auth],
        testbed.registry.password,
      );
      for (const [platform, arch] of [
        ["linux/arm64", "aarch64"],
        ["linux/amd64", "x86_64"],
      ] as const) {
        d(["pull", "--quiet", "--platform", platform, r.outputs["image-ref"]!]);
        expect(d(["run", "--rm", "--platform", platform, r.outputs["image-ref"]!])).toBe(arch);
        d(["image", "rm", "-f", r.outputs["image-ref"]!]);
      }
    } finally {
      rmSync(cfg, { recursive: true, force: true });
    }
  });
});
