// What the README's commands need before they can run, installed by them rather than by a
// newcomer's memory: the locked packages (npm ci) and Node 24, the actions' runtime. Works when
// started by Node 20 (Debian's, a fresh machine's): it then re-runs the calling script under 24.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const NODE_MAJOR = 24;
const nodeDir = process.env.DK_NODE_DIR || "/opt/node24";

function say(msg) {
  process.stderr.write(`[deploy-kit] ${msg}\n`);
}

function sh(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: repo, stdio: "inherit" });
  if (r.error || r.status !== 0) {
    say(
      `${what} failed (${r.error?.message ?? `exit ${r.status}`}): run \`${[cmd, ...args].join(" ")}\` yourself to see why.`,
    );
    process.exit(1);
  }
}

/** node_modules is missing, or older than the lock file it was installed from. */
function packagesStale() {
  const marker = join(repo, "node_modules/.package-lock.json");
  if (!existsSync(join(repo, "node_modules/.bin/vitest")) || !existsSync(marker)) return true;
  return statSync(join(repo, "package-lock.json")).mtimeMs > statSync(marker).mtimeMs;
}

/** Installs the locked packages when they are missing or stale (what `npm ci` would do). */
export function ensurePackages() {
  if (!packagesStale()) return;
  say("installing the locked npm packages (npm ci)");
  const ci = spawnSync("npm", ["ci", "--no-fund", "--no-audit", "--loglevel=error"], {
    cwd: repo,
    stdio: "inherit",
  });
  if (ci.status !== 0) {
    // A registry mirror without other platforms' optional builds makes npm ci refuse the lock;
    // npm install with the same lock installs the same versions.
    say("npm ci refused the lock file; installing the same locked versions with npm install");
    sh("npm", ["install", "--no-fund", "--no-audit", "--loglevel=error"], "npm install");
  }
}

/** The path of a Node 24 binary: this one, or one installed from the npm registry into DK_NODE_DIR. */
export function node24() {
  if (Number(process.versions.node.split(".")[0]) >= NODE_MAJOR) return process.execPath;
  const bin = join(nodeDir, "node_modules/.bin/node");
  if (!existsSync(bin)) {
    say(
      `Node ${process.versions.node} is too old for the actions' runtime; installing Node ${NODE_MAJOR} into ${nodeDir}`,
    );
    sh(
      "npm",
      ["i", "--prefix", nodeDir, "--no-fund", "--no-audit", "--loglevel=error", `node@${NODE_MAJOR}`],
      "installing Node 24",
    );
  }
  return bin;
}

/**
 * Ensures packages and Node 24; when this process is an older Node, runs the calling script again
 * under Node 24 (same arguments, PATH led by Node 24) and exits with its status.
 */
export function ensureToolchain(script) {
  ensurePackages();
  const node = node24();
  if (node === process.execPath) return;
  const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ""}` };
  const r = spawnSync(node, [script, ...process.argv.slice(2)], { stdio: "inherit", env });
  process.exit(r.status ?? 1);
}
