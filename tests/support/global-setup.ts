import { ensureTestbed, testbedJsonPath, testbedUnavailableReason } from "./testbed.js";

/**
 * Brings the testbed up once before any test file runs (scripts/testbed/up.sh; about a second when
 * it is already up), so the first end-to-end file does not pay for it inside a test timeout.
 *
 * DK_SKIP_TESTBED=1 skips it (unit and contract tests need no testbed). On a machine where the
 * testbed cannot run (not root, not Debian) this warns instead of aborting the whole run: the unit
 * tests still run, and every end-to-end test fails with the reason from ensureTestbed(). Nothing is
 * skipped silently.
 */
export default async function setup(): Promise<void> {
  if (process.env.DK_SKIP_TESTBED === "1") return;
  const reason = testbedUnavailableReason();
  if (reason) {
    process.stderr.write(
      `\n[deploy-kit testbed] not started: ${reason}\n[deploy-kit testbed] end-to-end tests will fail.\n\n`,
    );
    return;
  }
  await ensureTestbed();
  // Test files (other processes) read the same file.
  process.env.DK_TESTBED_JSON = testbedJsonPath();
}
