// Faults on the testbed's host 2, each injected at a fixed point of a real deploy (a log group
// starting, before its first command), each followed by the same four checks: the host serves
// the last good release, the lock is released (by the run or its post step) or expires, the
// ledger parses and names the last good release, and every backup taken is still there.
// Isolation: apps t9-fault / t9-disk on h2, ports 18901/18902, database t9_fault.
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { MemoryLog } from "../../src/core/log.js";
import { releaseRecordedLock } from "../../src/deploy/operation.js";
import { recordTally } from "../support/tally.js";
import {
  type ExampleImage,
  hostExec,
  remoteDocker,
  resetHost,
  run,
  type TestbedHost,
  writeOperatorEnv,
} from "../support/testbed.js";
import {
  type AdvBed,
  advBed,
  backupsOf,
  buildImages,
  deployInProcess,
  healthOf,
  type ImageKind,
  type InProcessDeploy,
  ledgerOf,
  lockInfo,
  restoreTestbed,
  runStreaming,
  sha,
  TriggerLog,
  workspace,
} from "./support.js";

const APP = "t9-fault";
const DISK_APP = "t9-disk";
const PORT = 18901;
const DISK_PORT = 18902;
const DB = "t9_fault";

let bed: AdvBed;
let h: TestbedHost;
let img: Record<ImageKind, ExampleImage>;
let ws: string;
const report: { fault: string; outcome: string; ok: boolean }[] = [];

const EXTRA = `    migrate:
      command: migrate
      timeout: 60s
      backup: { service: api, database-env: DATABASE_URL, keep: 20 }
    smoke:
      retries: 3
      interval: 500ms
      timeout: 3s
      checks:
        - { path: /health, json: { status: ok }, version-field: git_sha }
`;

async function psqlAdmin(sql: string, db = "postgres") {
  return run("psql", [`postgres://postgres@127.0.0.1:${bed.tb.postgres.port}/${db}`, "-X", "-At", "-c", sql]);
}

/** The post step's work, as the runner runs it after a failed or cancelled main step. */
async function postStep(d: InProcessDeploy, workspaceDir = ws): Promise<void> {
  if (!d.lock) return;
  await releaseRecordedLock({
    configFile: join(workspaceDir, "deploy-kit.yml"),
    environment: "e2e",
    secrets: { sshKey: bed.sshKey, knownHosts: bed.knownHosts },
    record: d.lock,
    log: new MemoryLog(),
  });
}

/** Removes an image from the host so the next deploy has to pull it. */
async function forgetImage(ref: string) {
  await remoteDocker(h, ["image", "rm", ref], { check: false });
}

interface Invariants {
  app?: string;
  port?: number;
  good: ExampleImage;
  backupsBefore: string[];
}

/** The four invariants after a fault. */
async function assertInvariants(label: string, o: Invariants) {
  const app = o.app ?? APP;
  // 1. The last good release serves.
  expect((await healthOf(h, o.port ?? PORT)).git_sha, `${label}: serving`).toBe(o.good.gitSha);
  // 2. The lock is released, or (when the host could not be reached to release it) expires.
  const lock = await lockInfo(h, app);
  if (lock) {
    expect(lock.acquired, `${label}: a lock is left: it must carry its lease`).toBeTypeOf("number");
    expect(lock.lease!, `${label}: lease`).toBeLessThanOrEqual(120);
  }
  // 3. The ledger parses line by line and its last good entry is the serving release.
  const ledger = await ledgerOf(h, app);
  expect(ledger.bad, `${label}: torn ledger lines`).toEqual([]);
  const lastGood = ledger.entries.filter((e) => e.kind !== "migrate" && e.status === "succeeded").at(-1);
  expect(lastGood?.["image-ref"], `${label}: ledger's last good release`).toBe(o.good.ref);
  // 4. Every backup taken before is still there.
  const backups = await backupsOf(h, app);
  for (const b of o.backupsBefore) expect(backups, `${label}: backup ${b}`).toContain(b);
  return { lock, ledger, backups };
}

