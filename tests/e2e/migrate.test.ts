// The migrate action, bundled, against the testbed: a real host over SSH, its own dockerd, the
// example image (Debian with psql/pg_dump) and a database per test in the testbed PostgreSQL.
// Everything here is named t5-*: apps /srv/t5-*, databases t5_*, ports 185xx.
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { MemoryLog } from "../../src/core/log.js";
import { openHosts } from "../../src/deploy/hosts.js";
import { checkRestore, restoreBackup } from "../../src/migrate/index.js";
import type { LedgerEntry } from "../../src/release/ledger.js";
import { runBundled } from "../support/runner.js";
import {
  buildExampleImage,
  type ExampleImage,
  ensureTestbed,
  HOSTS_COMPOSE,
  hostExec,
  machinePath,
  resetHost,
  run,
  type Testbed,
  type TestbedHost,
  waitForHttp,
  writeOperatorEnv,
} from "../support/testbed.js";

let tb: Testbed;
let h1: TestbedHost;
let v1: ExampleImage;
let broken: ExampleImage;
let sshKey: string;
let knownHosts: string;

// The user's compose file: the example app's service with a port the operator's .env sets.
const COMPOSE = `services:
  api:
    image: \${API_IMAGE:-10.200.0.1:5000/t5-app:unset}
    init: true
    ports:
      - "\${T5_PORT}:8080"
    env_file: .env
`;

function config(app: string, backup: string) {
  return `version: 1
app: ${app}
image: { name: 10.200.0.1:5000/t5-app }
environments:
  e2e:
    hosts: [{ host: 10.200.0.2, user: deploy, alias: h1 }]
    path: /srv/${app}
    compose: { file: compose.yml, service: api }
    env-file: { required-keys: [DATABASE_URL] }
    migrate:
      command: migrate
      plan-command: migrate --plan
      timeout: 2m
      backup: { ${backup} }
`;
}

function workspace(
  app: string,
  backup = "required: true, service: api, database-env: DATABASE_URL, keep: 3",
): string {
  const dir = mkdtempSync(join(tmpdir(), `${app}-ws-`));
  writeFileSync(join(dir, "deploy-kit.yml"), config(app, backup));
  writeFileSync(join(dir, "compose.yml"), COMPOSE);
  return dir;
}

async function psql(db: string, sql: string): Promise<string> {
  const url = `postgres://postgres@127.0.0.1:${tb.postgres.port}/${db}`;
  return (await run("psql", [url, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])).stdout.trim();
}

