// Helpers of the adversarial e2e suites (injection, secrets, faults, concurrency) on the shared
// testbed. Everything they create is named t9-*: apps, /srv/t9-*, ports 189xx, databases t9_*.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryLog } from "../../src/core/log.js";
import type { HeldLockRecord } from "../../src/deploy/operation.js";
import { type PipelineResult, runPipeline } from "../../src/pipeline/deploy.js";
import { parseLedger } from "../../src/release/ledger.js";
import { type RunResult, runBundled } from "../support/runner.js";
import {
  buildExampleImage,
  type ExampleImage,
  ensureTestbed,
  hostExec,
  REPO_ROOT,
  run,
  type Testbed,
  type TestbedHost,
  UP_SCRIPT,
} from "../support/testbed.js";

export const sha = (n: number) => n.toString(16).padStart(2, "0").repeat(20);

export interface AdvBed {
  tb: Testbed;
  h1: TestbedHost;
  h2: TestbedHost;
  sshKey: string;
  knownHosts: string;
}

export async function advBed(): Promise<AdvBed> {
  const tb = await ensureTestbed();
  return {
    tb,
    h1: tb.hosts[0]!,
    h2: tb.hosts[1] ?? tb.hosts[0]!,
    sshKey: readFileSync(tb.deployKeyPath, "utf8"),
    knownHosts: readFileSync(tb.knownHostsPath, "utf8"),
  };
}

export type ImageKind = "v1" | "v2" | "crash" | "unhealthy" | "migfail";
const KINDS: Record<ImageKind, { n: number; mode: "ok" | "crash" | "unhealthy"; migrationFail?: boolean }> = {
  v1: { n: 0x91, mode: "ok" },
  v2: { n: 0x92, mode: "ok" },
  crash: { n: 0x93, mode: "crash" },
  unhealthy: { n: 0x94, mode: "unhealthy" },
  migfail: { n: 0x95, mode: "ok", migrationFail: true },
};

/** The example app in each mode, pushed to the plain registry as t9-app (the builder's cache makes rebuilds quick). */
export async function buildImages(kinds: readonly ImageKind[]): Promise<Record<ImageKind, ExampleImage>> {
  const out = {} as Record<ImageKind, ExampleImage>;
  for (const k of kinds) {
    const spec = KINDS[k];
    out[k] = await buildExampleImage({
      repository: "t9-app",
      gitSha: sha(spec.n),
      tag: `t9-${k}`,
      version: k,
      mode: spec.mode,
      migrationFail: spec.migrationFail,
      buildDate: "2026-01-01T00:00:00Z",
    });
  }
  return out;
}

/** The app's compose file: the port comes from the operator's .env on the host. */
export const COMPOSE = `services:
  api:
    image: \${API_IMAGE:-unset}
    init: true
    ports:
      - "\${T9_PORT}:8080"
    env_file: .env
    healthcheck:
      test: ["CMD", "/app/bin/healthcheck"]
      interval: 1s
      timeout: 2s
      retries: 2
`;

export interface WorkspaceOptions {
  app: string;
  hosts: readonly TestbedHost[];
  port: number;
  registry: string;
  /** Lines appended to the environment (indented 4 spaces by the caller). */
  extra?: string;
  /** Replaces the default lock/health/ssh lines. */
  timing?: string;
  top?: string;
}

/** A checkout with deploy-kit.yml and compose.yml; short timeouts so faults end quickly. */
export function workspace(o: WorkspaceOptions): string {
  const ws = mkdtempSync(join(tmpdir(), `${o.app}-ws-`));
  writeFileSync(join(ws, "compose.yml"), COMPOSE);
  writeFileSync(
    join(ws, "deploy-kit.yml"),
    `version: 1
app: ${o.app}
image:
  name: ${o.registry}/t9-app
environments:
  e2e:
    url: http://${o.hosts[0]!.address}:${o.port}
    hosts:
${o.hosts.map((h) => `      - { host: ${h.address}, user: deploy, alias: ${h.alias} }`).join("\n")}
    path: /srv/${o.app}
    parallel: ${o.hosts.length}
    compose: { file: compose.yml, service: api }
    env-file: { required-keys: [T9_PORT] }
${
  o.timing ??
  `    health: { timeout: 8s, interval: 500ms }
    lock: { wait: 5s, lease: 2m }
    ssh: { connect-timeout: 5s, keepalive: 1s }`
}
    rollback: { on-failure: true, keep-releases: 3 }
${o.extra ?? ""}${o.top ?? ""}`,
  );
  return ws;
}

// ---------------------------------------------------------------------------------------------
// Running the deploy: bundled (as the runner does, with a line-by-line trigger) or in process
// (with a Log whose groups can inject a fault before the phase's first command: deterministic).
// ---------------------------------------------------------------------------------------------