function trigger(match: RegExp, fire: () => Promise<void>) {
  return new TriggerLog([{ match, fire }]);
}

async function deploy(kind: ImageKind, log = new TriggerLog([]), gitSha?: string) {
  return deployInProcess(bed, ws, {
    imageRef: img[kind].ref,
    gitSha: gitSha ?? img[kind].gitSha,
    log,
    requireBackup: true,
  });
}

function errorOf(d: InProcessDeploy): string {
  return d.result.error?.message ?? "";
}

function note(fault: string, d: InProcessDeploy | undefined, extra = "") {
  const line = d
    ? `${d.result.error ? "failed" : "succeeded"} in ${(d.ms / 1000).toFixed(1)} s${d.result.rolledBack ? ", rolled back" : ""}: ${errorOf(d).split("\n")[0] ?? ""}`
    : "";
  report.push({ fault, outcome: `${line}${extra ? ` ${extra}` : ""}`.trim(), ok: true });
}

/** Each fault test registers itself; a failing assertion marks it failed for the tally. */
async function fault(name: string, body: () => Promise<void>) {
  try {
    await body();
  } catch (e) {
    report.push({ fault: name, outcome: `TEST FAILED: ${(e as Error).message.split("\n")[0]}`, ok: false });
    throw e;
  }
}

beforeAll(async () => {
  bed = await advBed();
  h = bed.h2;
  img = await buildImages(["v1", "v2", "crash", "unhealthy", "migfail"]);
  await psqlAdmin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await psqlAdmin(`CREATE DATABASE ${DB} OWNER ${bed.tb.postgres.user}`);
  const url = `postgres://${bed.tb.postgres.user}:${bed.tb.postgres.password}@${bed.tb.postgres.host}:${bed.tb.postgres.port}/${DB}`;
  await resetHost(h, APP);
  await writeOperatorEnv(h, `/srv/${APP}/.env`, `DATABASE_URL=${url}\nT9_PORT=${PORT}\n`);
  ws = workspace({ app: APP, hosts: [h], port: PORT, registry: bed.tb.registry.plain, extra: EXTRA });
  const first = await deploy("v1");
  expect(first.result.error?.message ?? "", first.log.text()).toBe("");
}, 600_000);

afterAll(async () => {
  const failures = report.filter((r) => !r.ok).length;
  recordTally({ category: "faults", tried: report.length, failures });
  if (process.env.DK_ADVERSARIAL_VERBOSE === "1")
    for (const r of report) process.stdout.write(`fault ${r.fault}: ${r.outcome}\n`);
  await restoreTestbed().catch(() => {});
  if (h) await resetHost(h, APP).catch(() => {});
  if (bed) await psqlAdmin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => {});
});

// A failed test may leave its lock (the assertion said so already): the next fault starts clean.
afterEach(async () => {
  await hostExec(h, ["rm", "-rf", `/srv/${APP}/.deploy-kit/lock`], { check: false });
});

const LOST_CONNECTION =
  /The SSH connection to h2 was lost (before|at the start of|during) [^;]+; that step did not finish\. (Nothing on h2 was switched: release \S+ keeps serving\.|h2 was being switched to release \S+, so it may run the new containers)/;

