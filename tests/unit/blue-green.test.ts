import { describe, expect, test } from "vitest";
import { nginxUpstream } from "../../src/commands/proxy.js";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError, DeployError } from "../../src/core/errors.js";
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
      proxy: {
        type: "nginx",
        "upstream-file": "/etc/nginx/conf.d/shop-upstream.conf",
        "reload-command": "sudo systemctl reload nginx",
        switch: "reload",
        "verify-url": "http://127.0.0.1/health",
        "verify-timeout": 1000,
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
  readonly uploads = new Map<string, string>();
  constructor(
    public upstream: string,
    readonly opts: { health: Health; warm?: boolean; proxyStatus?: number; reloadFails?: boolean },
  ) {}
  async run(cmd: RemoteCommand): Promise<RemoteResult> {
    this.steps.push(cmd.what);
    const ok = (stdout = "") => ({ exitCode: 0, stdout, stderr: "" });
    const container = (state: Health) =>
      `now|${Math.floor(Date.now() / 1000)}\napi|c1|sha256:new|${state === "crash" ? "exited" : "running"}|false|0|${state === "crash" ? "none" : "healthy"}|${state === "crash" ? 3 : 0}|2026-01-01T00:00:00Z|/shop-x_api_1\n`;
    if (cmd.what === "read the proxy's upstream file") return ok(this.upstream);
    if (cmd.what === "check the idle color's containers")
      return ok(this.opts.warm ? container("healthy") : "now|1\n");
    if (cmd.what === "check the service containers") return ok(container(this.opts.health));
    if (cmd.what.startsWith("switch the proxy to ")) {
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
  async upload(path: string, content: string | Buffer) {
    this.steps.push(`upload ${path.split("/").pop()}`);
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

function flow(remote: FakeHost, env = BG) {
  const config = parseConfig(configText(env));
  const log = new MemoryLog();
  const ctx = {
    config,
    env: config.environments.prod!,
    compose: parseComposeSource("compose.yml", "services:\n  api:\n    image: x\n", ["api"]),
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
});
