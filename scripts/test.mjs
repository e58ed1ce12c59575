#!/usr/bin/env node
// npm test: installs what the tests need (scripts/toolchain.mjs), then two passes of vitest on
// Node 24 against the testbed:
//   1. every test, the hosts running Compose v2 (what users' servers have);
//   2. the paths that change a host (deploy, rollback, blue-green, migrate) again on Compose v1,
//      the legacy path deploy-kit still supports, so neither rots.
// Arguments (npm test -- tests/unit) run one vitest pass with them instead. Exits non-zero when
// any test failed; the last line counts both passes.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureToolchain, repo } from "./toolchain.mjs";

ensureToolchain(fileURLToPath(import.meta.url));

export const V1_PASS = [
  "tests/e2e/deploy-ssh.test.ts",
  "tests/e2e/rollback.test.ts",
  "tests/e2e/blue-green.test.ts",
  "tests/e2e/migrate.test.ts",
];
const vitest = join(repo, "node_modules/vitest/vitest.mjs");
const out = mkdtempSync(join(tmpdir(), "dk-test-"));

/** One vitest run; returns its counts (from its JSON report) and exit status. */
function pass(name, args, compose) {
  process.stdout.write(`\n==> ${name} (hosts on Compose ${compose})\n`);
  const report = join(out, `${compose}.json`);
  const r = spawnSync(
    process.execPath,
    [vitest, "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...args],
    { cwd: repo, stdio: "inherit", env: { ...process.env, DK_TESTBED_COMPOSE: compose } },
  );
  let passed = 0;
  let failed = 0;
  try {
    const j = JSON.parse(readFileSync(report, "utf8"));
    passed = j.numPassedTests;
    failed = j.numFailedTests + (j.numRuntimeErrorTestSuites ?? 0);
  } catch {
    failed += 1; // no report: vitest itself failed
  }
  return { passed, failed, ok: r.status === 0 };
}

const args = process.argv.slice(2);
const runs = args.length
  ? [pass("vitest", args, process.env.DK_TESTBED_COMPOSE || "v2")]
  : [pass("all tests", [], "v2"), pass("the host-changing e2e paths on the legacy compose", V1_PASS, "v1")];
rmSync(out, { recursive: true, force: true });
const passed = runs.reduce((n, r) => n + r.passed, 0);
const failed = runs.reduce((n, r) => n + r.failed, 0);
process.stdout.write(`\ntests: ${passed} passed, ${failed} failed\n`);
process.exit(runs.every((r) => r.ok) && failed === 0 ? 0 : 1);
