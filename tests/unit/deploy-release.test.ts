import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { CommandError, ConfigError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { announce, deployFacts, rollbackFacts } from "../../src/deploy/announce.js";
import { parseComposeSource } from "../../src/deploy/compose-file.js";
import { assessHealth, type ContainerState } from "../../src/deploy/health.js";
import { deployRelease, rollbackRelease } from "../../src/deploy/release.js";
import type { LedgerEntry } from "../../src/release/ledger.js";
import type { Remote, RemoteCommand, RemoteResult } from "../../src/ssh/types.js";

const ref = (c: string) => `reg.example/app@sha256:${c.repeat(64)}`;
type Mode = "ok" | "crash" | "unhealthy";

/**
 * A host whose filesystem is real (a temp dir standing in for /HOST, scripts run by sh) and whose
 * docker is simulated: images have a mode, `compose up` starts a container of the image the live
 * override names, and the container state follows the mode.
 */
class SimHost implements Remote {
  readonly root = mkdtempSync(join(tmpdir(), "dk-sim-"));
  readonly steps: string[] = [];
  readonly pulled: string[] = [];
  readonly images = new Map<string, string>();
  /** Tags as the host's engine resolved them at its last pull, and as the registry has them now. */
  readonly localTags = new Map<string, string>();
  registryTags: Record<string, string> = {};
  running?: { image: string; id: string };
  /** What the host's containers report as their image's digest, when something swapped it. */
  swappedTo?: string;
  constructor(
    readonly alias: string,
    readonly modes: Record<string, Mode>,
    envText = "T3_PORT=1\n",
  ) {
    mkdirSync(join(this.root, "srv/app"), { recursive: true });
    writeFileSync(join(this.root, "srv/app/.env"), envText, { mode: 0o600 });
  }
  private sh(script: string, stdin?: string | Buffer): RemoteResult {
    const r = spawnSync("/bin/sh", ["-c", script.replaceAll("/HOST", this.root)], {
      input: stdin ?? "",
      encoding: "utf8",
    });
    return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }
  async run(cmd: RemoteCommand): Promise<RemoteResult> {
    this.steps.push(cmd.what);
    const ok = (stdout = "") => ({ exitCode: 0, stdout, stderr: "" });
    let res: RemoteResult;
    const image = /^(?:inspect|pull) (\S+)/.exec(cmd.what)?.[1];
    if (cmd.what.startsWith("check docker")) {
      // Docker and compose are simulated; the path and env-file facts come from the real script.
      const facts = this.sh(
        cmd.script
          .replace(/^if v=\$\(docker version.*$/m, "echo docker=20.10")
          .replace(/^if docker compose version.*$/m, "if true; then echo 'compose=docker compose'"),
      );
      res = facts;
    } else if (cmd.what.startsWith("inspect ") && this.localTags.has(image!)) {
      const digestRef = this.localTags.get(image!)!;
      res = ok(`${this.images.get(digestRef)} ${digestRef}\n`);
    } else if (cmd.what.startsWith("pull ") && image! in this.registryTags) {
      const digestRef = this.registryTags[image!]!;
      this.pulled.push(image!);
      this.localTags.set(image!, digestRef);
      this.images.set(digestRef, `sha256:id-${digestRef.slice(-6)}`);
      res = ok();
    } else if (cmd.what.startsWith("inspect ")) {
      const id = this.images.get(image!);
      res = id ? ok(`${id} ${image}\n`) : { exitCode: 1, stdout: "", stderr: "No such image" };
    } else if (cmd.what.startsWith("pull ")) {
      if (!(image! in this.modes)) res = { exitCode: 1, stdout: "", stderr: "manifest unknown" };
      else {
        this.pulled.push(image!);
        this.images.set(image!, `sha256:id-${image!.slice(-6)}`);
        res = ok();
      }
    } else if (cmd.what === "docker compose up") {
      const override = JSON.parse(readFileSync(join(this.root, "srv/app/.deploy-kit/override.yml"), "utf8"));
      const img = override.services.api.image as string;
      this.running = { image: img, id: `c-${this.steps.length}` };
      res = ok();
    } else if (cmd.what === "check the service containers") {
      const r = this.running!;
      const mode = this.modes[r.image]!;
      const status = mode === "crash" ? "exited" : "running";
      const health = mode === "unhealthy" ? "unhealthy" : "healthy";
      const line = `api|${r.id}|${this.images.get(r.image)}|${status}|false|0|${health}|${mode === "crash" ? 3 : 0}|2026-01-01T00:00:00.000000000Z|/app_api_1`;
      res = ok(`now|${Math.floor(Date.now() / 1000)}\n${line}\n`);
    } else if (cmd.what === "read the running image digests") {
      const r = this.running!;
      res = ok(`api|${r.id}|${this.images.get(r.image)}|${this.swappedTo ?? r.image} \n`);
    } else if (cmd.what.startsWith("read ") && cmd.what !== "read the release ledger") {
      res = ok("app output\n");
    } else if (cmd.what === "prune old images") {
      res = ok();
    } else {
      res = this.sh(cmd.script, cmd.stdin);
    }
    if (res.exitCode !== 0 && !cmd.allowFailure)
      throw new CommandError({
        command: cmd.script,
        what: cmd.what,
        exitCode: res.exitCode,
        stderrTail: res.stderr,
        host: this.alias,
      });
    return res;
  }
  async download(): Promise<never> {
    throw new Error("this fake host holds no files to download");
  }
  async upload(path: string, content: string | Buffer) {
    const p = path.replaceAll("/HOST", this.root);
    mkdirSync(join(p, ".."), { recursive: true });
    writeFileSync(p, content);
  }
  async close() {}
  ledger(): LedgerEntry[] {
    const f = join(this.root, "srv/app/.deploy-kit/releases.jsonl");
    return existsSync(f)
      ? readFileSync(f, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l))
      : [];
  }
}

function context(extra = "", log = new MemoryLog()) {
  const config = parseConfig(`version: 1
app: app
image: { name: reg.example/app }
environments:
  e:
    hosts: [h1.example, h2.example]
    path: /HOST/srv/app
    compose: { service: api }
    env-file: { required-keys: [T3_PORT] }
    health: { timeout: 2s, interval: 100ms }
${extra}`);
  const env = config.environments.e!;
  return {
    config,
    env,
    compose: parseComposeSource("compose.yml", "services:\n  api: { image: x }\n", ["api"]),
    actor: "tester",
    log,
  };
}

const modes: Record<string, Mode> = {
  [ref("1")]: "ok",
  [ref("2")]: "ok",
  [ref("3")]: "crash",
  [ref("4")]: "unhealthy",
};

async function fleet(n: number, ...images: string[]) {
  const hosts = Array.from({ length: n }, (_, i) => new SimHost(`h${i + 1}`, modes));
  for (const img of images) {
    const r = await deployRelease(hosts, { ...context(), imageRef: img, gitSha: "abcdef1234" });
    expect(r.error).toBeUndefined();
  }
  return hosts;
}

describe("health verdicts", () => {
  const c = (over: Partial<ContainerState>): ContainerState => ({
    service: "api",
    id: "c1",
    image: "sha256:new",
    status: "running",
    restarting: false,
    restarts: 0,
    health: "healthy",
    exitCode: 0,
    startedAt: "2026-01-01T00:00:00.123456789Z",
    name: "app_api_1",
    ...over,
  });
  const now = Date.parse("2026-01-01T00:00:10Z") / 1000;
  test.each([
    ["healthy", "healthy", [c({})]],
    ["no healthcheck, running past the settle time", "healthy", [c({ health: "none" })]],
    ["no healthcheck, just started", "waiting", [c({ health: "none", startedAt: "2026-01-01T00:00:09.5Z" })]],
    ["healthcheck starting", "waiting", [c({ health: "starting" })]],
    ["old image still running", "waiting", [c({ image: "sha256:old" })]],
    [
      "old and new side by side",
      "waiting",
      [c({}), c({ id: "c0", image: "sha256:old", name: "app_api_old" })],
    ],
    ["no container at all", "waiting", []],
    ["restarting", "waiting", [c({ status: "restarting", restarting: true, restarts: 1 })]],
    ["exited", "failed", [c({ status: "exited", exitCode: 3 })]],
    ["unhealthy", "failed", [c({ health: "unhealthy" })]],
    ["crash loop", "failed", [c({ status: "restarting", restarting: true, restarts: 3 })]],
    [
      "an exited OLD container does not matter",
      "healthy",
      [c({}), c({ id: "c0", image: "sha256:old", status: "exited" })],
    ],
  ] as [string, string, ContainerState[]][])("%s -> %s", (_n, state, containers) => {
    expect(assessHealth({ now, containers }, ["api"], "sha256:new", 2000).state).toBe(state);
  });
});

describe("deployRelease on simulated hosts", () => {
  test("a good release: files, ledger, pinned override, one pull per host", async () => {
    const [h1] = await fleet(1, ref("1"));
    expect(h1!.pulled).toEqual([ref("1")]);
    expect(h1!.ledger()).toMatchObject([
      {
        kind: "deploy",
        "image-ref": ref("1"),
        status: "succeeded",
        actor: "tester",
        "git-sha": "abcdef1234",
      },
    ]);
    expect(JSON.parse(readFileSync(join(h1!.root, "srv/app/.deploy-kit/override.yml"), "utf8"))).toEqual({
      services: { api: { image: ref("1") } },
    });
  });

  test("a tag the host already holds is pulled again: the release runs what the tag names now", async () => {
    const host = new SimHost("h1", modes);
    // The host pulled :main when it named ref("1"); the registry's :main has moved to ref("2").
    host.localTags.set("reg.example/app:main", ref("1"));
    host.images.set(ref("1"), "sha256:id-stale");
    host.registryTags = { "reg.example/app:main": ref("2") };
    const r = await deployRelease([host], {
      ...context(),
      imageRef: "reg.example/app:main",
      gitSha: "abcdef1234",
    });
    expect(r.error).toBeUndefined();
    expect(host.pulled).toEqual(["reg.example/app:main"]);
    expect(host.ledger().at(-1)).toMatchObject({ "image-ref": ref("2"), status: "succeeded" });
  });

  test("a digest the host already holds is not pulled again", async () => {
    const host = new SimHost("h1", modes);
    host.images.set(ref("1"), "sha256:id-present");
    const r = await deployRelease([host], { ...context(), imageRef: ref("1"), gitSha: "abcdef1234" });
    expect(r.error).toBeUndefined();
    expect(host.pulled).toEqual([]);
  });

  test("parallel 1, first host fails: it is rolled back, the second host is never touched", async () => {
    const [h1, h2] = await fleet(2, ref("1"));
    const before = h2!.steps.length;
    const r = await deployRelease([h1!, h2!], { ...context("    parallel: 1\n"), imageRef: ref("3") });
    expect(r.rolledBack).toBe(true);
    expect(r.error?.message).toContain("failed and was rolled back");
    expect(r.error?.message).toContain("app_api_1 exited with code 3");
    expect(r.hosts.map((h) => [h.alias, h.outcome])).toEqual([
      ["h1", "rolled-back"],
      ["h2", "skipped"],
    ]);
    expect(h1!.ledger().map((e) => [e.kind, e["image-ref"], e.status])).toEqual([
      ["deploy", ref("1"), "succeeded"],
      ["deploy", ref("3"), "failed"],
      ["rollback", ref("1"), "succeeded"],
    ]);
    expect(h1!.running!.image).toBe(ref("1"));
    // h2: only the preflight ran (facts + ledger), nothing was written.
    expect(h2!.steps.slice(before)).toEqual([
      "check docker, compose, the deploy path and the env-file",
      "read the release ledger",
    ]);
    expect(h2!.ledger()).toHaveLength(1);
  });

  test("parallel 2, one host unhealthy: every host this run switched goes back", async () => {
    const hosts = await fleet(2, ref("1"));
    hosts[1]!.modes[ref("2")] = "ok";
    const h2modes = { ...modes, [ref("2")]: "unhealthy" as Mode };
    const h2 = Object.assign(hosts[1]!, { modes: h2modes });
    const r = await deployRelease([hosts[0]!, h2], { ...context("    parallel: 2\n"), imageRef: ref("2") });
    expect(r.rolledBack).toBe(true);
    expect(r.hosts.map((h) => h.outcome)).toEqual(["rolled-back", "rolled-back"]);
    expect(hosts[0]!.ledger().map((e) => e.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(hosts[0]!.ledger().at(-1)).toMatchObject({
      kind: "rollback",
      replaces: r.releaseId,
      "image-ref": ref("1"),
    });
    expect(hosts.map((h) => h.running!.image)).toEqual([ref("1"), ref("1")]);
  });

  test("rollback.on-failure: false leaves the failed release and says how to roll back", async () => {
    const [h1] = await fleet(1, ref("1"));
    const r = await deployRelease([h1!], {
      ...context("    rollback: { on-failure: false }\n"),
      imageRef: ref("4"),
    });
    expect(r.rolledBack).toBe(false);
    expect((r.error as { hint?: string }).hint).toContain("run the rollback action");
    expect(r.hosts[0]!.outcome).toBe("failed");
  });

  test("every host's running digest is read after the switch and kept on its result", async () => {
    const hosts = await fleet(2, ref("1"));
    const r = await deployRelease(hosts, { ...context(), imageRef: ref("2") });
    expect(r.error).toBeUndefined();
    expect(r.hosts.map((h) => [h.alias, h.digest])).toEqual([
      ["h1", `sha256:${"2".repeat(64)}`],
      ["h2", `sha256:${"2".repeat(64)}`],
    ]);
    expect(hosts[0]!.steps).toContain("read the running image digests");
  });

  test("a host running another digest than approved fails the deploy and is rolled back", async () => {
    const [h1, h2] = await fleet(2, ref("1"));
    h2!.swappedTo = ref("9");
    const r = await deployRelease([h1!, h2!], { ...context("    parallel: 2\n"), imageRef: ref("2") });
    expect(r.rolledBack).toBe(true);
    expect(r.error?.message).toContain(
      `h2: the running containers are not the approved image sha256:${"2".repeat(64)}: api container`,
    );
    expect(r.error?.message).toContain(`runs ${ref("9")}`);
    expect(h2!.ledger().map((e) => [e.kind, e.status])).toEqual([
      ["deploy", "succeeded"],
      ["deploy", "failed"],
      ["rollback", "succeeded"],
    ]);
    expect(h2!.ledger()[1]!.reason).toContain("not the approved image");
    expect([h1!.running!.image, h2!.running!.image]).toEqual([ref("1"), ref("1")]);
  });

  test("the first release failing has nothing to roll back to", async () => {
    const h1 = new SimHost("h1", modes);
    const r = await deployRelease([h1], { ...context(), imageRef: ref("3") });
    expect(r.rolledBack).toBe(false);
    expect(r.hosts[0]!.outcome).toBe("failed");
  });

  test("a host that is not ready stops the deploy before anything changes anywhere", async () => {
    const h1 = new SimHost("h1", modes);
    const h2 = new SimHost("h2", modes, "OTHER=1\n");
    const err = await deployRelease([h1, h2], { ...context(), imageRef: ref("1") }).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain("h2 is not ready for a deploy; nothing was changed");
    expect(err.problems[0].message).toContain("lacks required key(s): T3_PORT");
    expect(h1.pulled).toEqual([]);
    expect(existsSync(join(h1.root, "srv/app/.deploy-kit/releases"))).toBe(false);
  });

  test("the migrate line of the first host fills backup and migration-applied", async () => {
    const [h1] = await fleet(1, ref("1"));
    const migrate = {
      ...h1!.ledger()[0]!,
      id: "m2",
      kind: "migrate",
      "image-ref": ref("2"),
      backup: "/srv/app/.deploy-kit/backups/x.dump",
      "migration-applied": true,
    };
    writeFileSync(join(h1!.root, "srv/app/.deploy-kit/releases.jsonl"), `${JSON.stringify(migrate)}\n`, {
      flag: "a",
    });
    const r = await deployRelease([h1!], { ...context(), imageRef: ref("2") });
    expect(r.error).toBeUndefined();
    expect(h1!.ledger().at(-1)).toMatchObject({
      kind: "deploy",
      backup: "/srv/app/.deploy-kit/backups/x.dump",
      "migration-applied": true,
    });
  });
});

describe("rollbackRelease on simulated hosts", () => {
  test("default target, stored files reused, recorded as a rollback", async () => {
    const [h1] = await fleet(1, ref("1"), ref("2"));
    const r = await rollbackRelease([h1!], context());
    expect(r.error).toBeUndefined();
    expect(r.imageRef).toBe(ref("1"));
    expect(r.targetReleaseId).toBe(h1!.ledger()[0]!.id);
    expect(h1!.running!.image).toBe(ref("1"));
    expect(h1!.ledger().at(-1)).toMatchObject({
      kind: "rollback",
      target: r.targetReleaseId,
      status: "succeeded",
    });
    // What it took off, for the record that keeps it from being promoted.
    expect(r.replaced).toMatchObject({ kind: "deploy", "image-ref": ref("2"), id: h1!.ledger()[1]!.id });
  });

  test("no earlier release, or restore-backup without a recorded backup: refused, nothing changed", async () => {
    const [h1] = await fleet(1, ref("1"));
    const steps = h1!.steps.length;
    await expect(rollbackRelease([h1!], context())).rejects.toThrow(/no earlier release to roll back to/);
    const [h2] = await fleet(1, ref("1"), ref("2"));
    await expect(rollbackRelease([h2!], { ...context(), restoreBackup: true })).rejects.toThrow(
      /no database backup is recorded/,
    );
    expect(
      h1!.steps.slice(steps).every((s) => s.startsWith("check docker") || s === "read the release ledger"),
    ).toBe(true);
    expect(h2!.ledger()).toHaveLength(2);
  });
});

describe("notify: deploy-ssh and every rollback path send what the all-in-one deploy sends", () => {
  // A webhook receiver on loopback, as tests/unit/notify.test.ts uses.
  const received: Record<string, unknown>[] = [];
  const server = createServer(async (req, res) => {
    let text = "";
    for await (const c of req) text += c;
    received.push(JSON.parse(text));
    res.writeHead(200).end("ok");
  });
  let url = "";
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    process.env.DK_TEST_HOOK = url;
  });
  afterAll(() => {
    delete process.env.DK_TEST_HOOK;
    return new Promise<void>((r) => server.close(() => r()));
  });
  const notifying = (log = new MemoryLog()) =>
    context("    url: https://e.example.com\nnotify: { webhook-env: DK_TEST_HOOK }\n", log);

  test("deploy-ssh: a release that went live, and one that failed and was rolled back", async () => {
    received.length = 0;
    const [h1] = await fleet(1, ref("1"));
    const ctx = notifying();
    const ok = await deployRelease([h1!], { ...ctx, imageRef: ref("2"), gitSha: "abcdef1234" });
    await announce(
      ctx.config,
      ctx.log,
      deployFacts(ctx, "e", ok, { gitSha: "abcdef1234", version: "1.2.0" }),
    );
    const bad = await deployRelease([h1!], { ...ctx, imageRef: ref("3") });
    await announce(ctx.config, ctx.log, deployFacts(ctx, "e", bad, {}));
    expect(received).toMatchObject([
      {
        event: "deploy",
        outcome: "success",
        app: "app",
        environment: "e",
        version: "1.2.0",
        sha: "abcdef1234",
        imageRef: ref("2"),
        releaseId: ok.releaseId,
        actor: "tester",
        url: "https://e.example.com",
        reason: null,
      },
      { event: "deploy", outcome: "rolled-back", releaseId: bad.releaseId },
    ]);
    expect(received[1]!.reason).toContain("failed and was rolled back");
  });

  test("rollback: the target put back is named; a failed rollback says so", async () => {
    received.length = 0;
    const [h1] = await fleet(1, ref("1"), ref("2"));
    const ctx = notifying();
    const back = await rollbackRelease([h1!], ctx);
    await announce(ctx.config, ctx.log, rollbackFacts(ctx, "e", back));
    await announce(
      ctx.config,
      ctx.log,
      rollbackFacts(ctx, "e", { ...back, error: new Error("h1: the release is not healthy\nmore") }),
    );
    expect(received).toMatchObject([
      {
        event: "rollback",
        outcome: "success",
        target: h1!.ledger()[0]!.id,
        releaseId: back.releaseId,
        imageRef: ref("1"),
        reason: null,
      },
      { event: "rollback", outcome: "failure", reason: "h1: the release is not healthy" },
    ]);
  });

  test("without notify: nothing is sent", async () => {
    received.length = 0;
    const [h1] = await fleet(1, ref("1"), ref("2"));
    const ctx = context();
    await announce(ctx.config, ctx.log, rollbackFacts(ctx, "e", await rollbackRelease([h1!], ctx)));
    expect(received).toEqual([]);
  });
});
