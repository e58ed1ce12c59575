/**
 * The project's own testbed (scripts/testbed/up.sh): hosts made of Linux namespaces, each with its
 * own address, sshd, dockerd and /srv; registries; PostgreSQL; nginx on host 1. End-to-end tests
 * call `ensureTestbed()` and get the typed testbed.json; helpers reach into the hosts from the
 * machine side (no SSH), for setting up and checking what deploy-kit did over SSH.
 *
 * Nothing here skips: when the testbed cannot start, ensureTestbed throws and says why.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { LedgerEntry } from "../../src/release/ledger.js";

export const REPO_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const UP_SCRIPT = join(REPO_ROOT, "scripts/testbed/up.sh");
export const EXAMPLE_APP_DIR = join(REPO_ROOT, "examples/app");

export interface TestbedHost {
  /** h1, h2, ...: also the host's hostname. */
  alias: string;
  /** 10.200.0.2 for h1, 10.200.0.3 for h2, ... */
  address: string;
  port: number;
  user: string;
  hostname: string;
  /** Network namespace name (dk-h1) and its file (/run/netns/dk-h1). */
  netns: string;
  netnsPath: string;
  /** Persistent mount and UTS namespace files: enter with nsenter --net --mount --uts. */
  mountNamespace: string;
  utsNamespace: string;
  /** DOCKER_HOST value for this host's engine, usable from the machine side (unix://...). */
  dockerHost: string;
  dockerSocket: string;
  /** sshd log (LogLevel VERBOSE): count "Accepted publickey" lines to count connections. */
  sshdLog: string;
  /** Machine-side directories behind the host's /srv, /home/deploy and /tmp. */
  srvDir: string;
  homeDir: string;
  tmpDir: string;
  hostKeyPub: string;
  /** Which compose answers `docker compose` on this host: v2 (the plugin) or v1 (the legacy shim). */
  compose: "v1" | "v2";
}

export interface Testbed {
  version: 1;
  stateDir: string;
  /** DOCKER_HOST of the engine that builds and pushes (the "runner" side). */
  localDockerHost: string;
  /** Where ports published by the local engine appear (127.0.0.1 normally). */
  localDockerAddress: string;
  /** loopback: the same storage on 127.0.0.1, where the engine's own BuildKit reaches plain HTTP. */
  registry: { plain: string; auth: string; loopback: string; username: string; password: string };
  hosts: TestbedHost[];
  /** A host on a network of its own behind h1: reachable only through h1's sshd (ssh.jump). */
  behindBastion: TestbedHost & { jump: string };
  deployKeyPath: string;
  knownHostsPath: string;
  postgres: {
    host: string;
    port: number;
    database: string;
    user: string;
    password: string;
    url: string;
    adminUrl: string;
    socketDir: string;
  };
  /** h1's second nginx server, for blue-green `switch: file`: it includes `includeFile`. */
  nginxFileSwitch: { url: string; includeFile: string; includeFileOnMachine: string; upstreamName: string };
  nginx: {
    host: string;
    url: string;
    confPath: string;
    reloadCommand: string;
    upstreamFile: string;
    upstreamFileOnMachine: string;
    user: string;
  };
  baseImage: string;
  /** An aarch64 busybox-static (runs here under QEMU), for multi-platform builds. */
  arm64Busybox: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  cwd?: string;
  /** Throw on a non-zero exit (default true). */
  check?: boolean;
  timeoutMs?: number;
}

/** Runs a process (no shell), collects its output; throws with the stderr tail unless check: false. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) {
      timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    }
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`could not run ${cmd}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      const result = {
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      };
      if (result.code !== 0 && opts.check !== false) {
        const tail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-25).join("\n");
        reject(
          new Error(
            `${cmd} ${args.join(" ")} exited ${signal ? `on ${signal}` : result.code}${tail ? `:\n${tail}` : ""}`,
          ),
        );
      } else {
        resolvePromise(result);
      }
    });
    // A process that exits without reading its stdin must not crash the test run with EPIPE.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

function stateDir(): string {
  return process.env.DK_TESTBED_DIR || "/var/lib/deploy-kit-testbed";
}

/** Where up.sh writes testbed.json. */
export function testbedJsonPath(): string {
  return process.env.DK_TESTBED_JSON || join(stateDir(), "testbed.json");
}

