import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  BACKUP_RESULT,
  backupFileName,
  backupScript,
  pgDumpArgv,
  pgRestoreArgv,
  pgTrialRestoreArgv,
  restoreScript,
  scratchDatabaseName,
  TRIAL_RESULT,
  type VerifyMode,
} from "../../src/commands/postgres.js";

describe("postgres command builders", () => {
  // The connection goes through libpq's environment: nothing about it is a pg_dump argument.
  it.each([
    [
      { database: "app", user: "postgres" },
      ["sh", "-c", "export PGDATABASE=app\nexport PGUSER=postgres\nexec pg_dump -Fc"],
    ],
    [{ database: "app" }, ["sh", "-c", "export PGDATABASE=app\nexec pg_dump -Fc"]],
  ])("pg_dump for %j", (db, argv) => {
    expect(pgDumpArgv(db)).toEqual(argv);
  });

  it("pg_dump from a URL in the container's env: the URL is never an argument", () => {
    const s = pgDumpArgv({ databaseEnv: "DATABASE_URL" })[2]!;
    expect(s.split("\n").pop()).toBe("exec pg_dump -Fc");
    expect(s).not.toMatch(/"\$url"|\$DATABASE_URL/);
  });

  it.each([
    [
      { database: "app", user: "postgres" },
      `exec pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error --dbname="\${PGDATABASE:-\${PGUSER:-$(id -un)}}"`,
    ],
    [
      { databaseEnv: "DB_URL" },
      `exec pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error --dbname="\${PGDATABASE:-\${PGUSER:-$(id -un)}}"`,
    ],
  ])("pg_restore for %j", (db, last) => {
    expect(pgRestoreArgv(db)[2]!.split("\n").pop()).toBe(last);
  });

  it.each([
    [{ databaseEnv: "X; rm -rf /" }, "not an environment variable name"],
    [{ database: "a b" }, "backup needs database-env or database"],
    [{ database: "--schema-only" }, "backup needs database-env or database"],
    [{ database: "app", user: "$(id)" }, "not a database user name"],
    [{ database: "app", user: "-W" }, "not a database user name"],
    [{}, "backup needs database-env or database"],
  ])("refuses %j", (db, message) => {
    expect(() => pgDumpArgv(db)).toThrow(message);
  });

  it("names backups so that text order is time order", () => {
    expect(backupFileName(new Date("2026-11-22T04:05:06.789Z"), "abc1234")).toBe(
      "20261122T040506Z-abc1234.dump",
    );
    expect(backupFileName(new Date("2026-01-02T03:04:05Z"), "a/b c")).toBe("20260102T030405Z-a-b-c.dump");
  });

  it("quotes every value in the backup and restore scripts", () => {
    const s = backupScript({
      compose: "docker compose -p t5 -f /srv/t5/compose.yml",
      service: "api",
      db: { databaseEnv: "DATABASE_URL" },
      dir: "/srv/t5 x/.deploy-kit/backups",
      name: "20261122T040506Z-abc.dump",
      keep: 3,
    });
    expect(s).toContain(`mkdir -p '/srv/t5 x/.deploy-kit/backups'`);
    expect(s).toContain(`file='/srv/t5 x/.deploy-kit/backups/20261122T040506Z-abc.dump'`);
    expect(s).toContain(`docker compose -p t5 -f /srv/t5/compose.yml exec -T api "$@"`);
    expect(s).toContain(`docker compose -p t5 -f /srv/t5/compose.yml run --rm --no-deps -T api "$@"`);
    // This run's file is left out of the prune list by name; keep counts it.
    expect(s).toContain("grep -vxF -e 20261122T040506Z-abc.dump | sort -r | tail -n +3 |");
    expect(s.startsWith("set -eu\numask 077\n")).toBe(true);
    const r = restoreScript({
      compose: "docker compose -p t5",
      service: "db",
      db: { database: "app" },
      file: "/srv/t5/b.dump",
    });
    expect(r).toContain(
      `dk_in_service sh -c 'export PGDATABASE=app
exec pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error --dbname="\${PGDATABASE:-\${PGUSER:-$(id -un)}}"' < "$file"`,
    );
  });
});

/**
 * The backup script, run for real by /bin/sh with a fake `compose` (runs the command locally
 * and records how it was asked) and fake pg tools: the keep/verify/prune logic is real.
 */
