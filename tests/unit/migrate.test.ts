import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ComposeProject } from "../../src/commands/compose.js";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError, DeployError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { oneOffScript } from "../../src/migrate/commands.js";
import {
  checkRestore,
  checkRollbackDatabase,
  MigrationFailed,
  migrateLedgerEntry,
  migrationFor,
  restoreBackup,
  rollbackDatabasePlan,
  runMigrations,
  stageMigration,
} from "../../src/migrate/index.js";
import type { LedgerEntry } from "../../src/release/ledger.js";
import type { Remote } from "../../src/ssh/types.js";
import { FakeRemote } from "../support/fake-remote.js";

function env(migrate: string) {
  return parseConfig(`version: 1
app: t5-app
image: { name: 10.200.0.1:5000/t5/app }
environments:
  staging:
    hosts: [deploy@10.200.0.2]
    path: /srv/t5-app
    compose: { service: [api, worker] }
${migrate}
`).environments.staging!;
}

const WITH_BACKUP = `    migrate:
      command: bin/migrate
      plan-command: bin/migrate --plan
      timeout: 90s
      backup: { required: true, service: api, database-env: DATABASE_URL, keep: 3 }`;

const PROJECT: ComposeProject = {
  bin: "docker compose",
  project: "t5-app",
  dir: "/srv/t5-app",
  files: ["/srv/t5-app/.deploy-kit/migrate/compose.yml", "/srv/t5-app/.deploy-kit/migrate/override.yml"],
  projectDirectory: "/srv/t5-app",
};
const NOW = () => new Date("2026-11-22T04:05:06Z");
const BACKUP_LINE = "DK-BACKUP /srv/t5-app/.deploy-kit/backups/20261122T040506Z-abc1234.dump 2048 12";
// required: true verifies by a trial restore, which reports first.
const TRIAL_LINE = "DK-TRIAL 24576 3 1";

function ctx(remote: Remote, migrate = WITH_BACKUP, dryRun = false) {
  return { app: "t5-app", env: env(migrate), remote, compose: PROJECT, label: "abc1234", dryRun, now: NOW };
}

