// Concurrency on one environment (h1, app t9-conc, port 18910), with the bundled deploy action:
// two deploys started together never interleave (the second waits for the lock within its
// bound, or fails naming the owner), and ten deploys in a row end with the last one serving
// and a ledger of ten.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { recordTally } from "../support/tally.js";
import { type ExampleImage, resetHost, type TestbedHost, writeOperatorEnv } from "../support/testbed.js";
import {
  type AdvBed,
  advBed,
  buildImages,
  healthOf,
  ledgerOf,
  lockInfo,
  runStreaming,
  type StreamingResult,
  workspace,
} from "./support.js";

const APP = "t9-conc";
const PORT = 18910;
let bed: AdvBed;
let h: TestbedHost;
let img: Record<"v1" | "v2", ExampleImage>;
const tally = { tried: 0, failures: 0 };

async function counted(fn: () => Promise<void>) {
  tally.tried++;
  try {
    await fn();
  } catch (e) {
    tally.failures++;
    throw e;
  }
}

function ws(lockWait: string) {
  return workspace({
    app: APP,
    hosts: [h],
    port: PORT,
    registry: bed.tb.registry.plain,
    timing: `    health: { timeout: 20s, interval: 500ms }
    lock: { wait: ${lockWait}, lease: 2m }
    ssh: { connect-timeout: 5s, keepalive: 2s }`,
  });
}

const runUrlOf = (id: number) => `https://github.com/acme/t9/actions/runs/${id}`;

function deploy(dir: string, image: ExampleImage, runId: number, onLine?: (l: string) => void) {
  return runStreaming("deploy", {
    cwd: dir,
    inputs: {
      environment: "e2e",
      "image-ref": image.ref,
      "git-sha": image.gitSha,
      "ssh-key": bed.sshKey,
      "known-hosts": bed.knownHosts,
    },
    env: { GITHUB_REPOSITORY: "acme/t9", GITHUB_RUN_ID: String(runId), GITHUB_ACTOR: "t9" },
    onLine: onLine ? (l) => onLine(l) : undefined,
  });
}

/** Absolute time of the first stdout line matching `re`. */
function at(r: StreamingResult, re: RegExp): number {
  const hit = r.timeline.find(([, l]) => re.test(l));
  if (!hit) throw new Error(`no line matching ${re} in:\n${r.stdout}`);
  return r.startedAt + hit[0];
}

beforeAll(async () => {
  bed = await advBed();
  h = bed.h1;
  img = await buildImages(["v1", "v2"]);
  await resetHost(h, APP);
  await writeOperatorEnv(h, `/srv/${APP}/.env`, `T9_PORT=${PORT}\n`);
}, 600_000);

afterAll(async () => {
  recordTally({ category: "concurrency", ...tally });
  if (h) await resetHost(h, APP).catch(() => {});
});

describe("concurrent deploys to one environment", () => {
  test("two started together: one waits for the other's lock, then deploys; never interleaved", () =>
    counted(async () => {
      const dir = ws("60s");
      const [a, b] = await Promise.all([deploy(dir, img.v1, 9101), deploy(dir, img.v2, 9102)]);
      expect(a.exitCode, a.stdout).toBe(0);
      expect(b.exitCode, b.stdout).toBe(0);
      const [first, second, firstId] = /waiting for the deploy lock/.test(b.stdout)
        ? [a, b, 9101]
        : [b, a, 9102];
      expect(second.stdout).toContain(`waiting for the deploy lock held by ${runUrlOf(firstId)}`);
      expect(first.stdout).not.toContain("waiting for the deploy lock");
      // The second took the lock only after the first's release was live.
      expect(at(second, /deploy lock taken/)).toBeGreaterThan(at(first, /release \S+ is live/));
      const { entries, bad } = await ledgerOf(h, APP);
      expect(bad).toEqual([]);
      expect(entries.map((e) => [e.kind, e.status, e["run-url"]])).toEqual([
        ["deploy", "succeeded", runUrlOf(firstId)],
        ["deploy", "succeeded", runUrlOf(firstId === 9101 ? 9102 : 9101)],
      ]);
      const last = second === a ? img.v1 : img.v2;
      expect((await healthOf(h, PORT)).git_sha).toBe(last.gitSha);
      expect(await lockInfo(h, APP)).toBeUndefined();
    }));

  test("the second with a short lock.wait fails within its bound, naming the owner, changing nothing", () =>
    counted(async () => {
      const before = (await ledgerOf(h, APP)).lines;
      let started: Promise<StreamingResult> | undefined;
      const a = await deploy(ws("60s"), img.v1, 9103, (l) => {
        // The second starts the moment the first holds the lock: no sleeps.
        if (!started && /deploy lock taken/.test(l)) started = deploy(ws("1s"), img.v2, 9104);
      });
      const b = await started!;
      expect(a.exitCode, a.stdout).toBe(0);
      expect(b.exitCode).toBe(1);
      expect(b.stdout).toContain(`h1: the deploy lock is held by ${runUrlOf(9103)}`);
      expect(b.endedAt - b.startedAt).toBeLessThan(15_000);
      const after = await ledgerOf(h, APP);
      expect(after.lines.slice(0, before.length)).toEqual(before);
      expect(after.entries.slice(before.length).map((e) => e["run-url"])).toEqual([runUrlOf(9103)]);
      expect((await healthOf(h, PORT)).git_sha).toBe(img.v1.gitSha);
    }));

  test("ten deploys in a row: the last one serves and the ledger has ten", () =>
    counted(async () => {
      await resetHost(h, APP);
      await writeOperatorEnv(h, `/srv/${APP}/.env`, `T9_PORT=${PORT}\n`);
      const dir = ws("60s");
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) {
        const image = i % 2 === 0 ? img.v1 : img.v2;
        const r = await deploy(dir, image, 9200 + i);
        expect(r.exitCode, r.stdout).toBe(0);
        ids.push(r.outputs["release-id"]!);
      }
      const { entries, bad } = await ledgerOf(h, APP);
      expect(bad).toEqual([]);
      expect(entries).toHaveLength(10);
      expect(entries.map((e) => e.id)).toEqual(ids);
      expect(entries.every((e) => e.kind === "deploy" && e.status === "succeeded")).toBe(true);
      expect((await healthOf(h, PORT)).git_sha).toBe(img.v2.gitSha);
      expect(entries.at(-1)!["image-ref"]).toBe(img.v2.ref);
      expect(await lockInfo(h, APP)).toBeUndefined();
    }));
});