function sandbox(opts: {
  dump: string;
  listExit?: number;
  running?: boolean;
  /** pg_restore into a database: its exit status, or "sleep" to run past any deadline. */
  restore?: number | "sleep";
}) {
  const dir = mkdtempSync(join(tmpdir(), "t5-pg-"));
  const bin = join(dir, "bin");
  spawnSync("mkdir", ["-p", bin, join(dir, "backups")]);
  const tool = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  // compose ps -q prints a container id when "running"; exec/run strip their flags and run the rest.
  tool(
    "compose",
    `echo "$*" >> ${dir}/compose.log
case "$1" in
  ps) ${opts.running ? "echo cid123" : "true"} ;;
  exec) shift 3; exec "$@" ;;
  run) shift 5; exec "$@" ;;
esac`,
  );
  tool("docker", `echo true`);
  tool("pg_dump", `printf '%s' "$DUMP"`);
  tool(
    "pg_restore",
    `case "$*" in *--list*) ;; *)
  echo "pg_restore $*" >> ${dir}/sql.log
  ${opts.restore === "sleep" ? "exec sleep 5" : `cat > /dev/null; exit ${opts.restore ?? 0}`} ;;
esac
cat > /dev/null; echo ';header'; echo '1; TABLE t'; echo '2; TABLE u'; exit ${opts.listExit ?? 0}`,
  );
  // psql: records the SQL, answers the size and table-count queries of the trial restore.
  tool(
    "psql",
    `for a; do last="$a"; done; echo "$PGDATABASE: $last" >> ${dir}/sql.log
case "$last" in *pg_database_size*) echo 24576 ;; *count*) echo 3 ;; esac`,
  );
  const run = (name: string, keep = 2, verify?: VerifyMode) => {
    const s = backupScript({
      compose: "compose",
      service: "db",
      db: { database: "app" },
      dir: join(dir, "backups"),
      name,
      keep,
      verify,
    });
    return spawnSync("/bin/sh", ["-c", s], {
      env: { PATH: `${bin}:/usr/bin:/bin`, DUMP: opts.dump },
      encoding: "utf8",
    });
  };
  return {
    dir,
    run,
    backups: () => readdirSync(join(dir, "backups")).sort(),
    log: () => readFileSync(join(dir, "compose.log"), "utf8"),
    sql: () => (existsSync(join(dir, "sql.log")) ? readFileSync(join(dir, "sql.log"), "utf8") : ""),
  };
}

describe("trial restore (run by sh)", () => {
  const trial: VerifyMode = { kind: "restore", scratch: "dk_trial_20260101t000000z_abc", timeoutSecs: 1 };
  it("restores the dump into a scratch database, reports size, tables and time, and drops it", () => {
    const sb = sandbox({ dump: "PGDMP-data", running: true });
    const r = sb.run("20260101T000000Z-a.dump", 2, trial);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${TRIAL_RESULT} 24576 3 \\d+$`, "m"));
    expect(sb.backups()).toEqual(["20260101T000000Z-a.dump"]);
    const sql = sb.sql().split("\n");
    expect(sql.indexOf("app: CREATE DATABASE dk_trial_20260101t000000z_abc")).toBeGreaterThan(-1);
    expect(sql).toContain(
      "pg_restore --no-owner --no-acl --exit-on-error --single-transaction --dbname=dk_trial_20260101t000000z_abc",
    );
    expect(sql.at(-2)).toBe("app: DROP DATABASE IF EXISTS dk_trial_20260101t000000z_abc WITH (FORCE)");
  });

  it.each([
    [
      "a dump that lists but does not restore",
      1,
      "the trial restore failed (pg_restore exited 1): the backup does not restore",
    ],
    ["a restore past its deadline", "sleep" as const, "the trial restore ran past its deadline (1 s)"],
  ])("fails on %s, keeps no file and drops the scratch database", (_n, restore, message) => {
    const sb = sandbox({ dump: "PGDMP-data", running: true, restore });
    const r = sb.run("20260101T000000Z-a.dump", 2, trial);
    expect(r.status).toBe(67);
    expect(r.stderr).toContain(message);
    expect(r.stdout).not.toContain(BACKUP_RESULT);
    expect(sb.backups()).toEqual([]);
    expect(sb.sql().trim().split("\n").at(-1)).toBe(
      "app: DROP DATABASE IF EXISTS dk_trial_20260101t000000z_abc WITH (FORCE)",
    );
  });

  it("list stays list: no scratch database", () => {
    const sb = sandbox({ dump: "PGDMP-data", running: true });
    expect(sb.run("20260101T000000Z-a.dump", 2).status).toBe(0);
    expect(sb.sql()).toBe("");
  });

  it("refuses a scratch name that is not deploy-kit's", () => {
    expect(() => pgTrialRestoreArgv({ database: "app" }, "app", 5)).toThrow("not a scratch database name");
    expect(scratchDatabaseName("20260101T000000Z_abc1234")).toBe("dk_trial_20260101t000000z_abc1234");
  });
});

describe("backup script (run by sh)", () => {
  it("keeps a verified dump, reports it, and prunes beyond keep without touching the newest", () => {
    const sb = sandbox({ dump: "PGDMP-data", running: true });
    for (const n of ["20260101T000000Z-a.dump", "20260102T000000Z-b.dump", "20260103T000000Z-c.dump"]) {
      const r = sb.run(n);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${BACKUP_RESULT} ${join(sb.dir, "backups", n)} 10 2`);
    }
    expect(sb.backups()).toEqual(["20260102T000000Z-b.dump", "20260103T000000Z-c.dump"]);
    expect(sb.log()).toContain("exec -T db sh -c export PGDATABASE=app\nexec pg_dump -Fc");
    const r = sb.run("20260104T000000Z-d.dump", 1);
    expect(r.stdout).toContain("pruned old backup 20260103T000000Z-c.dump");
    expect(sb.backups()).toEqual(["20260104T000000Z-d.dump"]);
  });

  it("never prunes the backup just taken, even when the runner's clock is behind the host's last one", () => {
    const sb = sandbox({ dump: "PGDMP-data", running: true });
    for (const n of ["20260301T000000Z-a.dump", "20260302T000000Z-b.dump"])
      expect(sb.run(n, 2).status).toBe(0);
    // A runner whose clock says 2025: by name, this run's dump is the oldest.
    const r = sb.run("20250101T000000Z-skewed.dump", 2);
    expect(r.status, r.stderr).toBe(0);
    expect(sb.backups()).toEqual(["20250101T000000Z-skewed.dump", "20260302T000000Z-b.dump"]);
    expect(sb.run("20250101T000001Z-again.dump", 1).status).toBe(0);
    expect(sb.backups()).toEqual(["20250101T000001Z-again.dump"]);
  });

  it("uses a one-off container when the service is not running", () => {
    const sb = sandbox({ dump: "PGDMP" });
    expect(sb.run("20260101T000000Z-a.dump").status).toBe(0);
    expect(sb.log()).toContain("run --rm --no-deps -T db sh -c export PGDATABASE=app\nexec pg_dump -Fc");
  });

  it.each([
    ["an empty dump", { dump: "" }, 65, "the backup is empty (0 bytes): not migrating"],
    [
      "a dump pg_restore cannot list",
      { dump: "garbage", listExit: 1 },
      66,
      "pg_restore --list cannot read the backup",
    ],
  ])("fails on %s and leaves no file behind", (_n, o, code, message) => {
    const sb = sandbox(o);
    const r = sb.run("20260101T000000Z-a.dump");
    expect(r.status).toBe(code);
    expect(r.stderr).toContain(message);
    expect(sb.backups()).toEqual([]);
    expect(existsSync(join(sb.dir, "backups", "20260101T000000Z-a.dump.partial"))).toBe(false);
  });
});