describe("oneOffScript", () => {
  it("runs the command in a named one-off container of the pinned project, under timeout(1)", () => {
    const s = oneOffScript(PROJECT, {
      service: "api",
      command: "bin/migrate && echo done",
      name: "t5-app-migrate-x",
      timeoutMs: 90_000,
    });
    expect(s).toBe(`set -eu
rc=0
if command -v timeout >/dev/null 2>&1; then timeout 90 sh -c 'cd /srv/t5-app && docker compose -p t5-app --project-directory /srv/t5-app -f /srv/t5-app/.deploy-kit/migrate/compose.yml -f /srv/t5-app/.deploy-kit/migrate/override.yml run --rm --no-deps -T --name t5-app-migrate-x api sh -c '"'"'bin/migrate && echo done'"'"'' || rc=$?; else sh -c 'cd /srv/t5-app && docker compose -p t5-app --project-directory /srv/t5-app -f /srv/t5-app/.deploy-kit/migrate/compose.yml -f /srv/t5-app/.deploy-kit/migrate/override.yml run --rm --no-deps -T --name t5-app-migrate-x api sh -c '"'"'bin/migrate && echo done'"'"'' || rc=$?; fi
if [ "$rc" -eq 124 ]; then
  echo 'timed out after 90 s: stopping container t5-app-migrate-x' >&2
  docker rm -f t5-app-migrate-x >/dev/null 2>&1 || true
fi
exit "$rc"`);
    expect(() => oneOffScript(PROJECT, { service: "api", command: "x", name: "a;b", timeoutMs: 1 })).toThrow(
      "not a container name",
    );
  });

  it("really stops a migration that outlives its timeout (sh, fake compose)", () => {
    const dir = mkdtempSync(join(tmpdir(), "t5-oneoff-"));
    mkdirSync(join(dir, "bin"));
    const tool = (name: string, body: string) => {
      writeFileSync(join(dir, "bin", name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(dir, "bin", name), 0o755);
    };
    tool("docker-compose", `echo "compose $*"; exec sleep 5`);
    tool("docker", `echo "docker $*" >> ${dir}/docker.log`);
    const s = oneOffScript(
      { ...PROJECT, bin: "docker-compose", dir },
      { service: "api", command: "x", name: "t5-slow", timeoutMs: 1000 },
    );
    const started = Date.now();
    const r = spawnSync("/bin/sh", ["-c", s], {
      env: { PATH: `${dir}/bin:/usr/bin:/bin` },
      encoding: "utf8",
    });
    expect(r.status).toBe(124);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(r.stderr).toContain("timed out after 1 s: stopping container t5-slow");
    expect(readFileSync(join(dir, "docker.log"), "utf8")).toBe("docker rm -f t5-slow\n");
  });
});

describe("runMigrations", () => {
  it("backs up, verifies, then migrates in the new image", async () => {
    const remote = new FakeRemote([
      [
        /pg_dump backup/,
        {
          stdout: `${TRIAL_LINE}\n${BACKUP_LINE}\n`,
          lines: ["pg_dump in service api (running container)", BACKUP_LINE],
        },
      ],
      [/bin\/migrate/, { lines: ["applying 001_create_items.sql", "CREATE TABLE"] }],
    ]);
    const log = new MemoryLog();
    const out = await runMigrations(ctx(remote), log);
    expect(out).toMatchObject({
      configured: true,
      applied: true,
      backup: {
        path: "/srv/t5-app/.deploy-kit/backups/20261122T040506Z-abc1234.dump",
        bytes: 2048,
        entries: 12,
        trial: { bytes: 24576, tables: 3, durationS: 1 },
      },
    });
    expect(log.text()).toContain("verified by a trial restore: 3 tables, 24.0 KiB restored in 1 s");
    expect(remote.commands[0]!.script).toContain("CREATE DATABASE dk_trial_20261122t040506z_abc1234");
    expect(remote.commands.map((c) => c.what)).toEqual([
      "pg_dump backup in service api",
      "bin/migrate (compose run api)",
    ]);
    const [backup, migrate] = remote.commands;
    expect(backup!.script).toContain(`dk_in_service sh -c `);
    expect(backup!.script).toContain("grep -vxF -e 20261122T040506Z-abc1234.dump | sort -r | tail -n +3");
    expect(migrate!.script).toContain("--name t5-app-migrate-20261122t040506z api sh -c");
    expect(migrate!.timeoutMs).toBe(150_000);
    expect(log.text()).toContain("CREATE TABLE");
    expect(log.text()).not.toContain("DK-BACKUP");
  });

  it("does not migrate when a required backup fails", async () => {
    const remote = new FakeRemote([
      [/pg_dump backup/, { exitCode: 65, stderr: "the backup is empty (0 bytes): not migrating" }],
    ]);
    const err = await runMigrations(ctx(remote), new MemoryLog()).catch((e) => e);
    expect(err).toBeInstanceOf(DeployError);
    expect(err.message).toMatch(/^No backup, no migration: the database backup on t5-host-1 failed/);
    expect(err.message).toContain("the backup is empty (0 bytes)");
    expect(remote.commands.map((c) => c.what)).toEqual(["pg_dump backup in service api"]);
  });

  it("migrates with a warning when an optional backup fails", async () => {
    const remote = new FakeRemote([
      [/pg_dump backup/, { exitCode: 1, stderr: "pg_dump: connection refused" }],
    ]);
    const log = new MemoryLog();
    const out = await runMigrations(
      ctx(remote, WITH_BACKUP.replace("required: true", "required: false")),
      log,
    );
    expect(out).toMatchObject({ applied: true, backup: undefined });
    expect(log.text()).toContain("warning: The database backup failed on t5-host-1; migrating without one");
  });

  it("reports a failed migration with exit code, output tail, backup and the restore command", async () => {
    const remote = new FakeRemote([
      [/pg_dump backup/, { stdout: `${TRIAL_LINE}\n${BACKUP_LINE}` }],
      [
        /bin\/migrate/,
        { exitCode: 3, lines: ["applying 002_bad.sql", 'ERROR:  relation "nope" does not exist'] },
      ],
    ]);
    const err = (await runMigrations(ctx(remote), new MemoryLog()).catch((e) => e)) as MigrationFailed;
    expect(err).toBeInstanceOf(MigrationFailed);
    expect(err.message).toBe(
      'The migration `bin/migrate` exited 3 on t5-host-1. The running release is untouched.\nLast output:\n  | applying 002_bad.sql\n  | ERROR:  relation "nope" does not exist',
    );
    expect(err.details).toMatchObject({ exitCode: 3, command: "bin/migrate" });
    expect(err.hint).toContain("/srv/t5-app/.deploy-kit/backups/20261122T040506Z-abc1234.dump on t5-host-1");
    expect(err.hint).toContain(
      "cd /srv/t5-app && docker compose -p t5-app --project-directory /srv/t5-app -f /srv/t5-app/.deploy-kit/migrate/compose.yml -f /srv/t5-app/.deploy-kit/migrate/override.yml exec -T api sh -c ",
    );
    expect(err.hint).toContain(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
      'pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error --dbname="${PGDATABASE:-${PGUSER:-$(id -un)}}"\' < /srv/t5-app/.deploy-kit/backups/20261122T040506Z-abc1234.dump',
    );
  });

  it("says a timeout is a timeout", async () => {
    const remote = new FakeRemote([
      [/pg_dump backup/, { stdout: `${TRIAL_LINE}\n${BACKUP_LINE}` }],
      [/bin\/migrate/, { exitCode: 124 }],
    ]);
    const err = await runMigrations(ctx(remote), new MemoryLog()).catch((e) => e);
    expect(err.message).toContain("`bin/migrate` timed out after 90 s");
    expect(err.hint).toMatch(/^Raise migrate.timeout/);
  });

  it("dry-run runs only the plan command and returns its output", async () => {
    const remote = new FakeRemote([[/--plan/, { stdout: "BEGIN;\nCREATE TABLE items ();\nCOMMIT;\n" }]]);
    const out = await runMigrations(ctx(remote, WITH_BACKUP, true), new MemoryLog());
    expect(out).toMatchObject({ applied: false, plan: "BEGIN;\nCREATE TABLE items ();\nCOMMIT;" });
    expect(remote.commands.map((c) => c.what)).toEqual(["bin/migrate --plan (compose run api)"]);
    const noPlan = WITH_BACKUP.replace("      plan-command: bin/migrate --plan\n", "");
    await expect(runMigrations(ctx(new FakeRemote(), noPlan, true), new MemoryLog())).rejects.toThrow(
      ConfigError,
    );
  });

  it("does nothing without a migrate section, and defaults the service to the first compose service", async () => {
    const remote = new FakeRemote();
    expect(await runMigrations(ctx(remote, ""), new MemoryLog())).toMatchObject({
      configured: false,
      applied: false,
    });
    expect(remote.commands).toEqual([]);
    await runMigrations(ctx(remote, "    migrate: { command: bin/migrate }"), new MemoryLog());
    expect(remote.commands[0]!.script).toContain(" api sh -c bin/migrate");
  });
});

describe("stageMigration", () => {
  it("uploads the compose file and an image pin apart from the live release, then pulls with the password on stdin", async () => {
    const remote = new FakeRemote([
      [/check docker, compose/, { stdout: "docker=20.10\ncompose=docker-compose\npath=dir\nwritable=yes\n" }],
    ]);
    const p = await stageMigration(
      remote,
      {
        app: "t5-app",
        env: env("    migrate: { command: bin/migrate, service: migrator }"),
        compose: { name: "compose.yml", content: 'version: "3.8"\nservices: {}\n', version: "3.8" },
        imageRef: "10.200.0.1:5001/t5/app@sha256:abc",
        login: { username: "dk", password: "pw-secret-1" },
      },
      new MemoryLog(),
    );
    expect(p).toEqual({ ...PROJECT, bin: "docker-compose" });
    expect(remote.uploads.map((u) => u.path)).toEqual(PROJECT.files);
    expect(JSON.parse(remote.uploads[1]!.content)).toEqual({
      version: "3.8",
      services: {
        api: { image: "10.200.0.1:5001/t5/app@sha256:abc" },
        worker: { image: "10.200.0.1:5001/t5/app@sha256:abc" },
        migrator: { image: "10.200.0.1:5001/t5/app@sha256:abc" },
      },
    });
    const pull = remote.commands.find((c) => c.what.startsWith("docker pull"))!;
    expect(pull.stdin).toBe("pw-secret-1");
    expect(pull.script).not.toContain("pw-secret-1");
  });

  it("refuses a host that is not ready, before changing anything", async () => {
    const remote = new FakeRemote([
      [
        /check docker, compose/,
        { stdout: "docker-error=permission denied\ncompose=none\npath=dir\nwritable=yes\n" },
      ],
    ]);
    const err = await stageMigration(
      remote,
      {
        app: "t5-app",
        env: env(WITH_BACKUP),
        compose: { name: "compose.yml", content: "services: {}\n" },
        imageRef: "x@sha256:1",
      },
      new MemoryLog(),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.problems.map((p: { message: string }) => p.message)).toEqual([
      "docker does not answer for this user: permission denied",
      "neither `docker compose` nor `docker-compose` is installed",
    ]);
    expect(remote.uploads).toEqual([]);
  });
});

describe("restoreBackup", () => {
  const b = env(WITH_BACKUP).migrate!.backup!;
  const file = "/srv/t5-app/.deploy-kit/backups/x.dump";
  const target = { path: "/srv/t5-app", compose: PROJECT, backup: b, file };
  const dumped = {
    stdout: "DK-TRIAL 24576 3 1\nDK-BACKUP /srv/t5-app/.deploy-kit/backups/y-pre-restore.dump 10 2\n",
  };
  it("takes a safety dump (never pruning) before pg_restore, under a deadline, and reports it", async () => {
    const ok = new FakeRemote([[/pg_dump backup/, dumped]]);
    const r = await restoreBackup({ ...target, remote: ok, label: "r1", timeoutMs: 60_000 }, new MemoryLog());
    expect(ok.commands.map((c) => c.what)).toEqual([
      "pg_dump backup in service api",
      `pg_restore of ${file}`,
    ]);
    expect(ok.commands[0]!.script).not.toContain("pruned old backup");
    expect(ok.commands[1]!.script).toContain("exec timeout 60 pg_restore --clean");
    expect(ok.commands[1]!.timeoutMs).toBe(120_000);
    expect(r.safety.path).toBe("/srv/t5-app/.deploy-kit/backups/y-pre-restore.dump");
  });

  it("a failed safety dump restores nothing; a failed restore names the safety dump", async () => {
    const noDump = new FakeRemote([[/pg_dump backup/, { exitCode: 1, stderr: "pg_dump: error" }]]);
    const e1 = await restoreBackup(
      { ...target, remote: noDump, label: "r1", timeoutMs: 1000 },
      new MemoryLog(),
    ).catch((e) => e);
    expect(e1.message).toContain("The safety dump of the current database failed on t5-host-1, so");
    expect(noDump.commands.some((c) => c.what.startsWith("pg_restore"))).toBe(false);
    const bad = new FakeRemote([
      [/pg_dump backup/, dumped],
      [/pg_restore of/, { exitCode: 1, stderr: "pg_restore: error: could not connect" }],
    ]);
    const err = await restoreBackup(
      { ...target, remote: bad, label: "r1", timeoutMs: 1000 },
      new MemoryLog(),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(DeployError);
    expect(err.message).toContain(`Restoring ${file} failed on t5-host-1`);
    expect(err.hint).toContain("Nothing was changed");
    expect(err.hint).toContain("y-pre-restore.dump");
  });

  it("checkRestore refuses without the confirmation naming the database and the backup, and prints it", async () => {
    const host = () =>
      new FakeRemote([[/verify backup/, { stdout: "DK-DATABASE shop\nverified x: 3 entries\n" }]]);
    for (const confirm of [undefined, "shop", "other@x.dump", "shop@y.dump"]) {
      const err = await checkRestore({ ...target, remote: host(), confirm }, new MemoryLog()).catch((e) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toContain(`restore-backup replaces database shop with ${file} on t5-host-1`);
      expect(err.hint).toContain("pass exactly: confirm-restore: shop@x.dump");
    }
    const r = host();
    expect(await checkRestore({ ...target, remote: r, confirm: "shop@x.dump" }, new MemoryLog())).toEqual({
      database: "shop",
    });
    expect(r.commands).toHaveLength(1);
    expect(r.commands[0]!.script).toContain("pg_restore --list");
    const broken = new FakeRemote([
      [/verify backup/, { exitCode: 66, stderr: "pg_restore --list cannot read the backup" }],
    ]);
    const err = await checkRestore(
      { ...target, remote: broken, confirm: "shop@x.dump" },
      new MemoryLog(),
    ).catch((e) => e);
    expect(err.message).toContain(
      `The backup ${file} on t5-host-1 failed verification; nothing was changed.`,
    );
  });
});

describe("ledger records", () => {
  const base = {
    "image-ref": "img@sha256:2",
    "git-sha": "b".repeat(40),
    version: null,
    time: "t",
    actor: "ci",
    "run-url": null,
  };
  const entry = (id: string, kind: LedgerEntry["kind"], extra: Partial<LedgerEntry> = {}): LedgerEntry => ({
    ...base,
    id,
    kind,
    status: "succeeded",
    backup: null,
    "migration-applied": null,
    ...extra,
  });

  it("builds migrate entries for success, failed migration and failed backup", () => {
    const ok = migrateLedgerEntry(
      { ...base, id: "r2" },
      {
        outcome: {
          configured: true,
          applied: true,
          backup: { path: "/b.dump", bytes: 1, entries: 1 },
          durationMs: 1,
        },
      },
    );
    expect(ok).toMatchObject({
      kind: "migrate",
      status: "succeeded",
      backup: "/b.dump",
      "migration-applied": true,
    });
    const failed = migrateLedgerEntry(
      { ...base, id: "r2" },
      {
        failed: new MigrationFailed(
          "x",
          {
            exitCode: 3,
            outputTail: "",
            command: "bin/migrate",
            backup: { path: "/b.dump", bytes: 1, entries: 1 },
          },
          {},
        ),
      },
    );
    expect(failed).toMatchObject({
      status: "failed",
      backup: "/b.dump",
      "migration-applied": false,
      reason: "migration `bin/migrate` exited 3",
    });
    const noBackup = migrateLedgerEntry(
      { ...base, id: "r2" },
      { backupFailed: new Error("No backup\nthe backup is empty") },
    );
    expect(noBackup).toMatchObject({
      status: "failed",
      backup: null,
      reason: "backup failed: the backup is empty",
    });
  });

  it("finds the migration of an image for deploy-ssh, until that image is deployed", () => {
    const m = entry("r2", "migrate", { backup: "/b.dump", "migration-applied": true });
    expect(migrationFor([entry("r1", "deploy", { "image-ref": "img@sha256:1" }), m], "img@sha256:2")).toEqual(
      { backup: "/b.dump", "migration-applied": true },
    );
    expect(migrationFor([m, entry("r2", "deploy")], "img@sha256:2")).toEqual({
      backup: null,
      "migration-applied": null,
    });
    expect(migrationFor([entry("r3", "migrate", { status: "failed" })], "img@sha256:2").backup).toBeNull();
  });

  it("plans the database side of a rollback", () => {
    const r1 = entry("r1", "deploy", { "image-ref": "img@sha256:1" });
    const entries = [
      r1,
      entry("r2", "migrate", { backup: "/b2.dump", "migration-applied": true }),
      entry("r2", "deploy", { backup: "/b2.dump", "migration-applied": true }),
      entry("r3", "deploy", { backup: "/b3.dump", "migration-applied": true }),
    ];
    const plan = rollbackDatabasePlan(entries, r1);
    expect(plan.backup).toBe("/b2.dump");
    expect(plan.migratedSince.map((e) => e.id)).toEqual(["r2", "r2", "r3"]);
    const warnings: string[] = [];
    expect(checkRollbackDatabase(plan, r1, false, (m) => warnings.push(m))).toBeUndefined();
    expect(warnings[0]).toContain(
      "across release(s) that applied migrations (r2, r3) without restoring the database",
    );
    expect(checkRollbackDatabase(plan, r1, true, () => {})).toBe("/b2.dump");
    const bare = rollbackDatabasePlan([r1, entry("r2", "deploy")], r1);
    expect(() => checkRollbackDatabase(bare, r1, true, () => {})).toThrow(
      "restore-backup: no database backup is recorded after release r1",
    );
  });
});
