import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunResult, runBundled } from "../support/runner.js";
import { dockerEnv, EXAMPLE_APP_DIR, ensureTestbed, type Testbed, waitForHttp } from "../support/testbed.js";

// The real testbed: the basic-auth registry on 10.200.0.1:5001 and the local docker engine.
let testbed: Testbed;
let REGISTRY = "";
let IMAGE = "";
// Ports 18400-18499 and image names t4-* are this suite's.
const PORT = 18401;
const docker = (args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
  execFileSync("docker", args, {
    env: opts.env ?? dockerEnv(testbed.localDockerHost),
    input: opts.input,
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
  }).trim();

const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** The registry's own answer, read with plain fetch (independent of deploy-kit's client). */
async function registryDigest(tag: string): Promise<{ header: string | null; body: string } | undefined> {
  const auth = Buffer.from(`${testbed.registry.username}:${testbed.registry.password}`).toString("base64");
  const res = await fetch(`http://${REGISTRY}/v2/t4-example/manifests/${tag}`, {
    headers: { accept: MANIFEST_ACCEPT, authorization: `Basic ${auth}` },
  });
  if (res.status === 404) return undefined;
  expect(res.status).toBe(200);
  const bytes = Buffer.from(await res.arrayBuffer());
  return {
    header: res.headers.get("docker-content-digest"),
    body: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
  };
}

/** What a person could see of a run: everything but the ::add-mask:: commands the runner consumes. */
const visible = (r: RunResult) =>
  r.everything
    .split("\n")
    .filter((l) => !l.startsWith("::add-mask::"))
    .join("\n");

