import { spawn } from "node:child_process";
import { mkdtempSync, symlinkSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRemoteHttp, remoteHttpScript } from "../../src/commands/http.js";
import type { SmokeCheck } from "../../src/config/schema.js";
import { MemoryLog } from "../../src/core/log.js";
import { runSmokeTests } from "../../src/smoke/run.js";
import type { Remote, RemoteCommand, RemoteResult } from "../../src/ssh/types.js";

/**
 * A Remote whose "host" is a local sh with a chosen PATH: the from-host scripts run for real,
 * with curl, with busybox wget only, or with neither.
 */
class LocalShell implements Remote {
  readonly alias = "local-sh";
  readonly commands: RemoteCommand[] = [];
  constructor(private readonly path: string) {}
  run(cmd: RemoteCommand): Promise<RemoteResult> {
    this.commands.push(cmd);
    return new Promise((resolve) => {
      const child = spawn("/bin/sh", ["-c", cmd.script], { env: { PATH: this.path } });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.stdin.end(cmd.stdin ?? "");
      child.on("close", (code) => resolve({ exitCode: code ?? -1, stdout, stderr }));
    });
  }
  async download(): Promise<never> {
    throw new Error("this fake host holds no files to download");
  }
  async upload(): Promise<void> {}
  async close(): Promise<void> {}
}

function pathWith(tools: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "t5-path-"));
  for (const [name, target] of Object.entries(tools)) symlinkSync(target, join(dir, name));
  return dir;
}
const BUSYBOX_TOOLS = ["mktemp", "rm", "cat", "tail", "head", "sed", "date", "wget", "timeout"];
const busyboxOnly = () => pathWith(Object.fromEntries(BUSYBOX_TOOLS.map((t) => [t, "/usr/bin/busybox"])));

let server: Server;
let base: string;
const auth: string[] = [];
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.headers.authorization) auth.push(req.headers.authorization);
    if (req.url === "/old") {
      res.writeHead(301, { location: "/health" });
      res.end();
    } else if (req.url === "/health") {
      res.writeHead(200, { "content-type": "application/json", "x-release": "r1" });
      res.end('{"status":"ok","git_sha":"abcdef1234567"}\n');
    } else {
      res.writeHead(404);
      res.end("nope");
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const health: SmokeCheck = {
  path: "/old",
  method: "GET",
  status: 200,
  json: { status: "ok" },
  headers: { "x-release": "^r1$" },
  "version-field": "git_sha",
};

describe("remote HTTP script (from: host)", () => {
  it("builds a curl/wget script with every value quoted", () => {
    const s = remoteHttpScript({
      url: "http://x/a'b;rm -rf /",
      method: "POST",
      timeoutMs: 2500,
      headersOnStdin: true,
    });
    expect(s).toContain(`curl -sS -L --max-redirs 10 -X POST -H @- --max-time 3 -D "$t/h" -o "$t/b"`);
    expect(s).toContain(`'http://x/a'"'"'b;rm -rf /'`);
    expect(s).toContain("a bearer token needs curl on the host");
    expect(s.startsWith("set -eu\n")).toBe(true);
  });

  it("runs with curl: follows the redirect, reports latency, sends the token on stdin only", async () => {
    auth.length = 0;
    const remote = new LocalShell(process.env.PATH!);
    const out = await runSmokeTests(
      {
        checks: [health],
        baseUrl: base,
        expectVersion: "abcdef1",
        retries: 0,
        intervalMs: 0,
        timeoutMs: 2000,
        bearerToken: "tok-123456789",
        remote,
      },
      new MemoryLog(),
    );
    expect(out.results[0]).toMatchObject({ passed: true, status: 200, version: "abcdef1234567" });
    expect(out.results[0]!.latencyMs).not.toBeNull();
    // curl keeps the token across a same-host redirect (and drops it for another host).
    expect(auth).toEqual(["Bearer tok-123456789", "Bearer tok-123456789"]);
    expect(remote.commands[0]!.script).not.toContain("tok-123456789");
    expect(remote.commands[0]!.stdin).toBe("authorization: Bearer tok-123456789\n");
  });

  it("runs with busybox wget only, for plain GETs", async () => {
    const remote = new LocalShell(busyboxOnly());
    const out = await runSmokeTests(
      {
        checks: [health],
        baseUrl: base,
        expectVersion: "abcdef1",
        retries: 0,
        intervalMs: 0,
        timeoutMs: 2000,
        remote,
      },
      new MemoryLog(),
    );
    expect(out.results[0]).toMatchObject({ passed: true, status: 200 });
    const missing = await runSmokeTests(
      {
        checks: [
          { ...health, path: "/missing", json: undefined, headers: undefined, "version-field": undefined },
        ],
        baseUrl: base,
        retries: 0,
        intervalMs: 0,
        timeoutMs: 2000,
        remote,
      },
      new MemoryLog(),
    );
    expect(missing.results[0]).toMatchObject({
      passed: false,
      status: 404,
      reason: "status 404, expected 200",
    });
  });

  it("says what is missing when the host lacks curl", async () => {
    const bb = new LocalShell(busyboxOnly());
    const tokenOut = await runSmokeTests(
      {
        checks: [health],
        baseUrl: base,
        retries: 0,
        intervalMs: 0,
        timeoutMs: 2000,
        bearerToken: "tok-123456789",
        remote: bb,
      },
      new MemoryLog(),
    );
    expect(tokenOut.results[0]!.reason).toBe("a bearer token needs curl on the host (only wget found)");
    const none = new LocalShell(pathWith({ mktemp: "/usr/bin/busybox", rm: "/usr/bin/busybox" }));
    const noneOut = await runSmokeTests(
      { checks: [health], baseUrl: base, retries: 0, intervalMs: 0, timeoutMs: 2000, remote: none },
      new MemoryLog(),
    );
    expect(noneOut.results[0]!.reason).toBe("neither curl nor wget is installed on this host");
  });

  it("reports connection refused from curl's exit code", async () => {
    const remote = new LocalShell(process.env.PATH!);
    const out = await runSmokeTests(
      { checks: [health], baseUrl: "http://127.0.0.1:9", retries: 0, intervalMs: 0, timeoutMs: 2000, remote },
      new MemoryLog(),
    );
    expect(out.results[0]).toMatchObject({ status: null, reason: "connection refused (nothing listening?)" });
  });

  it("parses the last response's headers after redirects", () => {
    const r = parseRemoteHttp(
      "DK-HTTP curl 0 200 0.0042\nDK-HEADERS\nHTTP/1.1 301 Moved\r\nLocation: /b\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n\nDK-ERROR\n\nDK-BODY\nhello",
    );
    expect(r).toMatchObject({
      tool: "curl",
      exitCode: 0,
      status: 200,
      headers: { "x-a": "1" },
      body: "hello",
    });
    expect(r.latencyMs).toBeCloseTo(4.2);
  });
});
