import { afterEach, describe, expect, it, vi } from "vitest";
import { ActionLog, neutralizeWorkflowCommands } from "../../src/core/action-log.js";
import { CommandError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets, redact } from "../../src/core/secrets.js";
import { renderSummary } from "../../src/core/summary.js";
import { waitHealthy } from "../../src/deploy/health.js";
import { migrateLedgerEntry } from "../../src/migrate/ledger.js";
import { type LedgerEntry, parseLedger, serializeEntry } from "../../src/release/ledger.js";
import { FakeRemote } from "../support/fake-remote.js";

const PASSWORD = "S3cret-pw-9f2";

describe("redact: what a host can print", () => {
  it.each([
    // libpq echoes a DSN it cannot parse, password included.
    [
      `pg_dump: error: invalid URI query parameter: "postgis://app:${PASSWORD}@h/app?sslmode=require"`,
      `pg_dump: error: invalid URI query parameter: "postgis://app:***@h/app?sslmode=require"`,
    ],
    [`redis at redis://:${PASSWORD}@cache:6379/0`, "redis at redis://:***@cache:6379/0"],
    [`DATABASE_URL=postgres://app:${PASSWORD}@db/app`, "DATABASE_URL=***"],
    [`export JWT_SECRET_KEY="${PASSWORD} with spaces"`, "export JWT_SECRET_KEY=***"],
    [`A=1 PGPASSWORD=${PASSWORD} B=2`, "A=1 PGPASSWORD=***"],
    [`host=db port=5432 password=${PASSWORD} dbname=app`, "host=db port=5432 password=***"],
    [`      POSTGRES_PASSWORD: ${PASSWORD}`, "      POSTGRES_PASSWORD: ***"],
    [`  - STRIPE_API_KEY=${PASSWORD}`, "  - STRIPE_API_KEY=***"],
    [`{"db_password":"${PASSWORD}","user":"app"}`, `{"db_password":"***","user":"app"}`],
    [`Authorization: Bearer ${PASSWORD}`, "Authorization: ***"],
    ["using ghp_abcdefghijklmnopqrstuvwx1234 now", "using *** now"],
    ["key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "key ***"],
    ["aws AKIAIOSFODNN7EXAMPLE", "aws ***"],
    [
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----\nnext",
      "-----BEGIN PRIVATE KEY----- *** (redacted)\nnext",
    ],
  ])("%s", (text, expected) => {
    expect(redact(text)).toBe(expected);
  });

  it.each([
    "env-key=DATABASE_URL",
    "docker=27.1.1",
    "ghcr.io/acme/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "https://staging.example.com/health",
    "compose=docker compose",
    "pulled ghcr.io/acme/app:abc1234 in 2.0 s",
  ])("leaves %s alone", (text) => {
    expect(redact(text)).toBe(text);
  });
});

describe("redaction at the boundaries", () => {
  afterEach(() => forgetSecrets());

  it("a CommandError's message, command and tail never hold a DSN's password", () => {
    const e = new CommandError({
      command: `pg_dump 'postgis://app:${PASSWORD}@h/app'`,
      exitCode: 1,
      stderrTail: `pg_dump: error: invalid URI: "postgis://app:${PASSWORD}@h/app"`,
      host: "db-1",
    });
    expect(`${e.message} ${e.command} ${e.stderrTail}`).not.toContain(PASSWORD);
    expect(e.message).toContain("postgis://app:***@h/app");
  });

  it("the ledger's reason is redacted, and the line is still a ledger entry", () => {
    const base = {
      id: "20260101T000000Z-abc1234",
      "image-ref": "ghcr.io/acme/app@sha256:" + "a".repeat(64),
      "git-sha": "abc1234",
      version: "1.0.0",
      time: "2026-01-01T00:00:00Z",
      actor: "octocat",
      "run-url": null,
    };
    const entry = migrateLedgerEntry(base, {
      backupFailed: new Error(
        `pg_dump failed\n  | pg_dump: error: "postgis://app:${PASSWORD}@h/app" SECRET_KEY=${PASSWORD}`,
      ),
    });
    const line = serializeEntry(entry);
    expect(line).not.toContain(PASSWORD);
    expect(parseLedger(line)).toEqual([{ ...entry, reason: expect.stringContaining("app:***@h/app") }]);
    const own: LedgerEntry = { ...entry, reason: `DATABASE_URL=postgres://u:${PASSWORD}@h/d` };
    expect(serializeEntry(own)).toContain(`"reason":"DATABASE_URL=***"`);
  });

  it("the health gate's echo of a crashed container's logs is redacted", async () => {
    const remote = new FakeRemote([
      [
        /service containers/,
        {
          stdout:
            "now|1767225600\napi|cid1|sha256:new|exited|false|0|none|1|2026-01-01T00:00:00Z|/app-api-1\n",
        },
      ],
      [
        /container logs/,
        {
          stdout: `connecting to postgres://app:${PASSWORD}@db:5432/app\nJWT_SECRET=${PASSWORD}\nKeyError: boom\n`,
        },
      ],
    ]);
    const log = new MemoryLog();
    await expect(
      waitHealthy(remote, {
        project: "app",
        services: ["api"],
        imageId: "sha256:new",
        timeoutMs: 1000,
        intervalMs: 10,
        log,
      }),
    ).rejects.toThrow("app-api-1 exited with code 1");
    expect(log.text()).toContain("postgres://app:***@db:5432/app");
    expect(log.text()).toContain("KeyError: boom");
    expect(log.text()).not.toContain(PASSWORD);
  });

  it("the job summary is redacted", () => {
    const md = renderSummary("Migrate", [{ code: { text: `SECRET_TOKEN=${PASSWORD}` } }]);
    expect(md).not.toContain(PASSWORD);
  });
});

describe("workflow commands from a host stay text", () => {
  it.each([
    ["::set-output name=image-ref::evil", ":\u200b:set-output name=image-ref::evil"],
    ["  ::add-mask::x", "  :\u200b:add-mask::x"],
    ["line\n::stop-commands::tok\n::error::fake", "line\n:\u200b:stop-commands::tok\n:\u200b:error::fake"],
    ["old form ##[set-output name=a;]b", "old form #\u200b#[set-output name=a;]b"],
    ["a::b stays", "a::b stays"],
  ])("%j", (text, expected) => {
    expect(neutralizeWorkflowCommands(text)).toBe(expected);
  });

  it("ActionLog.info never writes a line the runner would take as a command", () => {
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    try {
      new ActionLog().info(
        "web-1: output:\n::set-output name=rolled-back::false\n::add-mask::\n##[endgroup]",
      );
    } finally {
      spy.mockRestore();
    }
    const lines = written.join("").split(/\r?\n/);
    expect(lines.filter((l) => /^\s*::|##\[/.test(l))).toEqual([]);
  });
});