/**
 * pg_dump's connection from the app's DATABASE_URL, run by a real sh with the host's awk and
 * busybox's: a fake pg_dump prints its argv and libpq's environment. The URL's password must
 * reach libpq (PGPASSWORD) and never pg_dump's argv, where `ps` shows it to every user.
 */
describe("pg_dump's connection from a URL (run by sh)", () => {
  const PASSWORD = "S3cret p@ss/%";
  function dumpWith(url: string | undefined, awk: "awk" | "busybox") {
    const dir = mkdtempSync(join(tmpdir(), "t5-pgenv-"));
    const tool = (name: string, body: string) => {
      writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(dir, name), 0o755);
    };
    tool("pg_dump", `echo "argv: $*"; env | grep '^PG' | sort`);
    if (awk === "busybox") tool("awk", 'exec busybox awk "$@"');
    const [sh, flag, script] = pgDumpArgv({ databaseEnv: "DATABASE_URL" });
    return spawnSync(sh!, [flag!, script!], {
      env: { PATH: `${dir}:/usr/bin:/bin`, ...(url === undefined ? {} : { DATABASE_URL: url }) },
      encoding: "utf8",
    });
  }
  const encoded = encodeURIComponent(PASSWORD);

  describe.each([["awk" as const], ["busybox" as const]])("with %s", (awk) => {
    it.each([
      [
        `postgresql+psycopg://app:${encoded}@db:5433/shop?sslmode=require&application_name=web`,
        [
          "PGAPPNAME=web",
          "PGDATABASE=shop",
          "PGHOST=db",
          `PGPASSWORD=${PASSWORD}`,
          "PGPORT=5433",
          "PGSSLMODE=require",
          "PGUSER=app",
        ],
      ],
      [
        `postgis://app:${encoded}@h/app`,
        ["PGDATABASE=app", "PGHOST=h", `PGPASSWORD=${PASSWORD}`, "PGUSER=app"],
      ],
      [
        "postgres://u@[::1]:5432,db2:5434/d",
        ["PGDATABASE=d", "PGHOST=::1,db2", "PGPORT=5432,5434", "PGUSER=u"],
      ],
      ["postgres:///app?host=/var/run/postgresql", ["PGDATABASE=app", "PGHOST=/var/run/postgresql"]],
    ])("%s", (url, env) => {
      const r = dumpWith(url, awk);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(["argv: -Fc", ...env, ""].join("\n"));
    });

    it.each([
      [undefined, 64, "DATABASE_URL is not set in this container"],
      [`mysql://app:${encoded}@h/app`, 64, "DATABASE_URL is not a postgres:// URL"],
      [`postgres://app:${encoded}@h/app?evil=1`, 64, "unknown connection parameter evil in DATABASE_URL"],
      [`postgres://app:a%0APATH=/tmp@h/app`, 64, "a value in DATABASE_URL holds a line break"],
    ])("refuses %s without echoing it", (url, code, message) => {
      const r = dumpWith(url, awk);
      expect(r.status).toBe(code);
      expect(r.stderr).toContain(message);
      expect(r.stdout + r.stderr).not.toContain(encoded);
      expect(r.stdout).not.toContain("argv");
    });
  });
});
