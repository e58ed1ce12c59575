/**
 * Proves the testbed is what the other end-to-end tests assume: real SSH with pinned host keys to
 * hosts that each have their own engine and /srv, registries with and without auth that every
 * engine can use, PostgreSQL reachable from containers on the hosts, the example app under compose
 * on host 1, and nginx on host 1 in front of it.
 */
import { randomBytes } from "node:crypto";
import {
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildExampleImage,
  type ExampleImage,
  ensureTestbed,
  HOSTS_COMPOSE,
  hostExec,
  localDocker,
  machinePath,
  REPO_ROOT,
  remoteDocker,
  resetHost,
  run,
  sshArgs,
  sshExec,
  type Testbed,
  type TestbedHost,
  waitForHttp,
  writeOperatorEnv,
} from "../support/testbed.js";

const APP = "testbed-check";
const APP_DIR = `/srv/${APP}`;

let tb: Testbed;
let h1: TestbedHost;
let h2: TestbedHost;
let image: ExampleImage;
let tiny: string;
const suffix = randomBytes(4).toString("hex");

/** A one-file image made locally (no base image needed) for the registry tests. */
async function tinyImage(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "dk-tiny-"));
  try {
    writeFileSync(join(dir, "hello.txt"), `testbed ${suffix}\n`);
    const tar = join(dir, "image.tar");
    await run("tar", ["-C", dir, "-cf", tar, "hello.txt"]);
    const tag = `dk-testbed-tiny:${suffix}`;
    await localDocker(["import", tar, tag]);
    return tag;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  tb = await ensureTestbed();
  expect(tb.hosts.length).toBeGreaterThanOrEqual(2);
  [h1, h2] = tb.hosts as [TestbedHost, TestbedHost];
  [image, tiny] = await Promise.all([
    buildExampleImage({ version: "9.8.7", tag: `testbed-${suffix}` }),
    tinyImage(),
  ]);
});

afterAll(async () => {
  if (!tb) return;
  await resetHost(h1, APP).catch(() => {});
  await localDocker(["rmi", "-f", tiny], { check: false }).catch(() => {});
});