/** Why the testbed cannot run on this machine, or undefined when it can (root on Debian). */
export function testbedUnavailableReason(): string | undefined {
  if (process.platform !== "linux") {
    return `the testbed needs root on Debian: this is ${process.platform}, not Linux`;
  }
  if (process.getuid?.() !== 0) {
    return "the testbed needs root on Debian: the end-to-end tests start network namespaces, dockerd, sshd and PostgreSQL through scripts/testbed/up.sh; run them as root (e.g. sudo npm test), or set DK_SKIP_TESTBED=1 and run only tests/unit and tests/contract";
  }
  if (!existsSync("/etc/debian_version") || !existsSync("/usr/bin/apt-get")) {
    return "the testbed needs root on Debian: /etc/debian_version or apt-get is missing on this machine (the testbed installs docker.io, openssh-server, postgresql, ... with apt)";
  }
  return undefined;
}

/** Reads and checks testbed.json. */
export function readTestbed(path = testbedJsonPath()): Testbed {
  const tb = JSON.parse(readFileSync(path, "utf8")) as Testbed;
  if (tb.version !== 1 || !Array.isArray(tb.hosts) || tb.hosts.length === 0) {
    throw new Error(`${path} is not a testbed.json this code understands (version ${String(tb.version)})`);
  }
  return tb;
}

let pending: Promise<Testbed> | undefined;

/**
 * The compose the hosts run in this test run: v2 (the plugin, what users' servers have) unless
 * DK_TESTBED_COMPOSE=v1 (npm test's second pass, the legacy path); up.sh sets the hosts up so.
 * Suites that change a host name it in their titles.
 */
export const HOSTS_COMPOSE: "v1" | "v2" = process.env.DK_TESTBED_COMPOSE === "v1" ? "v1" : "v2";

/**
 * Brings the testbed up (scripts/testbed/up.sh: about a second when it is already up, restarting
 * nothing) once per process and returns testbed.json. Throws, never skips, when it cannot start.
 */
export function ensureTestbed(): Promise<Testbed> {
  pending ??= startTestbed();
  return pending;
}

async function startTestbed(): Promise<Testbed> {
  const reason = testbedUnavailableReason();
  if (reason) throw new Error(reason);
  const result = await run("bash", [UP_SCRIPT], { cwd: REPO_ROOT, check: false, timeoutMs: 15 * 60_000 });
  if (result.code !== 0) {
    const tail = `${result.stdout}\n${result.stderr}`.trim().split("\n").slice(-30).join("\n");
    throw new Error(`the testbed did not start: bash scripts/testbed/up.sh exited ${result.code}:\n${tail}`);
  }
  if (process.env.DK_TESTBED_VERBOSE === "1") process.stderr.write(result.stdout);
  const tb = readTestbed();
  const other = tb.hosts.find((h) => h.compose !== HOSTS_COMPOSE);
  if (other)
    throw new Error(
      `host ${other.alias} runs compose ${other.compose}, but this run is for compose ${HOSTS_COMPOSE}`,
    );
  return tb;
}

// ---------------------------------------------------------------------------------------------
// Reaching into a host from the machine side
// ---------------------------------------------------------------------------------------------

let dockerConfigDir: string | undefined;
/** An empty DOCKER_CONFIG for this process: no test touches ~/.docker or inherits its logins. */
export function isolatedDockerConfig(): string {
  if (!dockerConfigDir) {
    dockerConfigDir = mkdtempSync(join(tmpdir(), "dk-docker-config-"));
    process.once("exit", () => rmSync(dockerConfigDir as string, { recursive: true, force: true }));
  }
  return dockerConfigDir;
}

/** Environment for the docker CLI against an engine (DOCKER_HOST) with an isolated DOCKER_CONFIG. */
export function dockerEnv(dockerHost: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DOCKER_HOST: dockerHost,
    DOCKER_CONFIG: isolatedDockerConfig(),
    // The tests' own helper images use the legacy builder: it works with every engine.
    DOCKER_BUILDKIT: "0",
    DOCKER_CLI_HINTS: "false",
    ...extra,
  };
}

/** Runs `docker <args>` against a host's engine from the machine side. */
export function remoteDocker(
  host: TestbedHost,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  return run("docker", args, { ...opts, env: dockerEnv(host.dockerHost, opts.env) });
}

/** Runs `docker <args>` against the local (build) engine. */
export async function localDocker(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const tb = await ensureTestbed();
  return run("docker", args, { ...opts, env: dockerEnv(tb.localDockerHost, opts.env) });
}

export interface HostExecOptions extends RunOptions {
  /** root (default) or deploy. */
  user?: "root" | "deploy";
}

/**
 * Runs a command inside a host (its network, mount and UTS namespaces: its own /srv, /tmp,
 * /home/deploy, hostname, and DOCKER_HOST pointing at its engine). A string runs through `sh -c`;
 * an array runs as is.
 */
