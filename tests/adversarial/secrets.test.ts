// Secrets: the bundled deploy action runs the whole pipeline (migrate with backup, deploy from
// the basic-auth registry, smoke from the host with a bearer token, notifications to three
// webhooks on a local receiver) with known secret values; then every byte it wrote (stdout,
// stderr, GITHUB_OUTPUT, GITHUB_STATE, step summary), the webhook payloads, and every file on
// the host (deploy path with ledger and override, /tmp, the deploy user's home) are searched for
// each secret raw, base64 and URL-encoded. The same run carries values the schema must accept
// (a migrate command with `;`, a dotted alias, a hostile actor and version): the canary file is
// never created on the host or here. App t9-sec on h1, port 18920, database t9_sec.

import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { recordTally } from "../support/tally.js";
import { localDocker, resetHost, run, type TestbedHost, writeOperatorEnv } from "../support/testbed.js";
import { type AdvBed, advBed, buildImages, COMPOSE, runStreaming, workspace } from "./support.js";

const APP = "t9-sec";
const PORT = 18920;
const DB = "t9_sec";
const CANARY = "/tmp/dk-canary";
const EVIL = `$(touch ${CANARY})\`touch ${CANARY}\`'; touch ${CANARY}; '"`;

let bed: AdvBed;
let h: TestbedHost;
let server: Server;
const received: { url: string; headers: string; body: string }[] = [];
const tally = { tried: 0, failures: 0 };

const TOKEN = "t9-bearer-Zx81+/=qq";
const HOOK_SECRET = (name: string) => `t9-${name}-hook-7fQ2+k/9=`;

beforeAll(async () => {
  bed = await advBed();
  h = bed.h1;
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      received.push({ url: req.url ?? "", headers: JSON.stringify(req.headers), body });
      res.end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const admin = `postgres://postgres@127.0.0.1:${bed.tb.postgres.port}/postgres`;
  await run("psql", [admin, "-X", "-c", `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`]);
  await run("psql", [admin, "-X", "-c", `CREATE DATABASE ${DB} OWNER ${bed.tb.postgres.user}`]);
  await resetHost(h, APP);
  const url = `postgres://${bed.tb.postgres.user}:${bed.tb.postgres.password}@${bed.tb.postgres.host}:${bed.tb.postgres.port}/${DB}`;
  await writeOperatorEnv(h, `/srv/${APP}/.env`, `DATABASE_URL=${url}\nT9_PORT=${PORT}\n`);
}, 600_000);

afterAll(async () => {
  recordTally({ category: "secrets", ...tally });
  server?.close();
  if (h) await resetHost(h, APP).catch(() => {});
  if (bed)
    await run(
      "psql",
      [
        `postgres://postgres@127.0.0.1:${bed.tb.postgres.port}/postgres`,
        "-X",
        "-c",
        `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`,
      ],
      { check: false },
    );
});

/** Every file under a machine-side directory (text or not), with its path. */
function filesUnder(dir: string): [string, Buffer][] {
  if (!existsSync(dir)) return [];
  const out: [string, Buffer][] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile() && st.size < 64 * 1024 * 1024) out.push([p, readFileSync(p)]);
  }
  return out;
}

function forms(secret: string): string[] {
  return [
    secret,
    Buffer.from(secret).toString("base64"),
    Buffer.from(secret).toString("base64url"),
    encodeURIComponent(secret),
    JSON.stringify(secret).slice(1, -1),
  ];
}

/**
 * Every form of every secret found in any source, as "what (form) in where". Each secret form
 * searched counts as one try of the tally; each leak as a failure.
 */
function leaksOf(secrets: [string, string][], sources: [string, string][]): string[] {
  const leaks: string[] = [];
  for (const [what, secret] of secrets)
    for (const form of forms(secret))
      for (const [where, text] of sources)
        if (text.includes(form)) leaks.push(`${what} (${form === secret ? "raw" : form}) in ${where}`);
  tally.tried += secrets.length * forms("x").length - 1;
  tally.failures += leaks.length;
  return leaks;
}

