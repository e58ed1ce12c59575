import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  colorOverride,
  colorProject,
  nginxUpstream,
  otherColor,
  parseUpstream,
  stopColorScript,
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