export interface StreamingOptions {
  inputs?: Record<string, string>;
  env?: Record<string, string>;
  state?: Record<string, string>;
  cwd: string;
  timeoutMs?: number;
  /** Each stdout line as it arrives, with the child (to signal it). */
  onLine?: (line: string, child: ChildProcess) => void;
}

export type StreamingResult = RunResult;

/** runBundled (tests/support/runner.ts) with a line callback and a timeline of stdout. */
export function runStreaming(entry: string, opts: StreamingOptions): Promise<StreamingResult> {
  return runBundled(entry, { ...opts, timeoutMs: opts.timeoutMs ?? 180_000 });
}

/** A MemoryLog that runs `before(title)` when a group starts, before the group's first command. */
export class TriggerLog extends MemoryLog {
  fired: string[] = [];
  constructor(private readonly triggers: { match: RegExp; fire: () => Promise<void> }[]) {
    super();
  }
  override async group<T>(title: string, fn: () => Promise<T>): Promise<T> {
    for (const t of this.triggers) {
      if (t.match.test(title) && !this.fired.includes(t.match.source)) {
        this.fired.push(t.match.source);
        await t.fire();
      }
    }
    return super.group(title, fn);
  }
}

export interface InProcessDeploy {
  result: PipelineResult;
  log: TriggerLog;
  /** The lock record the action would have saved for its post step ("" once released). */
  lock: HeldLockRecord | undefined;
  ms: number;
}

/** The deploy action's domain (runPipeline) in this process, as the action calls it. */
export async function deployInProcess(
  bed: AdvBed,
  ws: string,
  o: {
    imageRef: string;
    gitSha: string;
    log: TriggerLog;
    requireBackup?: boolean;
    runUrl?: string;
  },
): Promise<InProcessDeploy> {
  let lock: HeldLockRecord | undefined;
  // compose.file is read relative to the checkout, as on the runner.
  process.env.GITHUB_WORKSPACE = ws;
  const t = Date.now();
  const result = await runPipeline({
    configFile: join(ws, "deploy-kit.yml"),
    environment: "e2e",
    imageRef: o.imageRef,
    gitSha: o.gitSha,
    secrets: { sshKey: bed.sshKey, knownHosts: bed.knownHosts },
    requireBackup: o.requireBackup ?? false,
    actor: "t9-adversarial",
    runUrl: o.runUrl ?? `https://github.com/acme/t9/actions/runs/${Date.now()}`,
    lockState: {
      save: (r) => {
        lock = r;
      },
      clear: () => {
        lock = undefined;
      },
    },
    log: o.log,
  });
  return { result, log: o.log, lock, ms: Date.now() - t };
}

// ---------------------------------------------------------------------------------------------
// Looking at a host afterwards (through its own namespaces: works for a tmpfs mounted inside it)
// ---------------------------------------------------------------------------------------------

export async function hostFile(h: TestbedHost, path: string): Promise<string | undefined> {
  const r = await hostExec(h, ["cat", path], { check: false });
  return r.code === 0 ? r.stdout : undefined;
}

export interface LedgerCheck {
  lines: string[];
  entries: ReturnType<typeof parseLedger>;
  /** Lines that are not entries (a torn write). */
  bad: number[];
}

export async function ledgerOf(h: TestbedHost, app: string): Promise<LedgerCheck> {
  const text = (await hostFile(h, `/srv/${app}/.deploy-kit/releases.jsonl`)) ?? "";
  const bad: number[] = [];
  const entries = parseLedger(text, (n) => bad.push(n));
  return { lines: text.split("\n").filter(Boolean), entries, bad };
}

export async function lockInfo(
  h: TestbedHost,
  app: string,
): Promise<{ owner?: string; token?: string; acquired?: number; lease?: number } | undefined> {
  const text = await hostFile(h, `/srv/${app}/.deploy-kit/lock/info.json`);
  if (text === undefined) {
    const dir = await hostExec(h, ["test", "-d", `/srv/${app}/.deploy-kit/lock`], { check: false });
    return dir.code === 0 ? {} : undefined;
  }
  return JSON.parse(text);
}

export async function backupsOf(h: TestbedHost, app: string): Promise<string[]> {
  const r = await hostExec(h, ["sh", "-c", `ls -1 /srv/${app}/.deploy-kit/backups 2>/dev/null || true`]);
  return r.stdout.split("\n").filter((f) => f.endsWith(".dump"));
}

export async function healthOf(h: TestbedHost, port: number): Promise<{ git_sha?: string; status?: string }> {
  try {
    const res = await fetch(`http://${h.address}:${port}/health`, { signal: AbortSignal.timeout(3000) });
    return (await res.json()) as { git_sha?: string };
  } catch (e) {
    return { status: `unreachable: ${(e as Error).message}` };
  }
}

/** Restarts whatever of the testbed is missing (sshd, registry, PostgreSQL, links): idempotent. */
export async function restoreTestbed(): Promise<void> {
  await run("bash", [UP_SCRIPT], { cwd: REPO_ROOT, timeoutMs: 300_000 });
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}
