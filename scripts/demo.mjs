#!/usr/bin/env node
// npm run demo: the whole story on this machine, driven through the BUILT CLI (dist/cli/index.js),
// the artifact users run. Brings up the testbed, then with examples/deploy-kit.yml (environment
// staging: host h1, /srv/example, port 8080, database `demo` in the testbed PostgreSQL):
//   build v1 -> plan -> deploy v1 (migration after a verified backup) -> smoke -> build+deploy v2
//   -> build a broken v3 (crashes at start) -> deploy it: the health gate fails, v2 comes back
//   -> the ledger, the app URL, the backup file, and the command that tears it all down.
// Re-runnable: it resets its app and database first. Exits non-zero when any phase misbehaves,
// including a v3 that is NOT rolled back. DK_DIST_ROOT=<dir> runs a CLI built with
// `node scripts/build.mjs --root <dir>` instead of the repository's dist/.
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureToolchain } from "./toolchain.mjs";

// A fresh clone on a machine with Node 20: install the packages and Node 24, then run on 24.
ensureToolchain(fileURLToPath(import.meta.url));

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const APP = "example";
const ENV = "staging";
const CONFIG = "examples/deploy-kit.yml";
const DB = "demo";
const started = Date.now();

const tty = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
const paint = (code) => (s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint("1");
const dim = paint("2");
const green = paint("32");
const red = paint("31");
const cyan = paint("36");
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;
const say = (s = "") => process.stdout.write(`${s}\n`);

class DemoFailure extends Error {}
const fail = (msg) => {
  throw new DemoFailure(msg);
};

const phases = [];
let phaseNo = 0;
async function phase(title, fn) {
  phaseNo++;
  say();
  say(bold(cyan(`━━ ${phaseNo}. ${title}`)));
  const t = Date.now();
  try {
    const r = await fn();
    phases.push({ title, ms: Date.now() - t, ok: true });
    say(green(`✓ ${title} (${secs(Date.now() - t)})`));
    return r;
  } catch (e) {
    phases.push({ title, ms: Date.now() - t, ok: false });
    say(red(`✗ ${title} (${secs(Date.now() - t)}): ${e.message}`));
    throw e;
  }
}

/** Runs a process; stderr (the CLI's progress) is shown indented, stdout is returned. */
function run(cmd, args, opts = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? repo,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    const show = (chunk, quiet) => {
      const text = chunk.toString();
      if (quiet) return;
      for (const line of text.split("\n")) if (line) process.stdout.write(`   ${dim("│")} ${line}\n`);
    };
    child.stdout.on("data", (b) => {
      out += b;
      if (opts.showStdout) show(b, false);
    });
    child.stderr.on("data", (b) => {
      err += b;
      show(b, opts.quiet);
    });
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code: code ?? 1, stdout: out, stderr: err }));
  });
}

// ---------------------------------------------------------------------------------------------

let tb;
let cliPath;
let dockerConfig;

function cli(args, opts = {}) {
  return run(process.execPath, [cliPath, ...args], {
    ...opts,
    env: {
      // The build engine of the testbed; an empty DOCKER_CONFIG so nothing touches ~/.docker.
      DOCKER_HOST: tb.localDockerHost,
      DOCKER_CONFIG: dockerConfig,
      NO_COLOR: tty ? "" : "1",
      DEPLOY_KIT_SSH_KEY: tb.deployKeyPath,
      DEPLOY_KIT_KNOWN_HOSTS: tb.knownHostsPath,
      ...opts.env,
    },
  });
}

async function cliJson(args, expectCode, opts = {}) {
  const r = await cli([...args, "--json"], opts);
  let json;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    fail(`deploy-kit ${args[0]} printed no JSON (exit ${r.code}):\n${r.stdout}${r.stderr.slice(-2000)}`);
  }
  if (r.code !== expectCode)
    fail(`deploy-kit ${args.join(" ")} exited ${r.code}, expected ${expectCode}: ${json.error ?? ""}`);
  return json;
}

