import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  acquireLockScript,
  appendLedgerScript,
  pruneReleaseDirsScript,
  statePaths,
} from "../../src/commands/release.js";
import { CommandError, ConfigError, DeployError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { newReleaseId, RELEASE_ID } from "../../src/release/ids.js";
import {
  appendLedger,
  findRelease,
  imagesToKeep,
  type LedgerEntry,
  lastGoodRelease,
  liveRelease,
  parseLedger,
  previousRelease,
  readLedger,
} from "../../src/release/ledger.js";
import { acquireLock, releaseLock, withLock } from "../../src/release/lock.js";
import type { Remote, RemoteCommand } from "../../src/ssh/types.js";

/** A Remote that runs the scripts with the local sh: the lock and ledger scripts for real. */
class LocalShell implements Remote {
  readonly scripts: string[] = [];
  /** `root` stands in for the host's own filesystem: /HOST in a script means that directory. */
  constructor(
    readonly alias = "local",
    private readonly root?: string,
  ) {}
  async run(cmd: RemoteCommand) {
    this.scripts.push(cmd.script);
    const text = this.root ? cmd.script.replaceAll("/HOST", this.root) : cmd.script;
    const r = spawnSync("/bin/sh", ["-c", text], { input: cmd.stdin ?? "", encoding: "utf8" });
    const res = { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    if (res.exitCode !== 0 && !cmd.allowFailure)
      throw new CommandError({
        command: cmd.script,
        what: cmd.what,
        exitCode: res.exitCode,
        stderrTail: r.stderr,
        host: this.alias,
      });
    return res;
  }
  async download(): Promise<never> {
    throw new Error("this fake host holds no files to download");
  }
  async upload(path: string, content: string | Buffer) {
    writeFileSync(path, content);
  }
  async close() {}
}

const sha = (c: string) => `sha256:${c.repeat(64)}`;
const img = (c: string) => `reg/app@${sha(c)}`;
function e(id: string, image: string, over: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    id,
    kind: "deploy",
    "image-ref": image,
    "git-sha": null,
    version: null,
    time: "2026-01-01T00:00:00Z",
    actor: "me",
    "run-url": null,
    status: "succeeded",
    backup: null,
    "migration-applied": null,
    ...over,
  };
}

describe("release ids", () => {
  test("sortable, plain, unique among the ids taken", () => {
    const now = new Date("2026-03-14T10:15:02Z");
    expect(newReleaseId({ gitSha: "ABCDEF1234", now })).toBe("20260314-101502-abcdef1");
    expect(newReleaseId({ kind: "rollback", now })).toBe("20260314-101502-rollback");
    expect(newReleaseId({ gitSha: "abcdef1", now, taken: ["20260314-101502-abcdef1"] })).toBe(
      "20260314-101502-abcdef1-2",
    );
    expect(newReleaseId({ now })).toMatch(RELEASE_ID);
  });
});

describe("ledger", () => {
  // v1, v2, broken v3 rolled back to v2: the story of the e2e test.
  const story = [
    e("r1", img("1")),
    e("r2", img("2")),
    e("r3", img("3"), { status: "failed" }),
    e("r4", img("2"), { kind: "rollback", target: "r2", replaces: "r3" }),
  ];

  test.each([
    ["empty ledger", [], undefined, undefined, undefined],
    ["one release", [e("r1", img("1"))], "r1", "r1", undefined],
    ["two releases", [e("r1", img("1")), e("r2", img("2"))], "r2", "r2", "r1"],
    ["failed deploy auto-rolled back", story, "r4", "r4", "r1"],
    [
      "same image redeployed is skipped",
      [e("r1", img("1")), e("r2", img("2")), e("r3", img("2"))],
      "r3",
      "r3",
      "r1",
    ],
    [
      "a release rolled back from is never chosen again",
      [
        e("r1", img("1")),
        e("r2", img("2")),
        e("r3", img("3")),
        e("r4", img("2"), { kind: "rollback", replaces: "r3" }),
      ],
      "r4",
      "r4",
      "r1",
    ],
    [
      "repeated rollbacks walk back through history, they do not toggle",
      [
        e("r1", img("1")),
        e("r2", img("2")),
        e("r3", img("3")),
        e("r4", img("2"), { kind: "rollback", replaces: "r3" }),
        e("r5", img("1"), { kind: "rollback", replaces: "r4" }),
      ],
      "r5",
      "r5",
      undefined,
    ],
    [
      "an image redeployed after a rollback from it is eligible again",
      [
        e("r1", img("1")),
        e("r2", img("2")),
        e("r3", img("1"), { kind: "rollback", replaces: "r2" }),
        e("r4", img("2")),
        e("r5", img("3")),
      ],
      "r5",
      "r5",
      "r4",
    ],
    [
      "live release failed without rollback: the last good one",
      [e("r1", img("1")), e("r2", img("2"), { status: "failed" })],
      "r2",
      "r1",
      "r1",
    ],
    [
      "a failed blue-green release never went live: the previous default is the one before the live one",
      [
        e("r1", img("1"), { color: "blue" }),
        e("r2", img("2"), { color: "green" }),
        e("r3", img("3"), { color: "blue", status: "failed" }),
      ],
      "r2",
      "r2",
      "r1",
    ],
    [
      "migrate lines are not releases",
      [e("r1", img("1")), e("m2", img("2"), { kind: "migrate" }), e("r2", img("2"))],
      "r2",
      "r2",
      "r1",
    ],
  ])("%s", (_n, entries, live, good, previous) => {
    expect(liveRelease(entries)?.id).toBe(live);
    expect(lastGoodRelease(entries)?.id).toBe(good);
    expect(previousRelease(entries)?.id).toBe(previous);
  });

  test("findRelease: by id, image ref or digest; failed releases are refused with the good ones listed", () => {
    expect(findRelease(story, "r1").id).toBe("r1");
    expect(findRelease(story, img("2")).id).toBe("r4");
    expect(findRelease(story, sha("1")).id).toBe("r1");
    expect(findRelease(story, `other/name@${sha("1")}`).id).toBe("r1");
    expect(() => findRelease(story, "r3")).toThrow(/failed its health gate/);
    const err = (() => {
      try {
        findRelease(story, "nope");
      } catch (x) {
        return x as ConfigError;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.hint).toContain("r4 (reg/app@");
  });

  test("images to keep: newest distinct good images, plus the live one and the rollback target", () => {
    const entries = [e("r1", img("1")), e("r2", img("2")), e("r3", img("3")), e("r4", img("4"))];
    expect(imagesToKeep(entries, 2, [])).toEqual([img("4"), img("3")]);
    expect(imagesToKeep(entries, 2, [img("1")])).toEqual([img("4"), img("3"), img("1")]);
  });

  test("bad lines are skipped and reported, good ones kept", () => {
    const bad: number[] = [];
    const text = [
      JSON.stringify(e("r1", img("1"))),
      "{oops",
      JSON.stringify({ id: "$(rm -rf /)", kind: "deploy" }),
      "",
    ].join("\n");
    expect(parseLedger(text, (n) => bad.push(n)).map((x) => x.id)).toEqual(["r1"]);
    expect(bad).toEqual([2, 3]);
  });

  test("append and read back through a real shell, values with quotes stay data", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-ledger-"));
    const remote = new LocalShell();
    const weird = e("r1", img("1"), { actor: `o'neil"; touch ${dir}/canary; echo '`, reason: "a $(b) `c`" });
    await appendLedger(remote, dir, weird);
    await appendLedger(remote, dir, e("r2", img("2")));
    expect(await readLedger(remote, dir)).toEqual([weird, e("r2", img("2"))]);
    expect(existsSync(`${dir}/canary`)).toBe(false);
    expect(readFileSync(statePaths(dir).ledger, "utf8").split("\n")).toHaveLength(3);
    expect(() => appendLedgerScript(dir, "a\nb")).toThrow();
  });

  test("pruning release directories keeps the ids asked for", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-prune-"));
    const remote = new LocalShell();
    for (const id of ["r1", "r2", "r3"])
      await remote.run({ what: "mk", script: `mkdir -p ${statePaths(dir).release(id)}` });
    await remote.run({ what: "prune", script: pruneReleaseDirsScript(dir, ["r2", "r3"]) });
    expect(existsSync(statePaths(dir).release("r1"))).toBe(false);
    expect(existsSync(statePaths(dir).release("r2"))).toBe(true);
  });
});

describe("lock", () => {
  const base = (dir: string, log = new MemoryLog()) => ({
    path: dir,
    waitMs: 600,
    leaseMs: 60_000,
    log,
    pollMs: 100,
  });

  test("held by another run: waits up to lock.wait, then fails naming the owner", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-lock-"));
    const remote = new LocalShell("web-1");
    await acquireLock(remote, "tok-a", { ...base(dir), owner: "https://github.com/o/r/actions/runs/1" });
    const t = Date.now();
    const err = await acquireLock(remote, "tok-b", { ...base(dir), owner: "someone-else" }).catch((x) => x);
    expect(Date.now() - t).toBeGreaterThanOrEqual(400);
    expect(err).toBeInstanceOf(DeployError);
    expect(err.message).toContain("web-1: the deploy lock is held by https://github.com/o/r/actions/runs/1");
    const info = JSON.parse(readFileSync(statePaths(dir).lockInfo, "utf8"));
    expect(info).toMatchObject({ owner: "https://github.com/o/r/actions/runs/1", token: "tok-a", lease: 60 });
    expect(await releaseLock(remote, dir, "tok-b")).toBe(false);
    expect(await releaseLock(remote, dir, "tok-a")).toBe(true);
    expect(existsSync(statePaths(dir).lock)).toBe(false);
  });

  test("a lock past its lease is taken over with a warning", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-lock-"));
    const remote = new LocalShell("web-1");
    const log = new MemoryLog();
    await remote.run({
      what: "stale",
      script: acquireLockScript(dir, { owner: "dead-run", token: "old", leaseSeconds: 1 }),
    });
    // Back-date it: acquired long ago.
    const p = statePaths(dir).lockInfo;
    writeFileSync(p, readFileSync(p, "utf8").replace(/"acquired":\d+/, '"acquired":1000'));
    await acquireLock(remote, "new", { ...base(dir, log), owner: "me" });
    expect(log.text()).toContain("warning: web-1: the deploy lock held by dead-run");
    expect(JSON.parse(readFileSync(p, "utf8"))).toMatchObject({ owner: "me", token: "new" });
  });

  test("withLock: every host locked (in alias order), released on failure, state store told", async () => {
    const roots = [mkdtempSync(join(tmpdir(), "dk-h1-")), mkdtempSync(join(tmpdir(), "dk-h2-"))];
    const remotes = [new LocalShell("web-b", roots[0]), new LocalShell("web-a", roots[1])];
    const events: string[] = [];
    const err = await withLock(
      remotes,
      {
        ...base("/HOST/app"),
        onAcquired: (_t, aliases) => events.push(`acquired ${aliases.join(",")}`),
        onReleased: () => events.push("released"),
      },
      async () => {
        events.push(`inside: ${roots.map((r) => existsSync(`${r}/app/.deploy-kit/lock`)).join(",")}`);
        throw new Error("boom");
      },
    ).catch((x) => x);
    expect(err.message).toBe("boom");
    expect(events).toEqual(["acquired web-a,web-b", "inside: true,true", "released"]);
    for (const r of roots) expect(existsSync(`${r}/app/.deploy-kit/lock`)).toBe(false);
  });

  test("withLock: when one host's lock is held, the others are released again", async () => {
    const roots = [mkdtempSync(join(tmpdir(), "dk-h1-")), mkdtempSync(join(tmpdir(), "dk-h2-"))];
    const a = new LocalShell("web-a", roots[0]);
    const b = new LocalShell("web-b", roots[1]);
    await acquireLock(b, "other", { ...base("/HOST/app"), owner: "other-run" });
    let ran = false;
    const err = await withLock([a, b], base("/HOST/app"), async () => {
      ran = true;
    }).catch((x) => x);
    expect(ran).toBe(false);
    expect(err.message).toContain("web-b: the deploy lock is held by other-run");
    expect(existsSync(`${roots[0]}/app/.deploy-kit/lock`)).toBe(false);
    expect(existsSync(`${roots[1]}/app/.deploy-kit/lock`)).toBe(true);
  });
});
