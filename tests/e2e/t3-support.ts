// Helpers of the deploy-ssh and rollback e2e suites, on top of the shared testbed helpers.
// Everything these suites create is named t3-* (apps, paths, image repository).
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import ssh2 from "ssh2";
import type { LedgerEntry } from "../../src/release/ledger.js";
import {
  buildExampleImage,
  ensureTestbed,
  localDocker,
  remoteDocker,
  resetHost,
  type TestbedHost,
  writeOperatorEnv,
} from "../support/testbed.js";

export type BedHost = TestbedHost;

export function ledgerOf(h: BedHost, app: string): LedgerEntry[] {
  const f = join(h.srvDir, app, ".deploy-kit/releases.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LedgerEntry);
}

/** What a person could see of a run: everything but the ::add-mask:: commands the runner consumes. */
export function visible(everything: string): string {
  return everything
    .split("\n")
    .filter((l) => !l.startsWith("::add-mask::"))
    .join("\n");
}

export async function t3Bed() {
  const tb = await ensureTestbed();
  const registry = tb.registry.auth;
  const repository = `${registry}/t3/app`;
  // The private registry, so every deploy exercises the temporary login on the host.
  await localDocker(["login", "-u", tb.registry.username, "--password-stdin", registry], {
    input: tb.registry.password,
  });
  return {
    registry,
    repository,
    registryUser: tb.registry.username,
    registryPassword: tb.registry.password,
    hosts: tb.hosts,
    sshKey: readFileSync(tb.deployKeyPath, "utf8"),
    knownHosts: readFileSync(tb.knownHostsPath, "utf8"),
    /** A real key that is not any host's. */
    otherHostKey: ssh2.utils.generateKeyPairSync("ed25519").public.trim().split(" ").slice(0, 2).join(" "),
    workspace: "",
    /** The example app (APP_VERSION stamped in /health), pushed to the private registry; name@digest. */
    async buildImage(version: string, mode: "ok" | "crash" | "unhealthy"): Promise<string> {
      const img = await buildExampleImage({
        repository: "t3-app",
        version,
        mode,
        tag: `t3-${version}-${mode}`,
      });
      const tag = `${repository}:${version}-${mode}`;
      await localDocker(["tag", img.tagRef, tag]);
      const pushed = await localDocker(["push", tag]);
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1];
      if (!digest) throw new Error(`no digest for ${tag}`);
      return `${repository}@${digest}`;
    },
    resetApp: (h: BedHost, app: string) => resetHost(h, app),
    /** The operator's .env: mode 600, owned by the deploy user. */
    writeEnv: (h: BedHost, app: string, text: string) => writeOperatorEnv(h, `/srv/${app}/.env`, text),
    /**
     * The sshd log entries of the connections a run made. The shared sshd serves every suite with
     * one deploy key, so a run's connections are told apart by the local ports it reports; the
     * host's own log then says whether each was accepted.
     */
    /** Where every sshd log ends now: sshdEntries reads only what a run appends after it. */
    sshdMark(): SshdMark {
      return new Map([...tb.hosts, tb.behindBastion].map((h) => [h.sshdLog, statSync(h.sshdLog).size]));
    },
    sshdEntries(
      h: BedHost,
      runOutput: string,
      since: SshdMark,
    ): { ports: number[]; accepted: number; connected: number } {
      const re = new RegExp(`\\[${h.alias}\\] ssh connection from local port (\\d+)`, "g");
      const ports = [...runOutput.matchAll(re)].map((m) => Number(m[1]));
      // Only this run's part of the log: a local port number recurs over a long test session.
      const log = readFileSync(h.sshdLog)
        .subarray(since.get(h.sshdLog) ?? 0)
        .toString("utf8")
        .split("\n");
      const mine = (l: string) => ports.some((p) => l.includes(` port ${p} `) || l.endsWith(` port ${p}`));
      return {
        ports,
        accepted: log.filter((l) => l.includes("Accepted publickey") && mine(l)).length,
        connected: log.filter((l) => l.startsWith("Connection from") && mine(l)).length,
      };
    },
    async health(h: BedHost, port: number): Promise<Record<string, unknown>> {
      const res = await fetch(`http://${h.address}:${port}/health`, { signal: AbortSignal.timeout(3000) });
      return (await res.json()) as Record<string, unknown>;
    },
    async containerIds(h: BedHost, app: string): Promise<string> {
      const r = await remoteDocker(h, [
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        `label=com.docker.compose.project=${app}`,
      ]);
      return r.stdout.trim();
    },
    async imageRefsOnHost(h: BedHost): Promise<string[]> {
      const r = await remoteDocker(h, [
        "image",
        "ls",
        "--digests",
        "--format",
        "{{.Repository}}@{{.Digest}}",
        repository,
      ]);
      return r.stdout.split("\n").filter(Boolean);
    },
  };
}

export type T3Bed = Awaited<ReturnType<typeof t3Bed>>;
export type SshdMark = Map<string, number>;
