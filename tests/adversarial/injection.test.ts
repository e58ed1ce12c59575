// Injection, in two layers. (1) The schema refuses every payload in every field that reaches a
// remote command or file path. (2) What the schema must accept, and every value the builders
// take, stays one inert word: each generated script is parsed by sh -n and run by a real sh in a
// sandbox (docker, compose, curl stubbed), and a canary file is never created. Then a real
// deploy on h2 with values the schema accepts (a migrate command with `;`, smoke headers,
// an alias with dots, hostile actor/version) leaves no canary on the host.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { composeLine, composeUpScript } from "../../src/commands/compose.js";
import {
  containerLogsScript,
  healthLogScript,
  hostFactsScript,
  imageInfoScript,
  pruneImagesScript,
  pullImageScript,
  serviceContainersScript,
} from "../../src/commands/docker.js";
import { remoteHttpScript } from "../../src/commands/http.js";
import { backupScript, restoreScript } from "../../src/commands/postgres.js";
import {
  acquireLockScript,
  activateReleaseScript,
  appendLedgerScript,
  copyReleaseScript,
  pruneReleaseDirsScript,
  readLedgerScript,
  releaseExistsScript,
  releaseLockScript,
} from "../../src/commands/release.js";
import { configSchema } from "../../src/config/schema.js";
import { oneOffScript } from "../../src/migrate/commands.js";
import { recordTally } from "../support/tally.js";

const tally = { tried: 0, failures: 0 };
afterAll(() => recordTally({ category: "injection", ...tally }));

function count<T>(fn: () => T): T {
  tally.tried++;
  try {
    return fn();
  } catch (e) {
    tally.failures++;
    throw e;
  }
}

const CANARY = "/tmp/dk-canary";
const payloads = (canary: string) => [
  `;touch ${canary}`,
  `$(touch ${canary})`,
  `\`touch ${canary}\``,
  `a\ntouch ${canary}`,
  `a\rb`,
  `a && touch ${canary}`,
  `a | touch ${canary}`,
  `a > ${canary}`,
  `'; touch ${canary}; '`,
  `"; touch ${canary}; "`,
  `../../etc/passwd`,
  `a/../../b`,
  `-oProxyCommand=touch ${canary}`,
  `a b`,
  `\${IFS}touch\${IFS}${canary}`,
];

// ---------------------------------------------------------------------------------------------
// Layer 1: the schema
// ---------------------------------------------------------------------------------------------

function baseConfig(): Record<string, any> {
  return {
    version: 1,
    app: "app",
    image: { name: "ghcr.io/acme/app" },
    environments: {
      prod: {
        hosts: [{ host: "203.0.113.10", user: "deploy", alias: "web-1" }],
        ssh: { jump: { host: "bastion.example.com", user: "deploy" } },
        path: "/srv/app",
        compose: { file: "compose.yml", service: "api" },
        "env-file": { name: ".env", "required-keys": ["DATABASE_URL"] },
        migrate: {
          command: "migrate",
          service: "api",
          backup: { service: "db", "database-env": "DATABASE_URL", database: "app", user: "app" },
        },
        smoke: { "bearer-token-env": "TOKEN", checks: [{ path: "/health" }] },
      },
    },
    notify: { "slack-webhook-env": "SLACK", "discord-webhook-env": "DISCORD", "webhook-env": "HOOK" },
  };
}

