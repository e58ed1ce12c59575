// Helpers of the deploy-ssh and rollback e2e suites: the testbed's facts (testbed.json) plus the
// few host inspections these suites need. Everything they create is named t3-*.
import { execFileSync } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ssh2 from "ssh2";
import type { LedgerEntry } from "../../src/release/ledger.js";

export interface BedHost {
  alias: string;
  address: string;
  dockerHost: string;
  sshdLog: string;
  srvDir: string;
  homeDir: string;
  tmpDir: string;
}

const TESTBED_JSON = process.env.DK_TESTBED_JSON || "/var/lib/deploy-kit-testbed/testbed.json";

export function ledgerOf(h: BedHost, app: string): LedgerEntry[] {
  const f = join(h.srvDir, app, ".deploy-kit/releases.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LedgerEntry);
}

// The app: busybox httpd serving /health with the version stamped in; APP_MODE=crash exits at
// start, unhealthy serves no /health (its healthcheck fails). FROM scratch: no base image needed.
const DOCKERFILE = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
ARG APP_VERSION=dev
ARG APP_MODE=ok
RUN mkdir -p /www && if [ "$APP_MODE" != unhealthy ]; then printf '{"status":"ok","version":"%s"}' "$APP_VERSION" > /www/health; fi
ENV APP_MODE=$APP_MODE
CMD ["sh","-c","if [ \\"$APP_MODE\\" = crash ]; then echo crashing >&2; exit 3; fi; exec httpd -f -p 8080 -h /www"]
`;

function imageContext(): string {
  const dir = mkdtempSync(join(tmpdir(), "t3-image-"));
  writeFileSync(join(dir, "Dockerfile"), DOCKERFILE);
  execFileSync("cp", ["/bin/busybox", join(dir, "busybox")]);
  return dir;
}

export async function t3Bed() {
  const tb = JSON.parse(readFileSync(TESTBED_JSON, "utf8"));
  const hosts: BedHost[] = tb.hosts;
  const owner = statSync(hosts[0]!.srvDir);
  const dockerConfig = mkdtempSync(join(tmpdir(), "t3-docker-"));
  const registry: string = tb.registry.auth;
  execFileSync(
    "docker",
    ["--config", dockerConfig, "login", "-u", tb.registry.username, "--password-stdin", registry],
    {
      input: tb.registry.password,
      stdio: ["pipe", "ignore", "inherit"],
    },
  );
  const chown = (p: string) => execFileSync("chown", ["-R", `${owner.uid}:${owner.gid}`, p]);
  const docker = (h: BedHost, args: string[]) =>
    execFileSync("docker", ["-H", h.dockerHost, ...args], { encoding: "utf8" }).trim();
  const context = imageContext();
  const bed = {
    registry,
    registryUser: tb.registry.username as string,
    registryPassword: tb.registry.password as string,
    hosts,
    sshKey: readFileSync(tb.deployKeyPath, "utf8"),
    knownHosts: readFileSync(tb.knownHostsPath, "utf8"),
    /** A real key that is not any host's. */
    otherHostKey: ssh2.utils.generateKeyPairSync("ed25519").public.trim().split(" ").slice(0, 2).join(" "),
    workspace: "",
    /** Build the tiny app image (version stamped in /health; mode crash exits at start) and push it. */
    buildImage(version: string, mode: "ok" | "crash" | "unhealthy"): string {
      const tag = `${registry}/t3/app:${version}-${mode}`;
      execFileSync(
        "docker",
        [
          "build",
          "-q",
          "-t",
          tag,
          "--build-arg",
          `APP_VERSION=${version}`,
          "--build-arg",
          `APP_MODE=${mode}`,
          context,
        ],
        { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, DOCKER_BUILDKIT: "0" } },
      );
      execFileSync("docker", ["--config", dockerConfig, "push", "-q", tag], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      const digests = execFileSync("docker", ["image", "inspect", "--format", "{{json .RepoDigests}}", tag], {
        encoding: "utf8",
      });
      const ref = (JSON.parse(digests) as string[]).find((d) => d.startsWith(`${registry}/t3/app@`));
      if (!ref) throw new Error(`no digest for ${tag}`);
      return ref;
    },
    /** Remove the app's containers, images of t3/app, and its directory on the host. */
    resetApp(h: BedHost, app: string) {
      const ids = docker(h, ["ps", "-aq", "--filter", `label=com.docker.compose.project=${app}`]);
      if (ids) docker(h, ["rm", "-f", ...ids.split("\n")]);
      execFileSync("rm", ["-rf", join(h.srvDir, app)]);
      mkdirSync(join(h.srvDir, app));
      chown(join(h.srvDir, app));
    },
    /** The operator's .env: mode 600, owned by the deploy user. */
    writeEnv(h: BedHost, app: string, text: string) {
      const f = join(h.srvDir, app, ".env");
      writeFileSync(f, text, { mode: 0o600 });
      chown(f);
    },
    chownToDeploy: chown,
    /** SSH logins the host's sshd accepted so far: its own log, the honest count of handshakes. */
    acceptedLogins(h: BedHost): number {
      return readFileSync(h.sshdLog, "utf8")
        .split("\n")
        .filter((l) => l.includes("Accepted publickey")).length;
    },
    async health(h: BedHost, port: number): Promise<Record<string, unknown>> {
      const res = await fetch(`http://${h.address}:${port}/health`, { signal: AbortSignal.timeout(3000) });
      return (await res.json()) as Record<string, unknown>;
    },
    containerIds(h: BedHost, app: string): string {
      return docker(h, ["ps", "-q", "--no-trunc", "--filter", `label=com.docker.compose.project=${app}`]);
    },
    imageRefsOnHost(h: BedHost): string[] {
      return docker(h, [
        "image",
        "ls",
        "--digests",
        "--format",
        "{{.Repository}}@{{.Digest}}",
        `${registry}/t3/app`,
      ])
        .split("\n")
        .filter(Boolean);
    },
  };
  return bed;
}

export type T3Bed = Awaited<ReturnType<typeof t3Bed>>;

/** What a person could see of a run: everything but the ::add-mask:: commands the runner consumes. */
export function visible(everything: string): string {
  return everything
    .split("\n")
    .filter((l) => !l.startsWith("::add-mask::"))
    .join("\n");
}