async function freshDatabase(db: string): Promise<void> {
  await psql("postgres", `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await psql("postgres", `CREATE DATABASE ${db} OWNER ${tb.postgres.user}`);
}

async function freshApp(app: string, db: string, port: number, extraEnv = ""): Promise<void> {
  await resetHost(h1, app);
  await freshDatabase(db);
  const url = `postgres://${tb.postgres.user}:${tb.postgres.password}@${tb.postgres.host}:${tb.postgres.port}/${db}`;
  await writeOperatorEnv(h1, `/srv/${app}/.env`, `DATABASE_URL=${url}\nT5_PORT=${port}\n${extraEnv}`);
}

function migrate(ws: string, inputs: Record<string, string>) {
  return runBundled("migrate", {
    cwd: ws,
    inputs: { environment: "e2e", "ssh-key": sshKey, "known-hosts": knownHosts, ...inputs },
    env: { GITHUB_SHA: v1.gitSha },
  });
}

function ledger(app: string): LedgerEntry[] {
  const f = join(machinePath(h1, `/srv/${app}`), ".deploy-kit/releases.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LedgerEntry);
}

function backups(app: string): string[] {
  const dir = join(machinePath(h1, `/srv/${app}`), ".deploy-kit/backups");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/** pg_restore --list of a backup on the host, run on the machine (same PostgreSQL 15 tools). */
async function restoreList(hostPath: string): Promise<string> {
  return (await run("pg_restore", ["--list", machinePath(h1, hostPath)])).stdout;
}

beforeAll(async () => {
  tb = await ensureTestbed();
  h1 = tb.hosts[0]!;
  sshKey = readFileSync(tb.deployKeyPath, "utf8");
  knownHosts = readFileSync(tb.knownHostsPath, "utf8");
  v1 = await buildExampleImage({ repository: "t5-app", version: "1.0.0" });
  broken = await buildExampleImage({ repository: "t5-app", version: "2.0.0", migrationFail: true });
});

describe(`migrate (bundled) on the testbed (compose ${HOSTS_COMPOSE})`, () => {
  const app = "t5-mig";
  const db = "t5_mig";
  let ws: string;

  test("dry-run prints the pending SQL and changes nothing", async () => {
    await freshApp(app, db, 18501);
    ws = workspace(app);
    const r = await migrate(ws, { "image-ref": v1.ref, "dry-run": "true" });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.outputs.plan).toContain("-- pending: 001_create_widgets");
    expect(r.outputs.plan).toContain("CREATE TABLE widgets");
    expect(r.outputs.applied).toBe("false");
    expect(r.outputs.backup).toBe("");
    expect(r.summary).toContain("### Plan");
    expect(await psql(db, "SELECT to_regclass('widgets') IS NULL")).toBe("t");
    expect(backups(app)).toEqual([]);
    expect(ledger(app)).toEqual([]);
  });

  test("backs up first (verified), then the migration creates the table; the ledger records both", async () => {
    const started = Date.now();
    const r = await migrate(ws, { "image-ref": v1.ref });
    const took = Date.now() - started;
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.outputs.applied).toBe("true");
    expect(r.outputs.backup).toMatch(
      new RegExp(`^/srv/${app}/\\.deploy-kit/backups/\\d{8}T\\d{6}Z-${v1.gitSha.slice(0, 7)}\\.dump$`),
    );
    // The backup was taken before the migration: it has no widgets table; pg_restore can read it.
    const list = await restoreList(r.outputs.backup!);
    expect(list).toContain("; Archive created at");
    expect(list).not.toContain("TABLE public widgets");
    expect(await psql(db, "SELECT count(*) FROM widgets")).toBe("1");
    expect(await psql(db, "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations")).toBe(
      "001_create_widgets,002_add_widget_color",
    );
    expect(r.stdout).toContain("pg_dump in service api (one-off container)");
    // required: true proves the dump restores: a trial restore into a scratch database, dropped after.
    expect(r.stdout).toMatch(/trial restore into scratch database dk_trial_\d{8}t\d{6}z_[0-9a-f]{7}/);
    expect(r.stdout).toMatch(/verified by a trial restore: 0 tables, [\d.]+ (KiB|MiB) restored in \d+ s/);
    expect(r.summary).toContain("verified by a trial restore");
    expect(ledger(app)[0]!["backup-trial"]).toMatchObject({ tables: 0 });
    expect(await psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'dk_trial_%'")).toBe(
      "0",
    );
    expect(r.stdout).toContain("migrate: applying 001_create_widgets");
    expect(ledger(app)).toMatchObject([
      {
        kind: "migrate",
        status: "succeeded",
        "image-ref": v1.ref,
        backup: r.outputs.backup,
        "migration-applied": true,
      },
    ]);
    expect(r.summary).toContain("| e2e | h1 | api | `migrate` |");
    // Only the runner's own ::add-mask:: command may carry the key (that is how it learns to mask it).
    const shown = r.everything
      .split("\n")
      .filter((l) => !l.startsWith("::add-mask::"))
      .join("\n");
    expect(shown).not.toContain(sshKey.trim().split("\n")[1]!);
    console.log(`[t5] migrate with backup, first pull included: ${(took / 1000).toFixed(1)} s`);
  });

  test("a failing migration: the action fails with the command, exit code, output and restore command; v1 keeps serving; the backup stays", async () => {
    // v1 serving, as deploy-ssh would leave it.
    await hostExec(
      h1,
      `cd /srv/${app} && cp .deploy-kit/migrate/compose.yml compose.yml && docker-compose -p ${app} up -d`,
      {
        user: "deploy",
        env: { API_IMAGE: v1.ref },
      },
    );
    await waitForHttp(`http://${h1.address}:18501/health`, { timeoutMs: 30_000 });
    const before = (
      await hostExec(h1, `docker ps -q --filter label=com.docker.compose.project=${app}`)
    ).stdout.trim();
    expect(before).not.toBe("");

    const started = Date.now();
    const r = await migrate(ws, { "image-ref": broken.ref });
    const took = Date.now() - started;
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain("The migration `migrate` exited 1 on h1. The running release is untouched.");
    expect(r.stdout).toContain("migrate: 003_broken failed; it was rolled back");
    expect(r.stdout).toContain(
      `pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error`,
    );
    expect(r.stdout).toContain("pg_dump in service api (running container)");
    expect(r.outputs.applied).toBe("false");
    const backup = r.outputs.backup!;
    expect(backup).toMatch(/\.dump$/);
    expect(r.stdout).toContain(`The backup taken before it is ${backup} on h1`);
    // The backup is in place and readable, with v1's schema in it.
    expect(await restoreList(backup)).toContain("TABLE public widgets");
    // The half-applied 003 was rolled back; 001/002 and the data stay.
    expect(
      await psql(
        db,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'widgets' AND column_name = 'weight'",
      ),
    ).toBe("0");
    // The running release was never touched.
    const after = (
      await hostExec(h1, `docker ps -q --filter label=com.docker.compose.project=${app}`)
    ).stdout.trim();
    expect(after).toBe(before);
    const health = JSON.parse((await waitForHttp(`http://${h1.address}:18501/health`)).body);
    expect(health.git_sha).toBe(v1.gitSha);
    expect(ledger(app).at(-1)).toMatchObject({
      kind: "migrate",
      status: "failed",
      "image-ref": broken.ref,
      backup,
      "migration-applied": false,
      reason: "migration `migrate` exited 1",
    });
    expect(backups(app)).toHaveLength(2);
    console.log(`[t5] failing migration, reported: ${(took / 1000).toFixed(1)} s`);
  });

  test("rollback's restore-backup: verified, confirmed by database@file, a safety dump first, then restored", async () => {
    const backup = ledger(app).at(-1)!.backup!;
    await psql(db, "INSERT INTO widgets (name) VALUES ('written after the backup')");
    expect(await psql(db, "SELECT count(*) FROM widgets")).toBe("2");
    const env = parseConfig(config(app, "required: true, service: api, database-env: DATABASE_URL"))
      .environments.e2e!;
    const log = new MemoryLog();
    const hosts = await openHosts(env, { sshKey, knownHosts }, log);
    const target = {
      remote: hosts.remotes[0]!,
      path: env.path,
      compose: { bin: "docker-compose" as const, project: app, dir: env.path, files: ["compose.yml"] },
      backup: env.migrate!.backup!,
      file: backup,
    };
    const expected = `${db}@${backup.split("/").pop()}`;
    let safety: string;
    try {
      const refused = await checkRestore({ ...target, confirm: "yes" }, log).catch((e) => e);
      expect(refused.message).toContain(`restore-backup replaces database ${db} with ${backup} on h1`);
      expect(refused.hint).toContain(`pass exactly: confirm-restore: ${expected}`);
      expect(await psql(db, "SELECT count(*) FROM widgets")).toBe("2");
      // The archive is proven by a trial restore before anything is dropped.
      const checked = await checkRestore({ ...target, confirm: expected }, log);
      expect(checked.database).toBe(db);
      expect(checked.trial?.tables).toBe(2);
      safety = (await restoreBackup({ ...target, label: "e2e", timeoutMs: 120_000 }, log)).safety.path;
    } finally {
      await hosts.close();
    }
    expect(log.text()).toContain(`restored ${backup}`);
    expect(log.text()).toContain(`safety dump of the current database: ${safety}`);
    expect(await psql(db, "SELECT string_agg(name, ',') FROM widgets")).toBe("first widget");
    // The safety dump holds the row the restore removed, and it is kept.
    expect(await restoreList(safety)).toContain("TABLE DATA public widgets");
    expect(backups(app)).toContain(safety.split("/").pop());
    const rows = (
      await run("pg_restore", ["--data-only", "--table=widgets", "-f", "-", machinePath(h1, safety)])
    ).stdout;
    expect(rows).toContain("written after the backup");
    expect(await psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'dk_trial_%'")).toBe(
      "0",
    );
  });
});

describe(`a required backup that cannot be taken (compose ${HOSTS_COMPOSE})`, () => {
  test("stops the migration: nothing applied, no dump left, the failure in the ledger", async () => {
    const app = "t5-nobackup";
    const db = "t5_nobackup";
    // The app's DATABASE_URL works; the URL the backup uses points at a port nothing listens on.
    await freshApp(app, db, 18502, `BACKUP_URL=postgres://app:app@${tb.postgres.host}:1/${db}\n`);
    const ws = workspace(app, "required: true, service: api, database-env: BACKUP_URL");
    const r = await migrate(ws, { "image-ref": v1.ref });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain(
      "No backup, no migration: the database backup on h1 failed, so the migration did not run",
    );
    expect(r.stdout).toMatch(/pg_dump: error: connection to server at "10\.200\.0\.1", port 1 failed/);
    expect(r.stdout).not.toContain("migrate: applying");
    expect(
      await psql(db, "SELECT to_regclass('widgets') IS NULL AND to_regclass('schema_migrations') IS NULL"),
    ).toBe("t");
    expect(backups(app)).toEqual([]);
    expect(ledger(app)).toMatchObject([
      { kind: "migrate", status: "failed", backup: null, "migration-applied": false },
    ]);
    expect(r.outputs).toMatchObject({ applied: "false", backup: "" });
  });
});
