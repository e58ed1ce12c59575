import { type ComposeProject, composeLine } from "../commands/compose.js";
import { script, sh } from "../commands/shell.js";

/** Exit status timeout(1) gives a command it stopped. */
export const TIMED_OUT = 124;

/**
 * `compose run --rm --no-deps -T` of one command in the service, as a fresh one-off container of
 * the NEW image (the compose project pins it). Named, so a timeout can remove the container
 * instead of leaving a half-finished migration running behind a dead client. The command is
 * the user's shell line from deploy-kit.yml (`alembic upgrade head`), run by the image's sh.
 */
export function oneOffScript(
  p: ComposeProject,
  o: { service: string; command: string; name: string; timeoutMs: number },
): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(o.name)) throw new Error(`not a container name: ${o.name}`);
  const secs = Math.max(1, Math.ceil(o.timeoutMs / 1000));
  const line = composeLine(p, [
    "run",
    "--rm",
    "--no-deps",
    "-T",
    "--name",
    o.name,
    o.service,
    "sh",
    "-c",
    o.command,
  ]);
  return script(
    "rc=0",
    // timeout(1) is coreutils/busybox; without it the SSH command's own deadline still applies.
    sh`if command -v timeout >/dev/null 2>&1; then timeout ${secs} sh -c ${line} || rc=$?; else sh -c ${line} || rc=$?; fi`,
    `if [ "$rc" -eq ${TIMED_OUT} ]; then`,
    sh`  echo ${`timed out after ${secs} s: stopping container ${o.name}`} >&2`,
    sh`  docker rm -f ${o.name} >/dev/null 2>&1 || true`,
    "fi",
    `exit "$rc"`,
  );
}

/** Paths of the files a migration runs with: the new compose file and the image pin, staged apart from the live release. */
export function migrateStage(path: string, composeName: string) {
  const root = path.replace(/\/+$/, "");
  const dir = `${root}/.deploy-kit/migrate`;
  return { dir, composeFile: `${dir}/${composeName.split("/").pop()}`, override: `${dir}/override.yml` };
}