describe("secrets never leave the run's masked inputs", () => {
  test("full deploy action: no secret, raw, base64 or URL-encoded, in anything it wrote or left on the host", async () => {
    tally.tried++;
    try {
      // The private registry: the host logs in with the password for the pull.
      const [v1] = Object.values(await buildImages(["v1"]));
      const privateTag = `${bed.tb.registry.auth}/t9-app:t9-sec`;
      await localDocker(["login", "-u", bed.tb.registry.username, "--password-stdin", bed.tb.registry.auth], {
        input: bed.tb.registry.password,
      });
      await localDocker(["tag", v1!.tagRef, privateTag]);
      const pushed = await localDocker(["push", privateTag]);
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)![1];
      const imageRef = `${bed.tb.registry.auth}/t9-app@${digest}`;

      const port = (server.address() as AddressInfo).port;
      const hooks = {
        T9_SLACK: `http://127.0.0.1:${port}/slack/${HOOK_SECRET("slack")}`,
        T9_DISCORD: `http://127.0.0.1:${port}/discord/${HOOK_SECRET("discord")}`,
        T9_HOOK: `http://127.0.0.1:${port}/hook/${HOOK_SECRET("generic")}`,
      };
      const dir = workspace({
        app: APP,
        hosts: [{ ...h, alias: "h1.t9_sec-alias" }],
        port: PORT,
        registry: bed.tb.registry.auth,
        extra: `    migrate:
      command: "migrate; echo t9-after-migrate; touch ${CANARY}-in-container"
      backup: { service: api, database-env: DATABASE_URL }
    smoke:
      base-url: http://127.0.0.1:${PORT}
      from: host
      retries: 5
      interval: 500ms
      bearer-token-env: T9_TOKEN
      checks:
        - { path: /health, json: { status: ok }, version-field: git_sha }
`,
        top: `notify:
  slack-webhook-env: T9_SLACK
  discord-webhook-env: T9_DISCORD
  webhook-env: T9_HOOK
`,
      });
      const r = await runStreaming("deploy", {
        cwd: dir,
        inputs: {
          environment: "e2e",
          "image-ref": imageRef,
          "git-sha": v1!.gitSha,
          version: EVIL,
          "ssh-key": bed.sshKey,
          "known-hosts": bed.knownHosts,
          "registry-username": bed.tb.registry.username,
          "registry-password": bed.tb.registry.password,
          "require-backup": "true",
        },
        env: {
          ...hooks,
          T9_TOKEN: TOKEN,
          GITHUB_ACTOR: EVIL,
          GITHUB_REPOSITORY: "acme/t9",
          GITHUB_RUN_ID: "9300",
        },
      });
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain("t9-after-migrate");
      expect(received.map((x) => x.url.split("/")[1]).sort()).toEqual(["discord", "hook", "slack"]);

      // What a person or a third party could read. ::add-mask:: lines are consumed by the runner
      // (they are how the runner learns what to mask) and never shown.
      const visible = r.everything
        .split("\n")
        .filter((l) => !l.startsWith("::add-mask::"))
        .join("\n");
      const sources: [string, string][] = [
        ["action output (stdout, stderr, GITHUB_OUTPUT, GITHUB_STATE, summary)", visible],
        ["webhook payloads", received.map((x) => x.body).join("\n")],
      ];
      for (const [path, buf] of [
        ...filesUnder(join(h.srvDir, APP)),
        ...filesUnder(h.tmpDir),
        ...filesUnder(join(h.homeDir, ".docker")),
      ])
        sources.push([path, buf.toString("latin1")]);
      expect(sources.some(([p]) => p.endsWith("releases.jsonl"))).toBe(true);
      expect(sources.some(([p]) => p.endsWith("override.yml"))).toBe(true);

      const keyLines = bed.sshKey.split("\n").filter((l) => l.length >= 20 && !l.startsWith("-----"));
      const secrets: [string, string][] = [
        ["registry password", bed.tb.registry.password],
        ["registry user:password", `${bed.tb.registry.username}:${bed.tb.registry.password}`],
        ["bearer token", TOKEN],
        ...Object.entries(hooks).map(([k, v]) => [`${k} URL`, v] as [string, string]),
        ...Object.values(hooks).map((v) => ["webhook secret part", v.split("/").pop()!] as [string, string]),
        ...keyLines.map((l, i) => [`ssh key line ${i + 1}`, l] as [string, string]),
      ];
      const leaks = leaksOf(secrets, sources);
      // The scan reads the right bytes: the raw values are in what the process wrote, on the
      // ::add-mask:: lines only.
      expect(r.everything).toContain(`::add-mask::${TOKEN}`);
      expect(r.everything).toContain(`::add-mask::${hooks.T9_HOOK}`);
      expect(leaks).toEqual([]);
      // Hostile actor/version and the user's own `;` command: no canary on the host or here.
      expect(readdirSync(h.tmpDir).filter((f) => f.startsWith("dk-canary"))).toEqual([]);
      expect(existsSync(CANARY)).toBe(false);
    } catch (e) {
      if (tally.failures === 0) tally.failures++;
      throw e;
    }
  });

  // Secrets that come back from the server: a database URL libpq would echo, the operator's
  // env-file lines, and a crashing container's logs that print them. They never reach the run's
  // output, summary, ledger or any file deploy-kit writes.
  test("a DSN, env-file lines and container logs from the host: none reaches the output, summary or ledger", async () => {
    const DSN_PASSWORD = "t9-Dsn-S3cret-pw";
    const ENV_SECRET = "t9-env-line-Q7zz+secret";
    const pg = bed.tb.postgres;
    const dsn = `postgis://t9:${DSN_PASSWORD}@${pg.host}:${pg.port}/${DB}?sslmode=disable`;
    tally.tried++;
    try {
      const [v1] = Object.values(await buildImages(["v1"]));
      await resetHost(h, APP);
      await writeOperatorEnv(
        h,
        `/srv/${APP}/.env`,
        `DATABASE_URL=${dsn}\nAPI_SECRET=${ENV_SECRET}\nT9_PORT=${PORT}\n`,
      );
      const dir = workspace({
        app: APP,
        hosts: [h],
        port: PORT,
        registry: bed.tb.registry.plain,
        extra:
          "    migrate:\n      command: migrate\n      backup: { service: api, database-env: DATABASE_URL }\n",
      });
      const common = {
        environment: "e2e",
        "image-ref": v1!.ref,
        "git-sha": v1!.gitSha,
        "ssh-key": bed.sshKey,
        "known-hosts": bed.knownHosts,
      };
      // 1. The backup connects with a URL whose password the server refuses.
      const backup = await runStreaming("deploy", {
        cwd: dir,
        inputs: { ...common, "require-backup": "true" },
      });
      expect(backup.exitCode).toBe(1);
      expect(backup.stdout).toMatch(/backup/i);
      // 2. The release's container prints its environment and exits: the health gate shows its logs.
      writeFileSync(
        join(dir, "compose.yml"),
        COMPOSE.replace(
          "    env_file: .env\n",
          '    env_file: .env\n    command: ["sh", "-c", "echo DATABASE_URL=$$DATABASE_URL; echo API_SECRET=$$API_SECRET; echo connecting to $$DATABASE_URL; exit 3"]\n',
        ),
      );
      const crash = await runStreaming("deploy-ssh", { cwd: dir, inputs: common });
      expect(crash.exitCode).toBe(1);
      expect(crash.stdout).toContain("API_SECRET=");

      const visible = (text: string) =>
        text
          .split("\n")
          .filter((l) => !l.startsWith("::add-mask::"))
          .join("\n");
      const sources: [string, string][] = [
        ["backup run output and summary", visible(backup.everything)],
        ["crash run output and summary", visible(crash.everything)],
      ];
      // What deploy-kit wrote on the host; the operator's .env is theirs and holds the values.
      for (const [path, buf] of filesUnder(join(h.srvDir, APP)))
        if (!path.endsWith("/.env")) sources.push([path, buf.toString("latin1")]);
      expect(sources.some(([p]) => p.endsWith("releases.jsonl"))).toBe(true);
      const secrets: [string, string][] = [
        ["DSN password", DSN_PASSWORD],
        ["DSN", dsn],
        ["env-file secret", ENV_SECRET],
      ];
      const leaks = leaksOf(secrets, sources);
      expect(leaks).toEqual([]);
    } catch (e) {
      if (tally.failures === 0) tally.failures++;
      throw e;
    }
  });
});
