import { posix } from "node:path";
import { script, sh } from "./shell.js";

/** Everything deploy-kit keeps on a host lives under <path>/.deploy-kit/. */
export function statePaths(path: string) {
  const root = path.replace(/\/+$/, "");
  const state = `${root}/.deploy-kit`;
  return {
    root,
    state,
    ledger: `${state}/releases.jsonl`,
    lock: `${state}/lock`,
    lockInfo: `${state}/lock/info.json`,
    /** flock(1) on this file serialises lock changes between concurrent deploys. */
    lockGuard: `${state}/lock.guard`,
    /** The override compose runs with (a copy of the live release's). */
    override: `${state}/override.yml`,
    releases: `${state}/releases`,
    release: (id: string) => `${state}/releases/${id}`,
  };
}

export function readLedgerScript(path: string): string {
  const { ledger } = statePaths(path);
  return script(sh`if [ -f ${ledger} ]; then cat ${ledger}; fi`);
}

/** Append one JSON line. A single write under PIPE_BUF with O_APPEND never interleaves. */
export function appendLedgerScript(path: string, line: string): string {
  if (line.includes("\n")) throw new Error("a ledger line must be one line");
  const { state, ledger } = statePaths(path);
  return script(sh`mkdir -p ${state}`, sh`printf '%s\n' ${line} >> ${ledger}`);
}

// Hold the guard for the rest of the script when flock exists (util-linux, busybox); without it
// the atomic mkdir still keeps two deploys apart, only a stale takeover could race.
function guard(lockGuard: string): string {
  return sh`if command -v flock >/dev/null 2>&1; then exec 9>>${lockGuard}; flock 9; fi`;
}

/**
 * Try once to take the lock. Prints `acquired <now>` or `held <now>` followed by the holder's
 * info JSON. `takeOver` names the token of a lock the caller found stale: it is removed only if
 * it is still that same lock ("none" = a lock directory without info).
 */
export function acquireLockScript(
  path: string,
  lock: { owner: string; token: string; leaseSeconds: number; takeOver?: string },
): string {
  const p = statePaths(path);
  return script(
    sh`mkdir -p ${p.state}`,
    guard(p.lockGuard),
    "now=$(date +%s)",
    lock.takeOver === "none"
      ? sh`if [ -d ${p.lock} ] && [ ! -s ${p.lockInfo} ]; then rm -rf ${p.lock}; fi`
      : lock.takeOver
        ? sh`if [ -f ${p.lockInfo} ] && grep -qF ${`"token":${JSON.stringify(lock.takeOver)}`} ${p.lockInfo}; then rm -rf ${p.lock}; fi`
        : undefined,
    sh`if mkdir ${p.lock} 2>/dev/null; then`,
    sh`  printf '{"owner":%s,"token":%s,"acquired":%s,"lease":%s}\n' ${JSON.stringify(lock.owner)} ${JSON.stringify(lock.token)} "$now" ${lock.leaseSeconds} > ${p.lockInfo}`,
    `  echo "acquired $now"`,
    "else",
    `  echo "held $now"`,
    sh`  if [ -s ${p.lockInfo} ]; then cat ${p.lockInfo}; else echo '{}'; fi`,
    "fi",
  );
}

/** Remove the lock only if it is still ours (a takeover may have replaced it). */
export function releaseLockScript(path: string, token: string): string {
  const p = statePaths(path);
  return script(
    sh`[ -d ${p.state} ] || { echo absent; exit 0; }`,
    guard(p.lockGuard),
    sh`if [ -f ${p.lockInfo} ] && grep -qF ${`"token":${JSON.stringify(token)}`} ${p.lockInfo}; then rm -rf ${p.lock}; echo released; else echo not-ours; fi`,
  );
}

/**
 * Make a stored release the live one: its compose file to <path>/<name>, its override to
 * .deploy-kit/override.yml, each by copy-then-rename so compose never reads half a file.
 */
export function activateReleaseScript(path: string, id: string, composeName: string): string {
  const p = statePaths(path);
  const dir = p.release(id);
  const live = `${p.root}/${composeName}`;
  return script(
    sh`cp ${`${dir}/${composeName}`} ${`${live}.dk-new`}`,
    sh`mv -f ${`${live}.dk-new`} ${live}`,
    sh`cp ${`${dir}/override.yml`} ${`${p.override}.dk-new`}`,
    sh`mv -f ${`${p.override}.dk-new`} ${p.override}`,
  );
}

/** Copy a stored release's files under a new id (a rollback is a release of its own). */
export function copyReleaseScript(path: string, fromId: string, toId: string): string {
  const p = statePaths(path);
  return script(sh`rm -rf ${p.release(toId)}`, sh`cp -R ${p.release(fromId)} ${p.release(toId)}`);
}

export function releaseExistsScript(path: string, id: string, composeName: string): string {
  const dir = statePaths(path).release(id);
  return script(
    sh`if [ -f ${posix.join(dir, composeName)} ] && [ -f ${`${dir}/override.yml`} ]; then echo yes; else echo no; fi`,
  );
}

/** Delete stored release directories except `keepIds`. */
export function pruneReleaseDirsScript(path: string, keepIds: readonly string[]): string {
  const p = statePaths(path);
  return script(
    sh`[ -d ${p.releases} ] || exit 0`,
    sh`keep=${` ${keepIds.join(" ")} `}`,
    sh`for d in ${p.releases}/*; do`,
    `  [ -d "$d" ] || continue`,
    `  case "$keep" in *" \${d##*/} "*) continue ;; esac`,
    `  rm -rf "$d"`,
    "done",
  );
}