describe("testbed", () => {
  it("every host answers SSH with the deploy key and a pinned host key, with its own engine", async () => {
    for (const host of [h1, h2]) {
      const before = readFileSync(host.sshdLog, "utf8").split("Accepted publickey for deploy").length;
      const { stdout } = await sshExec(
        host,
        'hostname; id -un; docker info --format "{{.DockerRootDir}}"; echo "$DOCKER_HOST"',
      );
      const [hostname, user, rootDir, dockerHost] = stdout.trim().split("\n");
      expect(hostname).toBe(host.hostname);
      expect(user).toBe("deploy");
      expect(rootDir).toBe(join(dirname(host.dockerSocket), "docker"));
      expect(dockerHost).toBe(host.dockerHost);
      // sshd logs each connection (a benchmark counts them).
      const after = readFileSync(host.sshdLog, "utf8").split("Accepted publickey for deploy").length;
      expect(after).toBeGreaterThan(before);
    }
  });

  it("`docker compose` on every host is the compose this run is for; the runner has compose v2 and buildx", async () => {
    for (const host of [h1, h2]) {
      const { stdout } = await sshExec(host, "docker compose version");
      expect(stdout).toContain(
        HOSTS_COMPOSE === "v2" ? "Docker Compose version 2.26.1" : "docker-compose version 1.29",
      );
    }
    const local = await localDocker(["compose", "version"]);
    expect(local.stdout).toContain("Docker Compose version 2.26.1");
    expect((await localDocker(["buildx", "version"])).stdout).toContain("github.com/docker/buildx 0.13.1");
  });

  it("host keys are really pinned: an empty known_hosts is refused, not trusted on first use", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-kh-"));
    try {
      const empty = join(dir, "known_hosts");
      writeFileSync(empty, "");
      const r = await run("ssh", [...sshArgs(tb, h1, empty), "true"], { check: false });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Host key verification failed/);
      // The pinned line is the host's real key.
      const [keyType, key] = readFileSync(h1.hostKeyPub, "utf8").trim().split(/\s+/);
      expect(readFileSync(tb.knownHostsPath, "utf8")).toContain(`${h1.address} ${keyType} ${key}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("each host has its own /srv (the same path is a different directory per host)", async () => {
    const probe = `/srv/dk-testbed-probe-${suffix}`;
    try {
      await hostExec(h1, `mkdir -p ${probe} && echo h1 > ${probe}/who`, { user: "deploy" });
      await hostExec(h2, `mkdir -p ${probe} && echo h2 > ${probe}/who`, { user: "deploy" });
      expect((await sshExec(h1, `cat ${probe}/who`)).stdout.trim()).toBe("h1");
      expect((await sshExec(h2, `cat ${probe}/who`)).stdout.trim()).toBe("h2");
      expect(readFileSync(join(machinePath(h1, probe), "who"), "utf8").trim()).toBe("h1");
      expect(readFileSync(join(machinePath(h2, probe), "who"), "utf8").trim()).toBe("h2");
    } finally {
      rmSync(machinePath(h1, probe), { recursive: true, force: true });
      rmSync(machinePath(h2, probe), { recursive: true, force: true });
    }
  });

  it("the auth registry refuses a push without login and takes it with one", async () => {
    const dockerConfig = mkdtempSync(join(tmpdir(), "dk-docker-login-"));
    const env = { DOCKER_CONFIG: dockerConfig };
    try {
      const ref = `${tb.registry.auth}/dk-testbed-tiny:${suffix}`;
      await localDocker(["tag", tiny, ref]);
      const refused = await localDocker(["push", ref], { env, check: false });
      expect(refused.code).not.toBe(0);
      expect(`${refused.stdout}${refused.stderr}`).toMatch(/no basic auth credentials|unauthorized/);

      const wrong = await localDocker(
        ["login", tb.registry.auth, "--username", tb.registry.username, "--password-stdin"],
        { env, input: "not-the-password", check: false },
      );
      expect(wrong.code).not.toBe(0);

      await localDocker(["login", tb.registry.auth, "--username", tb.registry.username, "--password-stdin"], {
        env,
        input: tb.registry.password,
      });
      const pushed = await localDocker(["push", ref], { env });
      expect(pushed.stdout).toMatch(/digest: sha256:[0-9a-f]{64}/);
      await localDocker(["rmi", ref], { check: false });
    } finally {
      rmSync(dockerConfig, { recursive: true, force: true });
    }
  });

  it("a remote engine pulls from the registry", async () => {
    const ref = `${tb.registry.plain}/dk-testbed-tiny:${suffix}`;
    await localDocker(["tag", tiny, ref]);
    await localDocker(["push", ref]);
    await remoteDocker(h2, ["pull", ref]);
    const { stdout } = await remoteDocker(h2, ["image", "inspect", "--format", "{{.Id}}", ref]);
    const local = await localDocker(["image", "inspect", "--format", "{{.Id}}", ref]);
    expect(stdout.trim()).toBe(local.stdout.trim());
    await remoteDocker(h2, ["rmi", ref], { check: false });
  });

  it("containers on a remote engine reach PostgreSQL at 10.200.0.1:55432", async () => {
    await remoteDocker(h2, ["pull", image.ref]);
    const { stdout } = await remoteDocker(h2, [
      "run",
      "--rm",
      image.ref,
      "psql",
      tb.postgres.url,
      "-XAtc",
      "select current_user || ' ' || current_database() || ' ' || (select count(*) from pg_roles where rolname = 'app')",
    ]);
    expect(stdout.trim()).toBe("app app 1");
  });

  it("the example app runs under compose on host 1, serving the stamped git sha on 10.200.0.2:8080", async () => {
    await resetHost(h1, APP);
    // Port 8080 is the example's: the demo (`npm run demo`) leaves its own copy running there.
    const holders = (await remoteDocker(h1, ["ps", "-q", "--filter", "publish=8080"])).stdout
      .split("\n")
      .filter(Boolean);
    if (holders.length) await remoteDocker(h1, ["rm", "-f", ...holders]);
    await writeOperatorEnv(h1, `${APP_DIR}/.env`, `DATABASE_URL=${tb.postgres.url}\n`);
    const compose = join(machinePath(h1, APP_DIR), "compose.yml");
    copyFileSync(join(REPO_ROOT, "examples/app/compose.yml"), compose);
    const deployUid = Number((await run("id", ["-u", "deploy"])).stdout.trim());
    const deployGid = Number((await run("id", ["-g", "deploy"])).stdout.trim());
    chownSync(compose, deployUid, deployGid);
    expect(existsSync(join(machinePath(h1, APP_DIR), ".env"))).toBe(true);

    // The way an operator (or deploy-kit) does it: over SSH, as deploy, `docker compose`.
    await sshExec(
      h1,
      `cd ${APP_DIR} && API_IMAGE='${image.ref}' docker compose -p ${APP} pull -q && API_IMAGE='${image.ref}' docker compose -p ${APP} up -d`,
    );
    const health = await waitForHttp(`http://${h1.address}:8080/health`, { timeoutMs: 60_000 });
    expect(JSON.parse(health.body)).toMatchObject({ status: "ok", git_sha: image.gitSha, version: "9.8.7" });
    expect((await waitForHttp(`http://${h1.address}:8080/ready`)).body.trim()).toBe("ready");

    // The compose healthcheck turns healthy too.
    const deadline = Date.now() + 30_000;
    let status = "";
    while (Date.now() < deadline) {
      const ps = await remoteDocker(h1, [
        "ps",
        "--filter",
        `label=com.docker.compose.project=${APP}`,
        "--format",
        "{{.Status}}",
      ]);
      status = ps.stdout.trim();
      if (status.includes("(healthy)")) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toContain("(healthy)");
  });

  it("nginx on host 1 proxies to the app and deploy can reload it", async () => {
    const res = await waitForHttp(`${tb.nginx.url}/health`, { timeoutMs: 30_000 });
    expect(JSON.parse(res.body)).toMatchObject({ status: "ok", git_sha: image.gitSha });
    // The upstream file belongs to deploy and is reloadable without sudo.
    const { stdout } = await sshExec(
      h1,
      `test -w ${tb.nginx.upstreamFile} && cat ${tb.nginx.upstreamFile} && ${tb.nginx.reloadCommand} && echo reloaded`,
    );
    expect(stdout).toContain("server 127.0.0.1:8080;");
    expect(stdout.trim().endsWith("reloaded")).toBe(true);
    expect((await waitForHttp(`${tb.nginx.url}/ready`)).body.trim()).toBe("ready");
  });

  it("the host directory written for the operator stays private to deploy", async () => {
    const { stdout } = await hostExec(h1, `stat -c '%U %a' ${APP_DIR}/.env`);
    expect(stdout.trim()).toBe("deploy 600");
    mkdirSync(machinePath(h1, `${APP_DIR}/extra`), { recursive: true });
    await resetHost(h1, APP);
    expect(existsSync(machinePath(h1, APP_DIR))).toBe(false);
    const left = await remoteDocker(h1, ["ps", "-aq", "--filter", `label=com.docker.compose.project=${APP}`]);
    expect(left.stdout.trim()).toBe("");
  });
});