export function hostExec(
  host: TestbedHost,
  cmd: string | readonly string[],
  opts: HostExecOptions = {},
): Promise<RunResult> {
  const argv = typeof cmd === "string" ? ["sh", "-c", cmd] : [...cmd];
  const asUser =
    opts.user === "deploy"
      ? [
          "setpriv",
          "--reuid",
          "deploy",
          "--regid",
          "deploy",
          "--init-groups",
          "env",
          "HOME=/home/deploy",
          "USER=deploy",
          "LOGNAME=deploy",
        ]
      : [];
  return run(
    "nsenter",
    [
      `--net=${host.netnsPath}`,
      `--mount=${host.mountNamespace}`,
      `--uts=${host.utsNamespace}`,
      "--",
      ...asUser,
      ...argv,
    ],
    {
      ...opts,
      env: { ...process.env, DOCKER_HOST: host.dockerHost, ...opts.env },
    },
  );
}

const SAFE_HOST_PATH = /^\/srv\/[A-Za-z0-9._/-]+$/;

/** Where a path on the host (/srv/...) is on the machine. */
export function machinePath(host: TestbedHost, hostPath: string): string {
  if (!SAFE_HOST_PATH.test(hostPath) || hostPath.split("/").includes("..")) {
    throw new Error(`expected a path under /srv without '..', got ${hostPath}`);
  }
  return join(host.srvDir, hostPath.slice("/srv/".length));
}

/**
 * Writes the operator's file (typically /srv/<app>/.env) on a host, as deploy, mode 0600, creating
 * its directory (0755, owned by deploy) when missing. `path` is the path on the host, under /srv.
 */
export async function writeOperatorEnv(host: TestbedHost, path: string, content: string): Promise<void> {
  machinePath(host, path); // validates
  const script = [
    "set -eu",
    'dir=$(dirname "$1")',
    'umask 022; mkdir -p "$dir"',
    'umask 077; cat > "$1.tmp.$$"',
    'chmod 0600 "$1.tmp.$$"',
    'mv -f "$1.tmp.$$" "$1"',
  ].join("\n");
  await hostExec(host, ["sh", "-c", script, "sh", path], { user: "deploy", input: content });
}

const APP_NAME = /^[a-z][a-z0-9-]*$/;

/**
 * Test isolation: removes everything of `app` on a host: the containers of compose project `app`
 * or of any project run from /srv/<app> (blue/green variants too), their networks and volumes,
 * and the directory /srv/<app> (releases, ledger, lock, .env).
 */
export async function resetHost(host: TestbedHost, app: string): Promise<void> {
  if (!APP_NAME.test(app)) throw new Error(`not an app name: ${app}`);
  const dir = `/srv/${app}`;
  const listed = await remoteDocker(host, [
    "ps",
    "-a",
    "--format",
    '{{.ID}}\t{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.project.working_dir"}}',
  ]);
  const ids: string[] = [];
  const projects = new Set<string>([app]);
  for (const line of listed.stdout.split("\n")) {
    const [id, project = "", workdir = ""] = line.split("\t");
    if (!id) continue;
    if (project === app || workdir === dir || workdir.startsWith(`${dir}/`)) {
      ids.push(id);
      if (project) projects.add(project);
    }
  }
  if (ids.length) await remoteDocker(host, ["rm", "-f", "-v", ...ids]);
  for (const project of projects) {
    const label = `label=com.docker.compose.project=${project}`;
    const nets = (await remoteDocker(host, ["network", "ls", "-q", "--filter", label])).stdout
      .split("\n")
      .filter(Boolean);
    if (nets.length) await remoteDocker(host, ["network", "rm", ...nets], { check: false });
    const vols = (await remoteDocker(host, ["volume", "ls", "-q", "--filter", label])).stdout
      .split("\n")
      .filter(Boolean);
    if (vols.length) await remoteDocker(host, ["volume", "rm", "-f", ...vols], { check: false });
  }
  rmSync(machinePath(host, dir), { recursive: true, force: true });
}

export interface ExampleImageOptions {
  /** Tag to push (default sha-<first 12 of gitSha>). */
  tag?: string;
  /** GIT_SHA build arg (default: 40 random hex digits). */
  gitSha?: string;
  /** APP_VERSION build arg (default 1.0.0). */
  version?: string;
  /** APP_MODE build arg: ok | crash | unhealthy | slow (default ok). */
  mode?: "ok" | "crash" | "unhealthy" | "slow";
  /** Adds the migration that fails halfway (MIGRATION_FAIL=1). */
  migrationFail?: boolean;
  /** Repository under the plain registry (default example-app). */
  repository?: string;
  buildDate?: string;
}

