import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { nginxUpstream } from "../../src/commands/proxy.js";
import { parseConfig } from "../../src/config/load.js";
import { CommandError, ConfigError, DeployError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { type ColorHost, checkColorCompose, releaseOnIdleColor } from "../../src/deploy/blue-green.js";
import { parseComposeSource } from "../../src/deploy/compose-file.js";
import type { ReleaseContext } from "../../src/deploy/release.js";
import type { LedgerEntry } from "../../src/release/ledger.js";
import type { Remote, RemoteCommand, RemoteResult } from "../../src/ssh/types.js";

const BG = `    strategy: blue-green
    blue-green:
      container-port: 8080
      ports: { blue: 18701, green: 18702 }
      drain: 0s
      proxy:
        upstream-file: /etc/nginx/conf.d/shop-upstream.conf
        reload-command: sudo systemctl reload nginx
        verify-url: http://127.0.0.1/health
        verify-timeout: 1s
`;

const configText = (env: string) => `version: 1
app: shop
image: { name: reg.example/shop }
environments:
  prod:
    hosts: [h1.example]
    path: /srv/shop
    compose: { file: compose.yml, service: api }
${env}`;

function problems(env: string): string {
  try {
    parseConfig(configText(env));
    return "";
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map((p) => `${p.path}: ${p.message}`).join("\n");
  }
}

describe("blue-green in deploy-kit.yml", () => {
  test("defaults: nginx, loopback ports, 5 s... as written, keep-warm off", () => {
    const env = parseConfig(configText(BG)).environments.prod!;
    expect(env["blue-green"]).toEqual({
      "container-port": 8080,
      ports: { blue: 18701, green: 18702 },
      "bind-address": "127.0.0.1",
      drain: 0,
      "keep-warm": false,
      "shared-services": [],
      proxy: {
        type: "nginx",
        "upstream-file": "/etc/nginx/conf.d/shop-upstream.conf",
        "reload-command": "sudo systemctl reload nginx",
        switch: "reload",
        "verify-url": "http://127.0.0.1/health",
        "verify-timeout": 1000,
        "reload-timeout": 30000,
      },
    });
  });

  test.each([
    [
      "strategy without the section",
      "    strategy: blue-green\n",
      /blue-green: strategy: blue-green needs a blue-green section/,
    ],
    [
      "the section without the strategy",
      BG.replace("strategy: blue-green", "strategy: recreate"),
      /strategy: a blue-green section is set but strategy is recreate/,
    ],
    ["equal ports", BG.replace("green: 18702", "green: 18701"), /ports: blue and green need different ports/],
    [
      "a relative upstream file",
      BG.replace("/etc/nginx/conf.d/", "conf.d/"),
      /upstream-file: an absolute path/,
    ],
    [
      "'..' in the upstream file",
      BG.replace("/etc/nginx/conf.d/", "/etc/../tmp/"),
      /upstream-file: must not contain '..'/,
    ],
    [
      "a shell in the upstream name",
      BG.replace("verify-url", "upstream-name: 'a;b'\n        verify-url"),
      /upstream-name: letters, digits/,
    ],
    [
      "switch: file with an upstream name that would read as a regex capture ($1...)",
      BG.replace("verify-url", "switch: file\n        upstream-name: 1api\n        verify-url"),
      /upstream-name: with switch: file it names the nginx variable/,
    ],
    ["an unknown switch", BG.replace("verify-url", "switch: api\n        verify-url"), /switch/],
    ["no verify-url", BG.replace(/ {8}verify-url.*\n/, ""), /verify-url/],
    ["an unknown proxy type", BG.replace("upstream-file", "type: traefik\n        upstream-file"), /type/],
    [
      "a service that is not deployed",
      BG.replace("container-port", "service: worker\n      container-port"),
      /service: must be one of compose.service \(api\)/,
    ],
    ["an unknown key", BG.replace("drain: 0s", "drian: 0s"), /drian/],
    [
      "a deployed service listed as shared",
      BG.replace("drain: 0s", "drain: 0s\n      shared-services: [db, api]"),
      /shared-services\[1\]: api is deployed per colour \(compose.service\)/,
    ],
  ])("%s is refused", (_, env, message) => {
    expect(problems(env)).toMatch(message);
  });
});

// ---------------------------------------------------------------------------------------------
// The domain flow on a scripted host: what runs, in which order, and what never runs.
// ---------------------------------------------------------------------------------------------

type Health = "healthy" | "crash";

class FakeHost implements Remote {
  readonly alias = "h1";
  readonly steps: string[] = [];
  readonly scripts: string[] = [];
  readonly uploads = new Map<string, string>();
  constructor(
    public upstream: string,
    readonly opts: {
      health: Health;
      warm?: boolean;
      proxyStatus?: number;
      reloadFails?: boolean;
      /** The switch step's exit: 125 (the host says either colour), null (killed by its deadline). */
      switchExit?: number | null;
    },
  ) {}
  async run(cmd: RemoteCommand): Promise<RemoteResult> {
    this.steps.push(cmd.what);
    this.scripts.push(cmd.script);
    const ok = (stdout = "") => ({ exitCode: 0, stdout, stderr: "" });
    const container = (state: Health) =>
      `now|${Math.floor(Date.now() / 1000)}\napi|c1|sha256:new|${state === "crash" ? "exited" : "running"}|false|0|${state === "crash" ? "none" : "healthy"}|${state === "crash" ? 3 : 0}|2026-01-01T00:00:00Z|/shop-x_api_1\n`;
    if (cmd.what.startsWith("read the proxy's upstream file")) return ok(this.upstream);
    if (cmd.what === "check the idle color's containers")
      return ok(this.opts.warm ? container("healthy") : "now|1\n");
    if (cmd.what === "check the service containers") return ok(container(this.opts.health));
    if (cmd.what.startsWith("switch the proxy to ")) {
      if (this.opts.switchExit !== undefined) {
        this.upstream = /printf '%s' '([^']*)'/.exec(cmd.script)?.[1] ?? "?";
        throw new CommandError({
          command: cmd.script,
          what: cmd.what,
          exitCode: this.opts.switchExit,
          stderrTail: "",
          host: "h1",
        });
      }
      if (this.opts.reloadFails) {
        return this.fail(
          cmd,
          "the proxy reload-command failed (exit 1); the previous upstream file is back in place",
        );
      }
      this.upstream = /printf '%s' '([^']*)'/.exec(cmd.script)?.[1] ?? "?";
      return ok();
    }
    if (cmd.what.includes("through the proxy")) {
      const status = this.opts.proxyStatus ?? 200;
      return ok(`DK-HTTP curl 0 ${status} 0.01\nDK-HEADERS\n\nDK-ERROR\n\nDK-BODY\nok\n`);
    }
    if (cmd.what.startsWith("stop the ")) return ok("stopped 1");
    return ok();
  }
  fail(cmd: RemoteCommand, stderr: string): RemoteResult {
    if (cmd.allowFailure) return { exitCode: 1, stdout: "", stderr };
    throw new DeployError(`h1: ${cmd.what} failed: ${stderr}`, { host: "h1" });
  }
  async download(): Promise<never> {
    throw new Error("this fake host holds no files to download");
  }
  async upload(path: string, content: string | Buffer) {
    this.steps.push(`upload ${path.split("/").pop()}`);
    this.scripts.push("");
    this.uploads.set(path, String(content));
  }
  async close() {}
}