/** Every config field whose value reaches a remote command, a file name or a path on the host. */
const FIELDS: [string, (c: Record<string, any>, v: string) => void][] = [
  ["app", (c, v) => (c.app = v)],
  ["image.name", (c, v) => (c.image.name = v)],
  ["environment name", (c, v) => (c.environments = { [v]: c.environments.prod })],
  ["hosts[].host", (c, v) => (c.environments.prod.hosts[0].host = v)],
  ["hosts[].user", (c, v) => (c.environments.prod.hosts[0].user = v)],
  ["hosts[].alias", (c, v) => (c.environments.prod.hosts[0].alias = v)],
  ["hosts[] as a string", (c, v) => (c.environments.prod.hosts = [`deploy@${v}:22`])],
  ["ssh.jump.host", (c, v) => (c.environments.prod.ssh.jump.host = v)],
  ["ssh.jump.user", (c, v) => (c.environments.prod.ssh.jump.user = v)],
  ["path", (c, v) => (c.environments.prod.path = `/srv/${v}`)],
  ["compose.file", (c, v) => (c.environments.prod.compose.file = v)],
  ["compose.service", (c, v) => (c.environments.prod.compose.service = v)],
  ["compose.service[]", (c, v) => (c.environments.prod.compose.service = ["api", v])],
  ["env-file.name", (c, v) => (c.environments.prod["env-file"].name = v)],
  ["env-file.required-keys[]", (c, v) => (c.environments.prod["env-file"]["required-keys"] = [v])],
  ["migrate.service", (c, v) => (c.environments.prod.migrate.service = v)],
  ["migrate.backup.service", (c, v) => (c.environments.prod.migrate.backup.service = v)],
  ["migrate.backup.database-env", (c, v) => (c.environments.prod.migrate.backup["database-env"] = v)],
  ["migrate.backup.database", (c, v) => (c.environments.prod.migrate.backup.database = v)],
  ["migrate.backup.user", (c, v) => (c.environments.prod.migrate.backup.user = v)],
  ["smoke.bearer-token-env", (c, v) => (c.environments.prod.smoke["bearer-token-env"] = v)],
  ["notify.slack-webhook-env", (c, v) => (c.notify["slack-webhook-env"] = v)],
  ["notify.discord-webhook-env", (c, v) => (c.notify["discord-webhook-env"] = v)],
  ["notify.webhook-env", (c, v) => (c.notify["webhook-env"] = v)],
  ["image.build-args key", (c, v) => (c.image["build-args"] = { [v]: "x" })],
];