/** A commit id per demo version: stable for a checkout (re-runs promote instead of rebuilding). */
function demoSha(version) {
  let head = "no-git";
  try {
    head = execFileSync("git", ["rev-parse", "HEAD"], {
      cwd: repo,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {}
  return createHash("sha1").update(`deploy-kit demo ${head} ${version}`).digest("hex");
}

async function build(version, extra = []) {
  const sha = demoSha(version);
  const json = await cliJson(
    ["build", "-c", CONFIG, "--git-sha", sha, "--version", version, "--insecure-registry", ...extra],
    0,
    { quiet: true },
  );
  say(
    `   ${json.skipped ? "already built for this checkout, promoted" : "built and pushed"}: ${json.imageRef}`,
  );
  return { ref: json.imageRef, sha, version };
}

async function health() {
  const res = await fetch(appUrl("/health"), { signal: AbortSignal.timeout(3000) });
  return res.json();
}

const appUrl = (p = "") => `http://${tb.hosts[0].address}:8080${p}`;

function printPhases(result) {
  for (const p of result.phases ?? []) say(`   ${p.name.padEnd(9)} ${secs(p.ms).padStart(7)}  ${p.result}`);
}

async function deploy(image, expectCode) {
  const json = await cliJson(
    [
      "deploy",
      "-c",
      CONFIG,
      "-e",
      ENV,
      "--image",
      image.ref,
      "--git-sha",
      image.sha,
      "--version",
      image.version,
    ],
    expectCode,
  );
  say();
  printPhases(json);
  return json;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  say(bold("deploy-kit demo: build, deploy, migrate with a backup, smoke test, and an automatic rollback"));
  say(dim(`repository ${repo}`));

  await phase("testbed up (dockerd, registry, SSH hosts in namespaces, PostgreSQL)", async () => {
    const r = await run("bash", [join(repo, "scripts/testbed/up.sh")], { quiet: true });
    if (r.code !== 0)
      fail(
        `scripts/testbed/up.sh exited ${r.code}:\n${(r.stdout + r.stderr).split("\n").slice(-30).join("\n")}`,
      );
    tb = JSON.parse(
      readFileSync(process.env.DK_TESTBED_JSON || "/var/lib/deploy-kit-testbed/testbed.json", "utf8"),
    );
    say(
      `   host h1 ${tb.hosts[0].address} (sshd, dockerd), registry ${tb.registry.plain}, PostgreSQL ${tb.postgres.host}:${tb.postgres.port}`,
    );
  });

  await phase("the CLI artifact (dist/cli/index.js)", async () => {
    const root = process.env.DK_DIST_ROOT ? resolve(process.env.DK_DIST_ROOT) : repo;
    cliPath = join(root, "dist/cli/index.js");
    if (!existsSync(cliPath)) {
      if (process.env.DK_DIST_ROOT)
        fail(`${cliPath} does not exist (DK_DIST_ROOT=${process.env.DK_DIST_ROOT})`);
      say("   dist/cli/index.js is missing: building it (node scripts/build.mjs)");
      const r = await run(process.execPath, [join(repo, "scripts/build.mjs")], { quiet: true });
      if (r.code !== 0) fail(`scripts/build.mjs failed:\n${r.stderr.slice(-3000)}`);
    }
    const v = await cli(["validate", "-c", CONFIG, "-e", ENV], { quiet: true });
    if (v.code !== 0) fail(`deploy-kit validate exited ${v.code}:\n${v.stderr}`);
    say(`   ${cliPath}; ${CONFIG} is valid`);
    dockerConfig = mkdtempSync(join(tmpdir(), "dk-demo-docker-"));
  });

  await phase(`reset: app ${APP} on h1, database ${DB}, the operator's .env`, async () => {
    const h1 = tb.hosts[0];
    const docker = (args) =>
      run("docker", args, { env: { DOCKER_HOST: h1.dockerHost, DOCKER_CONFIG: dockerConfig }, quiet: true });
    const ps = await docker(["ps", "-aq", "--filter", `label=com.docker.compose.project=${APP}`]);
    const ids = ps.stdout.split("\n").filter(Boolean);
    if (ids.length) await docker(["rm", "-f", "-v", ...ids]);
    // Anything else holding h1's port 8080 would make the demo fail for the wrong reason.
    const busy = await docker(["ps", "-q", "--filter", "publish=8080"]);
    if (busy.stdout.trim()) fail(`another container publishes port 8080 on h1: ${busy.stdout.trim()}`);
    const dir = join(h1.srvDir, APP);
    rmSync(dir, { recursive: true, force: true });
    const admin = `postgres://postgres@127.0.0.1:${tb.postgres.port}/postgres`;
    for (const sql of [
      `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`,
      `CREATE DATABASE ${DB} OWNER ${tb.postgres.user}`,
    ]) {
      const r = await run("psql", [admin, "-X", "-q", "-c", sql], { quiet: true });
      if (r.code !== 0) fail(`psql: ${r.stderr}`);
    }
    // The operator's file on the server: deploy-kit checks its key names, never reads or writes it.
    const deploy = await run("id", ["-u", "deploy"], { quiet: true });
    const gid = await run("id", ["-g", "deploy"], { quiet: true });
    const [uid, g] = [Number(deploy.stdout), Number(gid.stdout)];
    mkdirSync(dir, { mode: 0o755 });
    chownSync(dir, uid, g);
    const env = join(dir, ".env");
    const url = `postgres://${tb.postgres.user}:${tb.postgres.password}@${tb.postgres.host}:${tb.postgres.port}/${DB}`;
    writeFileSync(env, `DATABASE_URL=${url}\nAPP_ENV=staging\n`, { mode: 0o600 });
    chownSync(env, uid, g);
    say(`   /srv/${APP} on h1 emptied; database ${DB} recreated; /srv/${APP}/.env written (mode 600)`);
  });

  const v1 = await phase("build v1 and push it to the registry", () => build("1.0.0"));

  await phase("plan the v1 deploy (changes nothing)", async () => {
    const r = await cli(["plan", "-c", CONFIG, "-e", ENV, "--image", v1.ref, "--git-sha", v1.sha], {
      quiet: true,
      showStdout: true,
    });
    if (r.code !== 0) fail(`deploy-kit plan exited ${r.code}:\n${r.stderr.slice(-2000)}`);
    if (!r.stdout.includes("pending: 001_create_widgets"))
      fail("the plan does not show the pending migration");
  });

  let backup;
  await phase("deploy v1: backup, migrate, deploy, smoke test", async () => {
    const json = await deploy(v1, 0);
    backup = json.backup;
    if (!backup) fail("no backup was taken before the migration");
    const h = await health();
    if (h.git_sha !== v1.sha) fail(`h1 serves ${h.git_sha}, expected v1 ${v1.sha}`);
    say(`   ${appUrl("/health")} -> version ${h.version}, git_sha ${h.git_sha.slice(0, 12)}`);
  });

  await phase("smoke test what is live (deploy-kit smoke)", async () => {
    const json = await cliJson(["smoke", "-c", CONFIG, "-e", ENV, "--expect-version", v1.sha], 0, {
      quiet: true,
    });
    for (const r of json.results) say(`   ${r.method} ${r.url}: ${r.status} in ${r.latencyMs} ms`);
  });

  const v2 = await phase("build v2", () => build("2.0.0"));
  await phase("deploy v2", async () => {
    await deploy(v2, 0);
    const h = await health();
    if (h.git_sha !== v2.sha) fail(`h1 serves ${h.git_sha}, expected v2 ${v2.sha}`);
    say(`   ${appUrl("/health")} -> version ${h.version}`);
  });

  const v3 = await phase("build v3, deliberately broken (crashes at start)", () =>
    build("3.0.0-broken", ["--build-arg", "APP_MODE=crash"]),
  );
  await phase("deploy v3: the health gate fails and v2 comes back automatically", async () => {
    const json = await deploy(v3, 4);
    if (!json.rolledBack) fail("v3 failed but was NOT rolled back");
    const h = await health();
    if (h.git_sha !== v2.sha) fail(`after the rollback h1 serves ${h.git_sha}, expected v2 ${v2.sha}`);
    say(`   exit code 4 (failed, rolled back); ${appUrl("/health")} -> version ${h.version} again`);
  });

  await phase("the release ledger (deploy-kit releases)", async () => {
    const r = await cli(["releases", "-c", CONFIG, "-e", ENV], { quiet: true, showStdout: true });
    if (r.code !== 0) fail(`deploy-kit releases exited ${r.code}:\n${r.stderr}`);
    const lock = await cliJson(["lock", "status", "-c", CONFIG, "-e", ENV], 0, { quiet: true });
    if (lock.hosts.some((h) => h.held)) fail("the deploy lock was left behind");
    say("   deploy lock: free");
  });

  const backupOnMachine = join(tb.hosts[0].srvDir, backup.replace(/^\/srv\//, ""));
  if (!existsSync(backupOnMachine)) fail(`the backup ${backup} is not on h1`);
  const backups = readdirSync(dirname(backupOnMachine));
  say();
  say(bold(green(`Demo passed in ${secs(Date.now() - started)}.`)));
  for (const p of phases) say(`  ${secs(p.ms).padStart(7)}  ${p.title}`);
  say();
  say(bold("Where to look:"));
  say(`  the app (v2, after the rollback of v3):  ${appUrl("/health")}   (curl it)`);
  say(`  the backup taken before v1's migration:  ${backup} on h1`);
  say(`                               on this machine: ${backupOnMachine} (${backups.length} backup(s))`);
  say(
    `  the ledger:  node ${cliPath} releases -c ${CONFIG} -e ${ENV}   (DEPLOY_KIT_SSH_KEY=${tb.deployKeyPath} DEPLOY_KIT_KNOWN_HOSTS=${tb.knownHostsPath})`,
  );
  say(`  a shell on h1:  bash scripts/testbed/enter.sh h1`);
  say();
  say("The testbed is still running. Tear it down with:");
  say(bold("  npm run testbed:down"));
}

main()
  .then(() => {
    if (dockerConfig) rmSync(dockerConfig, { recursive: true, force: true });
  })
  .catch((e) => {
    if (dockerConfig) rmSync(dockerConfig, { recursive: true, force: true });
    say();
    say(
      red(
        bold(
          `Demo FAILED after ${secs(Date.now() - started)}: ${e instanceof DemoFailure ? e.message : (e.stack ?? e)}`,
        ),
      ),
    );
    say("The testbed is left running for a look (npm run testbed:down tears it down).");
    process.exitCode = 1;
  });