const LIVE_BLUE = nginxUpstream("shop", {
  app: "shop",
  color: "blue",
  release: "20260101-000000-aaaaaa",
  address: "127.0.0.1",
  port: 18701,
});

function flow(remote: FakeHost, env = BG, composeText = "services:\n  api:\n    image: x\n") {
  const config = parseConfig(configText(env));
  const log = new MemoryLog();
  const ctx = {
    config,
    env: config.environments.prod!,
    compose: parseComposeSource("compose.yml", composeText, ["api"]),
    actor: "t",
    log,
  } as ReleaseContext;
  const recorded: Partial<LedgerEntry>[] = [];
  const host: ColorHost = { remote, bin: "docker compose", ledger: [], touched: true };
  const run = () =>
    releaseOnIdleColor(host, ctx, {
      base: { id: "20260102-000000-bbbbbb", kind: "deploy", "image-ref": "reg.example/shop@sha256:x" },
      imageId: "sha256:new",
      record: async (f) => {
        recorded.push(f);
      },
    });
  return { host, run, recorded, log };
}

describe("releaseOnIdleColor", () => {
  test("healthy: starts green beside blue, switches, verifies, records, then stops blue", async () => {
    const remote = new FakeHost(LIVE_BLUE, { health: "healthy" });
    const { host, run, recorded } = flow(remote);
    expect(await run()).toBe("green");
    expect(remote.steps).toEqual([
      "read the proxy's upstream file",
      "upload color.yml",
      "check the idle color's containers",
      "docker compose up (green)",
      "check the service containers",
      "switch the proxy to green",
      "request http://127.0.0.1/health through the proxy",
      "make the release files the live ones",
      "stop the blue color",
    ]);
    expect(host.touched).toBe(true);
    expect(recorded).toEqual([expect.objectContaining({ status: "succeeded", color: "green" })]);
    expect(remote.upstream).toContain("color=green release=20260102-000000-bbbbbb port=18702");
    expect(JSON.parse([...remote.uploads.values()][0]!)).toEqual({
      services: { api: { ports: ["127.0.0.1:18702:8080"] } },
    });
  });

  test("never healthy: the proxy is never touched, the failed color is stopped", async () => {
    const remote = new FakeHost(LIVE_BLUE, { health: "crash" });
    const { host, run, recorded } = flow(remote);
    const err = await run().catch((e: Error) => e);
    expect(err).toBeInstanceOf(DeployError);
    expect((err as Error).message).toMatch(
      /green never became healthy and the proxy was not touched; the proxy serves blue \(release 20260101-000000-aaaaaa\)/,
    );
    expect(remote.steps.some((s) => s.startsWith("switch the proxy"))).toBe(false);
    expect(remote.steps.at(-1)).toBe("stop the green color");
    expect(remote.upstream).toBe(LIVE_BLUE);
    expect(host.touched).toBe(false);
    expect(recorded).toEqual([expect.objectContaining({ status: "failed", color: "green" })]);
  });

  test("the check through the proxy fails: it switches back to blue and records the failure", async () => {
    const remote = new FakeHost(LIVE_BLUE, { health: "healthy", proxyStatus: 502 });
    const { host, run, recorded } = flow(remote);
    const err = await run().catch((e: Error) => e);
    expect((err as Error).message).toMatch(/did not answer through the proxy within 1 s: status 502/);
    expect((err as Error).message).toMatch(/switched back after the check failed/);
    expect(remote.steps.filter((s) => s.startsWith("switch the proxy"))).toEqual([
      "switch the proxy to green",
      "switch the proxy to blue",
    ]);
    expect(remote.upstream).toBe(LIVE_BLUE);
    expect(host.touched).toBe(false);
    expect(recorded.map((r) => r.status)).toEqual(["failed"]);
  });

  test("a failing reload leaves the proxy as it was and stops the new color", async () => {
    const remote = new FakeHost(LIVE_BLUE, { health: "healthy", reloadFails: true });
    const { host, run } = flow(remote);
    const err = await run().catch((e: Error) => e);
    expect((err as Error).message).toMatch(/the proxy could not be switched; the proxy serves blue/);
    expect(remote.steps.at(-1)).toBe("stop the green color");
    expect(host.touched).toBe(false);
  });

  test.each([
    ["the host reports the proxy may serve either colour (exit 125)", 125],
    ["the switch step is killed by its deadline", null],
  ])("%s: both colours stay running and the message says what the file names", async (_, exit) => {
    const remote = new FakeHost(LIVE_BLUE, { health: "healthy", switchExit: exit });
    const { host, run, recorded } = flow(remote);
    const err = await run().catch((e: Error) => e);
    expect((err as Error).message).toMatch(
      /the proxy switch to green did not finish \(the upstream file now says: green\), so nginx may serve either colour: green and blue are both left running/,
    );
    expect(remote.steps.some((s) => s.startsWith("stop the"))).toBe(false);
    expect(remote.steps).toContain("read the proxy's upstream file back");
    expect(host.touched).toBe(false);
    expect(recorded).toEqual([expect.objectContaining({ status: "failed", color: "green" })]);
  });

  test("the switch step's deadline is past the host's own: three bounded commands and margin", async () => {
    const remote = new FakeHost(LIVE_BLUE, { health: "healthy" });
    const timeouts: (number | undefined)[] = [];
    const run0 = remote.run.bind(remote);
    remote.run = async (cmd) => {
      if (cmd.what.startsWith("switch the proxy")) timeouts.push(cmd.timeoutMs);
      return run0(cmd);
    };
    const { run } = flow(
      remote,
      BG.replace("verify-timeout: 1s", "verify-timeout: 1s\n        reload-timeout: 20s"),
    );
    await run();
    expect(timeouts).toEqual([90_000]);
    expect(remote.upstream).toContain("color=green");
  });

  test("a color kept warm with the image is switched to without starting anything", async () => {
    const remote = new FakeHost(LIVE_BLUE, { health: "healthy", warm: true });
    const { run, log } = flow(remote, BG.replace("drain: 0s", "drain: 0s\n      keep-warm: true"));
    expect(await run()).toBe("green");
    expect(remote.steps).not.toContain("docker compose up (green)");
    // keep-warm: blue keeps running for an instant rollback.
    expect(remote.steps.some((s) => s.startsWith("stop the"))).toBe(false);
    expect(log.lines.join("\n")).toMatch(/kept warm/);
  });

  test("the first release is blue; containers left by a recreate deploy stop after the switch", async () => {
    const remote = new FakeHost("upstream app { server 127.0.0.1:8080; }\n", { health: "healthy" });
    const { run } = flow(remote);
    expect(await run()).toBe("blue");
    expect(remote.steps).toContain("docker compose up (blue)");
    expect(remote.steps.at(-1)).toBe("stop project shop (a recreate deploy's)");
  });

  test("a compose file that publishes the proxied service's port itself is refused", () => {
    const config = parseConfig(configText(BG));
    const compose = parseComposeSource("compose.yml", 'services:\n  api:\n    ports: ["8080:8080"]\n', [
      "api",
    ]);
    expect(() => checkColorCompose(compose, config.environments.prod!)).toThrow(
      /publishes service api on blue-green.ports \(18701 blue, 18702 green\), but compose.yml publishes it too/,
    );
  });

  test("shared services are neither started per colour nor stopped with the recreate project", async () => {
    const remote = new FakeHost("upstream app { server 127.0.0.1:8080; }\n", { health: "healthy" });
    const { run } = flow(
      remote,
      BG.replace("drain: 0s", "drain: 0s\n      shared-services: [db]"),
      "services:\n  api: { image: x, depends_on: [db] }\n  worker: { image: x }\n  db: { image: postgres:16, volumes: [pgdata:/var/lib/postgresql/data] }\nvolumes: { pgdata: {} }\n",
    );
    expect(await run()).toBe("blue");
    const up = remote.scripts[remote.steps.indexOf("docker compose up (blue)")]!;
    expect(up).toMatch(/ -p shop-blue .* up -d --no-build --remove-orphans --no-deps api worker$/);
    const stop = remote.scripts[remote.steps.indexOf("stop project shop (a recreate deploy's)")]!;
    expect(stop).toContain("label=com.docker.compose.project=shop ");
    expect(stop).toContain("case ' db ' in");
  });
});

