import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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
  SWITCH_UNCERTAIN,
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
        `ids=$(docker ps --filter label=com.docker.compose.project=shop-blue --filter label=com.docker.compose.oneoff=False --format '{{.ID}} {{.Label "com.docker.compose.service"}}' | while read -r id svc; do case '  ' in *" $svc "*) ;; *) echo "$id" ;; esac; done)`,
        'if [ -n "$ids" ]; then docker stop $ids >/dev/null; fi',
        "set -- $ids",
        'echo "stopped $#"',
      ].join("\n"),
    );
  });

  test.each([
    [[], "c1 c2 c3", 3],
    [["db"], "c1 c3", 2],
    [["db", "cache"], "c1 c3", 2],
    [["api", "db", "worker"], "", 0],
  ])(
    "stopping a color keeps the shared services %j running (real sh, a docker that records)",
    (keep, stopped, n) => {
      const dir = mkdtempSync(join(tmpdir(), "dk-stop-"));
      writeFileSync(
        join(dir, "docker"),
        `#!/bin/sh\nif [ "$1" = ps ]; then printf 'c1 api\\nc2 db\\nc3 worker\\n'; else shift; echo "$*" >> ${dir}/stopped; fi\n`,
        { mode: 0o755 },
      );
      const r = spawnSync("/bin/sh", ["-c", stopColorScript("shop", keep)], {
        encoding: "utf8",
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`stopped ${n}\n`);
      expect(existsSync(join(dir, "stopped")) ? readFileSync(join(dir, "stopped"), "utf8").trim() : "").toBe(
        stopped,
      );
    },
  );
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
        timeoutS: 5,
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
          timeoutS: 5,
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

  /**
   * A switch with a 1 s deadline through a real shell. `reload` gets the file and a stand-in for
   * nginx (`served`): a reload makes it serve what the upstream file says at that moment.
   */
  const bounded = (reload: (loads: string, dir: string) => string, testCommand?: string) => {
    const { dir, file, log } = setup();
    const loads = `cp ${file} ${dir}/served`;
    const t = Date.now();
    const r = sh(
      switchUpstreamScript({
        file,
        content: "new\n",
        reloadCommand: reload(loads, dir),
        testCommand,
        timeoutS: 1,
      }),
    );
    return { dir, file, log, r, ms: Date.now() - t };
  };

  test("a reload that hangs after nginx read the new file: stopped at the deadline, the old file back and reloaded", () => {
    // The first reload loads the new file, then hangs; the second returns at once.
    const { dir, file, r, ms } = bounded(
      (loads, dir) => `${loads}; if ! [ -f ${dir}/once ]; then : > ${dir}/once; sleep 30; fi`,
    );
    expect(ms).toBeLessThan(8000);
    expect(r.status).toBe(124);
    expect(r.stderr).toContain(
      "the proxy reload-command ran past its 1 s deadline (reload-timeout) and was stopped; the previous upstream file is back in place",
    );
    expect(r.stderr).toContain("the proxy was reloaded with the previous file");
    // The file and what the proxy serves agree: both are the old colour.
    expect(readFileSync(file, "utf8")).toBe("old\n");
    expect(readFileSync(join(dir, "served"), "utf8")).toBe("old\n");
    expect(readdirSync(dir).filter((f) => f.includes(".dk-"))).toEqual([]);
  });

  test("a reload that always hangs: the old file is back and the script says the proxy may serve either", () => {
    const { file, r, ms } = bounded((loads) => `${loads}; sleep 30`);
    expect(ms).toBeLessThan(10_000);
    expect(r.status).toBe(SWITCH_UNCERTAIN);
    expect(r.stderr).toContain(
      "reloading the proxy with the previous file failed too (exit 124): it may serve either colour",
    );
    expect(readFileSync(file, "utf8")).toBe("old\n");
  });

  test("a test command that hangs is stopped; no reload runs and the old file is back", () => {
    const { dir, file, r } = bounded((loads, dir) => `echo reload >> ${dir}/reloads; ${loads}`, "sleep 30");
    expect(r.status).toBe(124);
    expect(r.stderr).toContain("the proxy test-command ran past its 1 s deadline");
    expect(existsSync(join(dir, "reloads"))).toBe(false);
    expect(readFileSync(file, "utf8")).toBe("old\n");
  });

  test("without a previous file, a failed reload leaves none", () => {
    const { dir } = setup();
    const file = join(dir, "sub/new.conf");
    const r = sh(switchUpstreamScript({ file, content: "x\n", reloadCommand: "exit 9", timeoutS: 5 }));
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
      sh(switchMarkerScript({ file, content: include(file), color, reloadCommand, timeoutS: 5 }));
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