describe("build-image against the testbed registry", () => {
  let ws: string;
  const sha = randomBytes(20).toString("hex");
  const shaTag = `sha-${sha.slice(0, 12)}`;
  let first: RunResult;

  const config = (dockerfile = "app/Dockerfile") =>
    [
      "version: 1",
      "app: t4-example",
      "image:",
      `  name: ${IMAGE}`,
      "  context: app",
      `  dockerfile: ${dockerfile}`,
      "environments:",
      "  staging:",
      "    hosts: [deploy@10.200.0.2]",
      "    path: /srv/t4-example",
      "    compose: { service: web }",
      "",
    ].join("\n");

  const run = (inputs: Record<string, string>, env: Record<string, string> = {}) =>
    runBundled("build-image", {
      cwd: ws,
      inputs: {
        config: "deploy-kit.yml",
        "git-sha": sha,
        "registry-username": testbed.registry.username,
        "registry-password": testbed.registry.password,
        "insecure-registry": "true",
        ...inputs,
      },
      env: { DOCKER_HOST: testbed.localDockerHost, ...env },
    });

  beforeAll(async () => {
    testbed = await ensureTestbed();
    REGISTRY = testbed.registry.auth;
    IMAGE = `${REGISTRY}/t4-example`;
    // A checkout of a user's repository: the example app and a deploy-kit.yml at the root.
    ws = mkdtempSync(join(tmpdir(), "t4-build-e2e-"));
    cpSync(EXAMPLE_APP_DIR, join(ws, "app"), { recursive: true });
    writeFileSync(join(ws, "deploy-kit.yml"), config());
  });
  afterAll(() => {
    if (ws) rmSync(ws, { recursive: true, force: true });
  });

  it("builds and pushes the example app; the reported digest is the registry's", async () => {
    const t = Date.now();
    first = await run({ tags: "e2e" }, { GITHUB_REF: "refs/tags/v0.4.2" });
    console.log(`build-image first run: ${Date.now() - t} ms`);
    expect(first.exitCode, first.stdout + first.stderr).toBe(0);
    const { outputs } = first;
    expect(outputs.skipped).toBe("false");
    expect(outputs.tags?.split("\n")).toEqual([shaTag, "0.4.2", "0.4", "0", "e2e"]);
    expect(outputs.version).toBe("0.4.2");
    expect(outputs.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(outputs["image-ref"]).toBe(`${IMAGE}@${outputs.digest}`);
    for (const tag of (outputs.tags ?? "").split("\n")) {
      const r = await registryDigest(tag);
      expect(r, tag).toEqual({ header: outputs.digest, body: outputs.digest });
    }
    expect(first.summary).toContain(outputs.digest!);
    expect(first.summary).toContain("built and pushed");
    expect(visible(first)).not.toContain(testbed.registry.password);
    // The temporary DOCKER_CONFIG with the login is gone.
    expect(first.state["docker-config"]).toBeTruthy();
    expect(existsSync(first.state["docker-config"]!)).toBe(false);
  });

  it("the pushed image, pulled from the registry by digest, serves /health with the GIT_SHA", async () => {
    const ref = first.outputs["image-ref"]!;
    // Drop the local copy so the container runs what the registry holds.
    docker(["image", "rm", "-f", first.outputs["image-id"]!]);
    const config = mkdtempSync(join(tmpdir(), "t4-pull-"));
    const name = `t4-health-${process.pid}`;
    try {
      const env = dockerEnv(testbed.localDockerHost, { DOCKER_CONFIG: config });
      docker(["login", "--username", testbed.registry.username, "--password-stdin", REGISTRY], {
        input: testbed.registry.password,
        env,
      });
      docker(["pull", ref], { env });
      docker(["run", "-d", "--init", "--name", name, "-p", `127.0.0.1:${PORT}:8080`, ref]);
      const res = await waitForHttp(`http://${testbed.localDockerAddress || "127.0.0.1"}:${PORT}/health`, {
        timeoutMs: 20_000,
        intervalMs: 100,
      });
      const health = JSON.parse(res.body) as Record<string, unknown>;
      expect(health).toMatchObject({ git_sha: sha, version: "0.4.2" });
    } finally {
      docker(["rm", "-f", name]);
      // The pulled copy is this test's own; the base image layers it shares stay.
      docker(["image", "rm", "-f", ref]);
      rmSync(config, { recursive: true, force: true });
    }
  });

  it("a second run for the same sha builds nothing and reports the same digest", async () => {
    const t = Date.now();
    const second = await run({ tags: "e2e-again" }, { GITHUB_REF: "refs/heads/main" });
    console.log(`build-image promotion run: ${Date.now() - t} ms`);
    expect(second.exitCode, second.stdout + second.stderr).toBe(0);
    expect(second.outputs.skipped).toBe("true");
    expect(second.outputs.digest).toBe(first.outputs.digest);
    expect(second.outputs["image-ref"]).toBe(first.outputs["image-ref"]);
    expect(second.stdout).not.toContain("docker build");
    expect(second.stdout).toContain("not rebuilding");
    for (const tag of ["main", "e2e-again"])
      expect((await registryDigest(tag))?.header).toBe(first.outputs.digest);
  });

  it("allow-build: false promotes the built commit and refuses to build an unknown one", async () => {
    const promoted = await run({ "allow-build": "false", tags: "production" });
    expect(promoted.exitCode, promoted.stdout + promoted.stderr).toBe(0);
    expect(promoted.outputs).toMatchObject({ skipped: "true", digest: first.outputs.digest });
    expect((await registryDigest("production"))?.header).toBe(first.outputs.digest);
    const unknown = randomBytes(20).toString("hex");
    const refused = await run({ "allow-build": "false", "git-sha": unknown });
    expect(refused.exitCode).toBe(1);
    expect(refused.stdout).toContain(`No image was built for commit ${unknown}`);
    expect(await registryDigest(`sha-${unknown.slice(0, 12)}`)).toBeUndefined();
  });

  it("a wrong password fails with the registry's name and never prints the password", async () => {
    const wrong = `wrong-${randomBytes(8).toString("hex")}`;
    const r = await run({ "registry-password": wrong, "git-sha": randomBytes(20).toString("hex") });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain(
      `Registry ${REGISTRY} rejected the credentials for user "${testbed.registry.username}"`,
    );
    expect(r.stdout).toContain("What to do: Check registry-username and registry-password");
    expect(visible(r)).not.toContain(wrong);
  });

  it("a missing Dockerfile fails with the path it looked for", async () => {
    writeFileSync(join(ws, "deploy-kit.yml"), config("app/Dockerfile.prod"));
    try {
      const r = await run({ "git-sha": randomBytes(20).toString("hex") });
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toContain(
        `Dockerfile app/Dockerfile.prod not found (looked for ${join(ws, "app/Dockerfile.prod")}).`,
      );
    } finally {
      writeFileSync(join(ws, "deploy-kit.yml"), config());
    }
  });

  it("push: false builds into the local engine and reports its image id", async () => {
    const localSha = randomBytes(20).toString("hex");
    const r = await run({ push: "false", "git-sha": localSha });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const ref = `${IMAGE}:sha-${localSha.slice(0, 12)}`;
    expect(r.outputs).toMatchObject({ "image-ref": ref, digest: "", skipped: "false" });
    expect(r.outputs["image-id"]).toBe(docker(["image", "inspect", "--format", "{{.Id}}", ref]));
    expect(await registryDigest(`sha-${localSha.slice(0, 12)}`)).toBeUndefined();
    docker(["image", "rm", "-f", r.outputs["image-id"]!]);
  });

  it("the post step deletes a temporary DOCKER_CONFIG a cancelled run left behind, and nothing else", async () => {
    const parent = mkdtempSync(join(tmpdir(), "t4-post-"));
    const left = join(parent, "dk-docker-config-abc123");
    const other = join(parent, "not-ours");
    mkdirSync(left);
    mkdirSync(other);
    writeFileSync(join(left, "config.json"), "{}");
    try {
      const r = await runBundled("build-image", {
        cwd: ws,
        state: { isPost: "true", "docker-config": left },
      });
      expect(r.exitCode).toBe(0);
      expect(existsSync(left)).toBe(false);
      const r2 = await runBundled("build-image", {
        cwd: ws,
        state: { isPost: "true", "docker-config": other },
      });
      expect(r2.exitCode).toBe(0);
      expect(existsSync(other)).toBe(true);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});