describe("layer 1: the schema refuses every payload in every field that reaches the host", () => {
  test("the base config is valid", () => {
    expect(configSchema.safeParse(baseConfig()).success).toBe(true);
  });
  const cases = FIELDS.flatMap(([field, set]) => payloads(CANARY).map((p) => [field, p, set] as const));
  test.each(cases)("%s refuses %j", (_field, payload, set) => {
    count(() => {
      const c = baseConfig();
      set(c, payload);
      expect(configSchema.safeParse(c).success).toBe(false);
    });
  });

  test.each([
    ["path", "/srv/app/../../etc"],
    ["path", "/srv/.."],
    ["path", "/"],
    ["compose.file", "../compose.yml"],
    ["compose.file", "/etc/compose.yml"],
    ["compose.file", "deploy/../../x.yml"],
    ["env-file.name", ".."],
    ["env-file.name", "."],
  ])("path traversal outside <path>: %s %j is refused", (field, value) => {
    count(() => {
      const c = baseConfig();
      const env = c.environments.prod;
      if (field === "path") env.path = value;
      else if (field === "compose.file") env.compose.file = value;
      else env["env-file"].name = value;
      expect(configSchema.safeParse(c).success).toBe(false);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Layer 2: every builder, run by a real sh in a sandbox
// ---------------------------------------------------------------------------------------------

let box: string;
let canary: string;
let bin: string;

beforeAll(() => {
  box = mkdtempSync(join(tmpdir(), "t9-inject-"));
  canary = join(box, "canary");
  bin = join(box, "bin");
  mkdirSync(bin);
  // Stubs that print their argv and succeed: the script runs end to end without touching anything.
  for (const tool of ["docker", "docker-compose", "curl", "wget", "flock", "timeout"]) {
    const f = join(bin, tool);
    writeFileSync(f, `#!/bin/sh\nprintf '%s\\n' "$*" >> "${box}/calls"\n`);
    chmodSync(f, 0o755);
  }
});
afterAll(() => rmSync(box, { recursive: true, force: true }));

function runScript(text: string, stdin = ""): void {
  execFileSync("sh", ["-n", "-c", text]);
  try {
    execFileSync("sh", ["-c", text], {
      cwd: box,
      input: stdin,
      env: { PATH: `${bin}:/usr/bin:/bin`, HOME: box },
      stdio: ["pipe", "ignore", "ignore"],
      timeout: 10_000,
    });
  } catch {
    // A script may fail on stub output (that is fine); it must never run the payload.
  }
}

describe("layer 2: builders keep every value one inert word (sh -n, then a real sh in a sandbox)", () => {
  const builders: [string, (v: string, dir: string) => string][] = [
    [
      "composeUpScript project/dir/files",
      (v, d) =>
        composeUpScript({ bin: "docker compose", project: v, dir: `${d}/${v}`, files: [v, `${v}.yml`] }),
    ],
    [
      "composeLine args",
      (v, d) =>
        composeLine({ bin: "docker-compose", project: "p", dir: d, files: ["c.yml"], projectDirectory: v }, [
          v,
        ]),
    ],
    ["pullImageScript ref + username", (v) => pullImageScript(`reg.example/${v}`, { username: v })],
    ["imageInfoScript", (v) => imageInfoScript(v)],
    ["serviceContainersScript", (v) => serviceContainersScript(v, [v, "api"])],
    ["containerLogsScript", (v) => containerLogsScript(v)],
    ["healthLogScript", (v) => healthLogScript(v)],
    ["pruneImagesScript", (v) => pruneImagesScript(v, [v])],
    ["hostFactsScript path + env file", (v, d) => hostFactsScript(`${d}/${v}`, v)],
    [
      "remoteHttpScript url",
      (v) =>
        remoteHttpScript({
          url: `http://127.0.0.1:9/${v}`,
          method: "GET",
          timeoutMs: 1000,
          headersOnStdin: true,
        }),
    ],
    [
      "acquireLockScript owner + token",
      (v, d) => acquireLockScript(`${d}/${v}`, { owner: v, token: v, leaseSeconds: 5, takeOver: v }),
    ],
    ["releaseLockScript", (v, d) => releaseLockScript(`${d}/${v}`, v)],
    ["readLedgerScript", (v, d) => readLedgerScript(`${d}/${v}`)],
    ["appendLedgerScript (JSON line)", (v, d) => appendLedgerScript(d, JSON.stringify({ actor: v }))],
    ["activateReleaseScript", (v, d) => activateReleaseScript(`${d}/${v}`, v, v)],
    ["copyReleaseScript", (v, d) => copyReleaseScript(d, v, v)],
    ["releaseExistsScript", (v, d) => releaseExistsScript(d, v, v)],
    ["pruneReleaseDirsScript", (v, d) => pruneReleaseDirsScript(d, [v])],
    [
      "backupScript",
      (v, d) =>
        backupScript({
          compose: "docker compose -p p",
          service: v,
          db: { databaseEnv: "DATABASE_URL" },
          dir: `${d}/${v}`,
          name: v,
          keep: 2,
        }),
    ],
    [
      "restoreScript",
      (v, d) =>
        restoreScript({
          compose: "docker compose -p p",
          service: v,
          db: { database: "app" },
          file: `${d}/${v}`,
        }),
    ],
    [
      "oneOffScript service (the command is the user's own)",
      (v, d) =>
        oneOffScript(
          { bin: "docker compose", project: "p", dir: d, files: ["c.yml"] },
          { service: v, command: "migrate", name: "x1", timeoutMs: 1000 },
        ),
    ],
  ];
  const cases = builders.flatMap(([name, build]) => payloads("CANARY").map((p) => [name, p, build] as const));
  test.each(cases)("%s with %j", (_name, p, build) => {
    count(() => {
      const payload = p.replaceAll("CANARY", canary);
      let text: string;
      try {
        text = build(payload, box);
      } catch {
        return; // the builder refused the value outright (e.g. a newline in a ledger line): inert
      }
      runScript(text, payload);
      expect(existsSync(canary), text).toBe(false);
      expect(readdirSync(box).filter((f) => f.startsWith("canary"))).toEqual([]);
    });
  });
});