describe("faults on host 2 during a real deploy (migrate with backup -> deploy -> smoke)", () => {
  test("sshd killed when the release starts (after the migration and its backup)", () =>
    fault("sshd killed", async () => {
      const backupsBefore = await backupsOf(h, APP);
      await forgetImage(img.v2.ref);
      const log = trigger(/^Deploy /, async () => {
        // Every sshd of the host: the listener and the session process serving this connection.
        const pids = (await run("ip", ["netns", "pids", h.netns])).stdout.split("\n").filter(Boolean);
        for (const pid of pids) {
          const comm = (await run("cat", [`/proc/${pid}/comm`], { check: false })).stdout.trim();
          if (comm === "sshd") await run("kill", ["-KILL", pid], { check: false });
        }
      });
      let d: InProcessDeploy | undefined;
      try {
        d = await deploy("v2", log);
      } finally {
        await restoreTestbed();
      }
      expect(log.fired).toHaveLength(1);
      // Said as what it is: the connection, the host, the step, and what the host was left running.
      expect(errorOf(d)).toMatch(LOST_CONNECTION);
      // The backup of this run was taken before the fault and stays.
      const backups = await backupsOf(h, APP);
      expect(backups.length).toBe(backupsBefore.length + 1);
      // The lock could not be released over the dead connection: the post step does it.
      expect(d.lock, "the lock record stays for the post step").toBeDefined();
      expect(await lockInfo(h, APP)).toBeDefined();
      await postStep(d);
      expect(await lockInfo(h, APP)).toBeUndefined();
      await assertInvariants("sshd killed", { good: img.v1, backupsBefore: backups });
      note("sshd killed (all sshd of h2, when the Deploy group starts)", d, "; post step released the lock");
    }));

  test("network to the host cut when the release starts (link down)", () =>
    fault("network cut", async () => {
      const backupsBefore = await backupsOf(h, APP);
      const veth = `${h.netns}-br`;
      const log = trigger(/^Deploy /, async () => {
        await run("ip", ["link", "set", veth, "down"]);
      });
      let d: InProcessDeploy | undefined;
      try {
        d = await deploy("v2", log);
      } finally {
        await run("ip", ["link", "set", veth, "up"]);
      }
      expect(log.fired).toHaveLength(1);
      expect(errorOf(d)).toMatch(LOST_CONNECTION);
      // keepalive 1 s x 3: the dead link is noticed in seconds, not hung on.
      expect(d.ms).toBeLessThan(60_000);
      expect(d.lock, "the lock record stays for the post step").toBeDefined();
      await postStep(d);
      expect(await lockInfo(h, APP)).toBeUndefined();
      await assertInvariants("network cut", { good: img.v1, backupsBefore });
      note("network cut (veth down when the Deploy group starts)", d, "; post step released the lock");
    }));

  test("the registry down during the pull", () =>
    fault("registry down", async () => {
      const backupsBefore = await backupsOf(h, APP);
      await forgetImage(img.v2.ref);
      const pidFile = join(bed.tb.stateDir, "registry/plain.pid");
      const log = trigger(/^Pull /, async () => {
        const pid = (await run("cat", [pidFile])).stdout.trim();
        await run("kill", ["-TERM", pid]);
        // Gone before the pull starts.
        for (let i = 0; i < 50; i++) {
          if ((await run("kill", ["-0", pid], { check: false })).code !== 0) break;
          await new Promise((r) => setTimeout(r, 50));
        }
      });
      let d: InProcessDeploy | undefined;
      try {
        d = await deploy("v2", log);
      } finally {
        await restoreTestbed(); // the registry is shared: back at once
      }
      expect(log.fired).toHaveLength(1);
      expect(errorOf(d)).toMatch(/pull/i);
      expect(await lockInfo(h, APP)).toBeUndefined();
      expect(d.lock).toBeUndefined();
      await assertInvariants("registry down", { good: img.v1, backupsBefore });
      note("registry down during the pull (migrate's Pull group)", d);
    }));

  test("the new container crash-loops: health gate fails, previous release back", () =>
    fault("crash loop", async () => {
      const backupsBefore = await backupsOf(h, APP);
      const d = await deploy("crash");
      expect(d.result.rolledBack).toBe(true);
      expect(errorOf(d)).toMatch(/rolled back/);
      expect(await lockInfo(h, APP)).toBeUndefined();
      const { ledger } = await assertInvariants("crash loop", { good: img.v1, backupsBefore });
      expect(ledger.entries.slice(-2).map((e) => [e.kind, e.status])).toEqual([
        ["deploy", "failed"],
        ["rollback", "succeeded"],
      ]);
      note("new container crash-looping", d);
    }));

  test("the health check never passes: health timeout, previous release back", () =>
    fault("never healthy", async () => {
      const backupsBefore = await backupsOf(h, APP);
      const d = await deploy("unhealthy");
      expect(d.result.rolledBack).toBe(true);
      expect(errorOf(d)).toMatch(/health|healthy/i);
      expect(await lockInfo(h, APP)).toBeUndefined();
      await assertInvariants("never healthy", { good: img.v1, backupsBefore });
      note("health check never passing", d);
    }));

  test("a migration failing halfway: stops before any code changes, backup kept", () =>
    fault("migration fails", async () => {
      const backupsBefore = await backupsOf(h, APP);
      const d = await deploy("migfail");
      expect(errorOf(d)).toMatch(/migration/i);
      expect(d.result.deploy).toBeUndefined();
      expect(await lockInfo(h, APP)).toBeUndefined();
      const { ledger, backups } = await assertInvariants("migration fails", { good: img.v1, backupsBefore });
      expect(backups.length).toBe(backupsBefore.length + 1);
      const last = ledger.entries.at(-1)!;
      expect([last.kind, last.status]).toEqual(["migrate", "failed"]);
      expect(last.backup).toContain(".deploy-kit/backups/");
      note("migration failing halfway", d, `; backup ${last.backup} kept`);
    }));

  test("the database down during the backup: no backup, no migration, nothing changes", () =>
    fault("database down", async () => {
      const backupsBefore = await backupsOf(h, APP);
      // The database refuses this host's containers (connection reset): down, as far as h2 sees.
      const rule = [
        "DOCKER-USER",
        "-p",
        "tcp",
        "-d",
        bed.tb.postgres.host,
        "--dport",
        String(bed.tb.postgres.port),
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
      ];
      const log = trigger(/^Backup database/, async () => {
        await hostExec(h, ["iptables", "-I", ...rule]);
      });
      let d: InProcessDeploy | undefined;
      try {
        d = await deploy("v2", log);
      } finally {
        await hostExec(h, ["iptables", "-D", ...rule], { check: false });
      }
      expect(log.fired).toHaveLength(1);
      expect(errorOf(d)).toMatch(/No backup, no migration/);
      expect(d.result.deploy).toBeUndefined();
      expect(await lockInfo(h, APP)).toBeUndefined();
      const { backups } = await assertInvariants("database down", { good: img.v1, backupsBefore });
      expect(backups).toEqual(backupsBefore);
      note("database down during the backup (REJECT to PostgreSQL in h2)", d);
    }));

  test("the smoke test fails (the new release answers with another sha): rolled back", () =>
    fault("smoke fails", async () => {
      const backupsBefore = await backupsOf(h, APP);
      const d = await deploy("v2", new TriggerLog([]), sha(0x99));
      expect(d.result.rolledBack).toBe(true);
      expect(errorOf(d)).toMatch(/smoke test and was ROLLED BACK/);
      expect(await lockInfo(h, APP)).toBeUndefined();
      const { ledger } = await assertInvariants("smoke fails", { good: img.v1, backupsBefore });
      expect(ledger.entries.at(-1)).toMatchObject({ kind: "rollback", status: "succeeded" });
      note("smoke test failing", d);
    }));

  test("the action process gets SIGTERM when the release starts (cancelled job), then its post step", () =>
    fault("SIGTERM", async () => {
      const backupsBefore = await backupsOf(h, APP);
      await forgetImage(img.v2.ref);
      const inputs = {
        environment: "e2e",
        "image-ref": img.v2.ref,
        "git-sha": img.v2.gitSha,
        "ssh-key": bed.sshKey,
        "known-hosts": bed.knownHosts,
        "require-backup": "true",
      };
      let killedAt = "";
      const main = await runStreaming("deploy", {
        cwd: ws,
        inputs,
        onLine: (line, child) => {
          if (!killedAt && line.startsWith("::group::Deploy ")) {
            killedAt = line;
            child.kill("SIGTERM");
          }
        },
      });
      expect(killedAt).not.toBe("");
      expect(main.signal).toBe("SIGTERM");
      // The lock the main step held is on the host, and its record is in the saved state.
      expect(main.state.lock).toMatch(/"token"/);
      expect(await lockInfo(h, APP)).toBeDefined();
      const post = await runStreaming("deploy", { cwd: ws, inputs, state: main.state });
      expect(post.exitCode, post.stdout).toBe(0);
      expect(post.stdout).toContain("h2: released the deploy lock left by the main step");
      expect(await lockInfo(h, APP)).toBeUndefined();
      await assertInvariants("SIGTERM", { good: img.v1, backupsBefore });
      report.push({
        fault: "SIGTERM to the action mid-deploy + post step",
        outcome: `main killed at "${killedAt.slice(9)}"; post step released the lock (exit ${post.exitCode})`,
        ok: true,
      });
    }));

  test("disk full on the deploy path (its tmpfs shrunk to what it holds when the release starts)", () =>
    fault("disk full", async () => {
      const dir = `/srv/${DISK_APP}`;
      await resetHost(h, DISK_APP);
      await hostExec(h, ["mkdir", "-p", dir]);
      // Roomy enough for preflight's 1 GB free check (tmpfs takes memory only for what is written).
      await hostExec(h, ["mount", "-t", "tmpfs", "-o", "size=1100m,mode=0755", "t9-disk", dir]);
      try {
        await hostExec(h, ["chown", "deploy:deploy", dir]);
        await writeOperatorEnv(h, `${dir}/.env`, `T9_PORT=${DISK_PORT}\n`);
        const diskWs = workspace({
          app: DISK_APP,
          hosts: [h],
          port: DISK_PORT,
          registry: bed.tb.registry.plain,
        });
        const deployDisk = (kind: ImageKind, log = new TriggerLog([])) =>
          deployInProcess(bed, diskWs, { imageRef: img[kind].ref, gitSha: img[kind].gitSha, log });
        const first = await deployDisk("v1");
        expect(first.result.error?.message ?? "", first.log.text()).toBe("");
        const ledgerBefore = await ledgerOf(h, DISK_APP);
        // Past preflight, the disk fills up: no page left for anything new.
        const log = trigger(/^Deploy /, async () => {
          const used = (
            await hostExec(h, ["sh", "-c", `df -Pk ${dir} | awk 'NR==2 {print $3}'`])
          ).stdout.trim();
          await hostExec(h, ["mount", "-o", `remount,size=${used}k`, dir]);
        });
        const d = await deployDisk("v2", log);
        expect(log.fired).toHaveLength(1);
        expect(d.result.error, d.log.text()).toBeDefined();
        expect(errorOf(d)).toMatch(/h2/);
        await assertInvariants("disk full", {
          app: DISK_APP,
          port: DISK_PORT,
          good: img.v1,
          backupsBefore: [],
        });
        expect(await lockInfo(h, DISK_APP), "no lock left behind on the full disk").toBeUndefined();
        const ledgerAfter = await ledgerOf(h, DISK_APP);
        expect(ledgerAfter.lines.slice(0, ledgerBefore.lines.length)).toEqual(ledgerBefore.lines);
        // Space back: the next deploy goes through (no stuck lock, no half-written release in the way).
        await hostExec(h, ["mount", "-o", "remount,size=1100m", dir]);
        const again = await deployDisk("v2");
        expect(again.result.error?.message ?? "", again.log.text()).toBe("");
        expect((await healthOf(h, DISK_PORT)).git_sha).toBe(img.v2.gitSha);
        note(
          "disk full on the deploy path (tmpfs shrunk to its usage when the Deploy group starts)",
          d,
          "; after freeing space the next deploy went through",
        );
      } finally {
        const ids = (
          await remoteDocker(h, ["ps", "-aq", "--filter", `label=com.docker.compose.project=${DISK_APP}`])
        ).stdout
          .split("\n")
          .filter(Boolean);
        if (ids.length) await remoteDocker(h, ["rm", "-f", ...ids], { check: false });
        await hostExec(h, ["umount", dir], { check: false });
        await resetHost(h, DISK_APP);
      }
    }));
});
