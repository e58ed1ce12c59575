import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  colorOverride,
  colorProject,
  greenMarker,
  nginxColorSwitch,
  nginxUpstream,
  otherColor,
  parseUpstream,
  readMarkerScript,
  stopColorScript,
  switchMarkerScript,
  switchUpstreamScript,
} from "../../src/commands/proxy.js";

const sh = (script: string) => spawnSync("/bin/sh", ["-c", script], { encoding: "utf8" });

describe("proxy command builders", () => {
  test("the upstream file names the color and release in a marker that parses back", () => {
    const text = nginxUpstream("app", {
      app: "shop",
      color: "green",
      release: "20260101-000000-abc123",
      address: "127.0.0.1",
      port: 18702,
    });
    expect(text).toBe(
      [
        "# deploy-kit: app=shop color=green release=20260101-000000-abc123 port=18702",
        "# Written by deploy-kit on every blue-green switch; edits here are overwritten.",
        "upstream app {",
        "    server 127.0.0.1:18702;",
        "}",
        "",
      ].join("\n"),
    );
    expect(parseUpstream(text, "shop")).toEqual({
      color: "green",
      release: "20260101-000000-abc123",
      port: 18702,
    });
    // Another app's file, or a file deploy-kit did not write, names no live color.
    expect(parseUpstream(text, "other")).toBeUndefined();
    expect(parseUpstream("upstream app { server 127.0.0.1:8080; }\n", "shop")).toBeUndefined();
  });

  test.each([
    ["blue", "green"],
    ["green", "blue"],
  ] as const)("the color after %s is %s", (a, b) => expect(otherColor(a)).toBe(b));

  test("each color is its own compose project; the port override binds the color's port", () => {
    expect(colorProject("shop", "blue")).toBe("shop-blue");
    expect(
      JSON.parse(
        colorOverride({
          service: "api",
          address: "127.0.0.1",
          port: 18701,
          containerPort: 8080,
          version: "3.8",
        }),
      ),
    ).toEqual({ version: "3.8", services: { api: { ports: ["127.0.0.1:18701:8080"] } } });
  });

  test("stopping a color selects its containers by compose label, not by file", () => {
    expect(stopColorScript("shop-blue")).toBe(
      [
        "set -eu",
        "ids=$(docker ps -q --filter label=com.docker.compose.project=shop-blue --filter label=com.docker.compose.oneoff=False)",
        'if [ -n "$ids" ]; then docker stop $ids >/dev/null; fi',
        "set -- $ids",
        'echo "stopped $#"',
      ].join("\n"),
    );
  });
});

describe("switchUpstreamScript through a real shell", () => {
  const setup = () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-proxy-"));
    const file = join(dir, "upstream.conf");
    writeFileSync(file, "old\n");
    return { dir, file, log: join(dir, "reloads") };
  };

  test("writes the new file, runs test then reload, leaves no temporary file", () => {
    const { dir, file, log } = setup();
    const r = sh(
      switchUpstreamScript({
        file,
        content: "new $(touch pwned) `x` 'q'\n",
        testCommand: `echo test >> ${log}`,
        reloadCommand: `echo reload >> ${log}`,
      }),
    );
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(file, "utf8")).toBe("new $(touch pwned) `x` 'q'\n");
    expect(readFileSync(log, "utf8")).toBe("test\nreload\n");
    expect(existsSync(`${file}.dk-prev`) || existsSync(`${file}.dk-new`)).toBe(false);
    expect(existsSync(join(dir, "pwned"))).toBe(false);
  });

  test.each([
    ["test", { testCommand: "exit 3", reloadCommand: "echo reload >> LOG" }, 3, ""],
    ["reload", { reloadCommand: "false" }, 1, ""],
    // set -eu: a failing first part of the user's command fails it, even when more follows.
    ["reload", { reloadCommand: "false; true" }, 1, ""],
  ] as [string, { testCommand?: string; reloadCommand: string }, number, string][])(
    "a failing %s command puts the previous file back and fails",
    (what, cmds, code, reloads) => {
      const { file, log } = setup();
      const r = sh(
        switchUpstreamScript({
          file,
          content: "new\n",
          testCommand: cmds.testCommand,
          reloadCommand: cmds.reloadCommand.replace("LOG", log),
        }),
      );
      expect(r.status).toBe(code);
      expect(r.stderr).toContain(
        `the proxy ${what}-command failed (exit ${code}); the previous upstream file is back`,
      );
      expect(readFileSync(file, "utf8")).toBe("old\n");
      expect(existsSync(log) ? readFileSync(log, "utf8") : "").toBe(reloads);
    },
  );

  test("without a previous file, a failed reload leaves none", () => {
    const { dir } = setup();
    const file = join(dir, "sub/new.conf");
    const r = sh(switchUpstreamScript({ file, content: "x\n", reloadCommand: "exit 9" }));
    expect(r.status).toBe(9);
    expect(existsSync(file)).toBe(false);
  });
});

describe("switch: file (no reload per switch)", () => {
  const include = (file: string) =>
    nginxColorSwitch({
      app: "shop",
      name: "shop-web",
      file,
      address: "127.0.0.1",
      ports: { blue: 18701, green: 18702 },
    });

  test("the include names both colours and reads the live one from the marker per request", () => {
    expect(include("/srv/proxy/shop.conf")).toBe(
      [
        "# deploy-kit: app=shop switch=file blue=127.0.0.1:18701 green=127.0.0.1:18702",
        "# Include in the proxied location, then: proxy_pass http://$shop_web_upstream;",
        "# Green serves while /srv/proxy/shop.conf.green exists; deploy-kit switches by creating or removing it.",
        "set $shop_web_upstream 127.0.0.1:18701;",
        "if (-f /srv/proxy/shop.conf.green) {",
        "    set $shop_web_upstream 127.0.0.1:18702;",
        "}",
        "",
      ].join("\n"),
    );
  });

  test("reloads only when the include changes; a switch only moves the marker (real sh)", () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-marker-"));
    const file = join(dir, "shop.conf");
    const reloads = join(dir, "reloads");
    const run = (color: "blue" | "green", reloadCommand = `echo x >> ${reloads}`) =>
      sh(switchMarkerScript({ file, content: include(file), color, reloadCommand }));
    const live = () => sh(readMarkerScript(file)).stdout.trim();
    expect(live()).toBe(""); // no include yet: nothing says which colour serves

    let r = run("blue");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("reloaded");
    expect(readFileSync(file, "utf8")).toBe(include(file));
    expect(live()).toBe("blue");

    r = run("green");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toContain("reloaded");
    expect(existsSync(greenMarker(file))).toBe(true);
    expect(live()).toBe("green");

    r = run("blue");
    expect(r.status).toBe(0);
    expect(existsSync(greenMarker(file))).toBe(false);
    expect(live()).toBe("blue");
    expect(readFileSync(reloads, "utf8")).toBe("x\n"); // one reload, for the first include

    // A failing reload when the include must change: the old include is back, the marker untouched.
    writeFileSync(file, "# an older include\n");
    r = run("green", "exit 7");
    expect(r.status).toBe(7);
    expect(readFileSync(file, "utf8")).toBe("# an older include\n");
    expect(existsSync(greenMarker(file))).toBe(false);
  });
});