export interface ExampleImage {
  /** name@sha256:... (what deploy-kit deploys). */
  ref: string;
  /** name:tag */
  tagRef: string;
  name: string;
  tag: string;
  digest: string;
  gitSha: string;
  version: string;
}

/** Builds examples/app with the local engine and pushes it to the plain registry (10.200.0.1:5000). */
export async function buildExampleImage(opts: ExampleImageOptions = {}): Promise<ExampleImage> {
  const tb = await ensureTestbed();
  const gitSha = opts.gitSha ?? randomBytes(20).toString("hex");
  const version = opts.version ?? "1.0.0";
  const tag = opts.tag ?? `sha-${gitSha.slice(0, 12)}`;
  const name = `${tb.registry.plain}/${opts.repository ?? "example-app"}`;
  const tagRef = `${name}:${tag}`;
  const env = dockerEnv(tb.localDockerHost);
  await run(
    "docker",
    [
      "build",
      "--quiet",
      "--tag",
      tagRef,
      "--build-arg",
      `BASE_IMAGE=${tb.baseImage}`,
      "--build-arg",
      `GIT_SHA=${gitSha}`,
      "--build-arg",
      `APP_VERSION=${version}`,
      "--build-arg",
      `BUILD_DATE=${opts.buildDate ?? new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
      "--build-arg",
      `APP_MODE=${opts.mode ?? "ok"}`,
      "--build-arg",
      `MIGRATION_FAIL=${opts.migrationFail ? 1 : 0}`,
      EXAMPLE_APP_DIR,
    ],
    { env },
  );
  const pushed = await run("docker", ["push", tagRef], { env });
  const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1];
  if (!digest) throw new Error(`docker push ${tagRef} printed no digest:\n${pushed.stdout}`);
  return { ref: `${name}@${digest}`, tagRef, name, tag, digest, gitSha, version };
}

/**
 * The compose file the e2e suites deploy: the example app as service `api` with its healthcheck,
 * its port 8080 published on the port the operator's .env names in `portVar`, or not published
 * at all (blue-green publishes each colour's port itself). deploy-kit sets the image.
 */
export function exampleCompose(opts: { portVar?: string; restart?: boolean } = {}): string {
  return [
    "services:",
    "  api:",
    "    image: placeholder/overridden-by-deploy-kit",
    "    init: true",
    ...(opts.restart ? ["    restart: unless-stopped"] : []),
    ...(opts.portVar ? [`    ports: ["\${${opts.portVar}}:8080"]`] : []),
    "    healthcheck:",
    '      test: ["CMD", "/app/bin/healthcheck"]',
    "      interval: 1s",
    "      timeout: 2s",
    "      retries: 2",
    "",
  ].join("\n");
}

/** Polls an HTTP URL until `accept` says yes (default: status 200); returns the last response. */
export async function waitForHttp(
  url: string,
  opts: { timeoutMs?: number; intervalMs?: number; accept?: (status: number, body: string) => boolean } = {},
): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const accept = opts.accept ?? ((status: number) => status === 200);
  let last: { status: number; body: string } | undefined;
  let lastError = "";
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
      last = { status: res.status, body: await res.text() };
      if (accept(last.status, last.body)) return last;
    } catch (e) {
      lastError = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${url} did not answer as expected in time; last: ${last ? `${last.status} ${last.body.slice(0, 200)}` : lastError}`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}

/** OpenSSH client argv for a host with the deploy key and the pinned known_hosts (no TOFU). */
export function sshArgs(tb: Testbed, host: TestbedHost, knownHostsPath = tb.knownHostsPath): string[] {
  return [
    "-F",
    "/dev/null",
    "-i",
    tb.deployKeyPath,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${knownHostsPath}`,
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=ERROR",
    "-p",
    String(host.port),
    `${host.user}@${host.address}`,
  ];
}

/** Runs a command on a host over real SSH (OpenSSH client, pinned host key). */
export async function sshExec(host: TestbedHost, command: string, opts: RunOptions = {}): Promise<RunResult> {
  const tb = await ensureTestbed();
  return run("ssh", [...sshArgs(tb, host), command], opts);
}

/** A testbed host's release ledger for an app deployed to /srv/<app>, read from its filesystem. */
export function hostLedger(host: TestbedHost, app: string): LedgerEntry[] {
  const f = join(machinePath(host, `/srv/${app}`), ".deploy-kit/releases.jsonl");
  return existsSync(f)
    ? readFileSync(f, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LedgerEntry)
    : [];
}