describe("stateful services and blue-green", () => {
  const env = (extra = "") =>
    parseConfig(configText(BG.replace("drain: 0s", `drain: 0s${extra}`))).environments.prod!;
  const check =
    (compose: string, extra = "") =>
    () =>
      checkColorCompose(parseComposeSource("compose.yml", compose, ["api"]), env(extra));

  test.each([
    [
      "postgres",
      "  db: { image: postgres:16 }\n",
      /service db keeps state \(its image postgres:16 keeps data\)/,
    ],
    [
      "a registry mirror of redis",
      "  cache: { image: 'mirror.example:5000/lib/redis@sha256:ab' }\n",
      /service cache keeps state \(its image mirror.example:5000\/lib\/redis@sha256:ab keeps data\)/,
    ],
    ["bitnami mariadb", "  sql: { image: bitnami/mariadb:11 }\n", /service sql keeps state/],
    [
      "a named volume (short syntax)",
      "  files: { image: x, volumes: ['uploads:/data:rw'] }\nvolumes: { uploads: {} }\n",
      /service files keeps state \(its named volume uploads belongs to the compose project, so each colour gets a new, empty one\)/,
    ],
    [
      "a named volume (long syntax)",
      "  files: { image: x, volumes: [{ type: volume, source: uploads, target: /data }] }\n",
      /service files keeps state \(its named volume uploads/,
    ],
  ])(
    "%s in the compose file is refused, naming the service, why and how to split it out",
    (_, more, message) => {
      const err = (() => {
        try {
          check(`services:\n  api: { image: x }\n${more}`)();
        } catch (e) {
          return e as ConfigError;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect(err!.message).toMatch(message);
      expect(err!.message).toContain(
        "the new colour would start with an empty copy and the switch would stop the real one. Nothing was changed.",
      );
      expect(err!.hint).toMatch(
        /its own compose project \(or use a managed service\) and list it in blue-green.shared-services: \[\w+\]/,
      );
    },
  );

  test.each([
    // biome-ignore lint/suspicious/noTemplateCurlyInString: compose interpolation in the file under test
    ["a bind mount", "  files: { image: x, volumes: ['./data:/data', '/srv/x:/x', '${DIR}:/y', '/anon'] }\n"],
    [
      "a volume with a fixed name (shared by both colours)",
      "  files: { image: x, volumes: ['up:/data'] }\nvolumes: { up: { name: shop-uploads } }\n",
    ],
    [
      "an external volume",
      "  files: { image: x, volumes: ['up:/data'] }\nvolumes: { up: { external: true } }\n",
    ],
    ["a stateless image", "  web: { image: nginx:1.27 }\n"],
  ])("%s is accepted", (_, more) => {
    expect(check(`services:\n  api: { image: x }\n${more}`)).not.toThrow();
  });

  test("a stateful service listed in shared-services is accepted; a listed service the file lacks is not", () => {
    const compose = "services:\n  api: { image: x }\n  db: { image: postgres:16 }\n";
    expect(check(compose, "\n      shared-services: [db]")).not.toThrow();
    expect(check(compose, "\n      shared-services: [db, cache]")).toThrow(
      /blue-green.shared-services names cache, which compose.yml does not define; nothing was changed/,
    );
  });

  test("the refusal comes at compose load, before any host is touched", async () => {
    const { loadComposeSource } = await import("../../src/deploy/compose-file.js");
    const ws = mkdtempSync(join(tmpdir(), "dk-bg-"));
    writeFileSync(join(ws, "compose.yml"), "services:\n  api: { image: x }\n  db: { image: postgres:16 }\n");
    const saved = process.env.GITHUB_WORKSPACE;
    process.env.GITHUB_WORKSPACE = ws;
    try {
      await expect(loadComposeSource(env())).rejects.toThrow(/service db keeps state/);
      await expect(loadComposeSource(env("\n      shared-services: [db]"))).resolves.toMatchObject({
        name: "compose.yml",
      });
    } finally {
      if (saved === undefined) delete process.env.GITHUB_WORKSPACE;
      else process.env.GITHUB_WORKSPACE = saved;
    }
  });
});
