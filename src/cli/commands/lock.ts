import { releaseLockScript, statePaths } from "../../commands/release.js";
import { script, sh } from "../../commands/shell.js";
import { DeployError } from "../../core/errors.js";
import type { LockInfo } from "../../release/lock.js";
import type { Remote } from "../../ssh/types.js";
import { table } from "../format.js";
import { SSH_FLAGS, withHosts } from "../remote.js";
import { type Command, EXIT, UsageError } from "../types.js";

/** Prints `free <now>` or `held <now>` and the lock's info.json ({} when it has none). Reads only. */
export function lockStatusScript(path: string): string {
  const p = statePaths(path);
  return script(
    "now=$(date +%s)",
    sh`if [ -d ${p.lock} ]; then`,
    `  echo "held $now"`,
    sh`  if [ -s ${p.lockInfo} ]; then cat ${p.lockInfo}; else echo '{}'; fi`,
    "else",
    `  echo "free $now"`,
    "fi",
  );
}

/** Remove a lock directory that has no info.json (a run killed between mkdir and the write). */
export function removeAnonymousLockScript(path: string): string {
  const p = statePaths(path);
  return script(
    sh`if [ -d ${p.lock} ] && [ ! -s ${p.lockInfo} ]; then rm -rf ${p.lock}; echo released; else echo not-ours; fi`,
  );
}

export interface LockState {
  alias: string;
  held: boolean;
  owner?: string;
  acquired?: string;
  leaseUntil?: string;
  expired?: boolean;
  token?: string;
}

export function parseLockStatus(alias: string, stdout: string): LockState {
  const [first = "", ...rest] = stdout.trim().split("\n");
  const [word, nowText] = first.split(" ");
  if (word !== "held") return { alias, held: false };
  let info: LockInfo = {};
  try {
    info = JSON.parse(rest.join("\n")) as LockInfo;
  } catch {}
  const now = Number(nowText);
  const iso = (s: number) => new Date(s * 1000).toISOString();
  const until =
    info.acquired !== undefined && info.lease !== undefined ? info.acquired + info.lease : undefined;
  return {
    alias,
    held: true,
    owner: info.owner,
    acquired: info.acquired !== undefined ? iso(info.acquired) : undefined,
    leaseUntil: until !== undefined ? iso(until) : undefined,
    // No lease recorded: treated as expired, as acquireLock does.
    expired: until === undefined || now > until,
    token: info.token,
  };
}

async function readLock(r: Remote, path: string): Promise<LockState> {
  const res = await r.run({ what: "read the deploy lock", script: lockStatusScript(path) });
  return parseLockStatus(r.alias, res.stdout);
}

function describe(s: LockState): string {
  if (!s.held) return `${s.alias}: free`;
  return `${s.alias}: held by ${s.owner ?? "an unknown owner"} since ${s.acquired ?? "?"}, lease until ${s.leaseUntil ?? "?"}${s.expired ? " (EXPIRED: the next deploy takes it over)" : ""}`;
}

export const lockCommand: Command = {
  summary: "Show who holds the deploy lock, or release a lock a dead run left",
  usage: "deploy-kit lock status|release --env E [--force]",
  details: [
    "status: per host, free or held (owner, since, lease end). Changes nothing.",
    "release: removes the lock only when its lease expired, or with --force (the holder is",
    "named first: be sure that run is dead, a live deploy would lose its lock). It removes the",
    "very lock it read (same token), never one taken in the meantime.",
  ],
  options: {
    force: { type: "boolean", description: "release a lock whose lease has not expired" },
    ...SSH_FLAGS,
  },
  async run(ctx) {
    const action = ctx.positionals[0];
    if (action !== "status" && action !== "release")
      throw new UsageError(
        action ? `unknown lock action "${action}" (status or release)` : "say status or release",
      );
    ctx.environment();
    return withHosts(ctx, async ({ env, remotes }) => {
      const states = await Promise.all(remotes.map((r) => readLock(r, env.path)));
      if (action === "status") {
        for (const s of states) ctx.log.debug(describe(s));
        ctx.emit({ ok: true, hosts: states.map(({ token: _t, ...s }) => s) }, () =>
          ctx.print(
            table(
              ["host", "lock", "owner", "since", "lease until"],
              states.map((s) => [
                s.alias,
                s.held ? (s.expired ? "held (expired)" : "held") : "free",
                s.owner ?? "",
                s.acquired ?? "",
                s.leaseUntil ?? "",
              ]),
            ),
          ),
        );
        return EXIT.ok;
      }
      const live = states.filter((s) => s.held && !s.expired);
      if (live.length && !ctx.bool("force")) {
        throw new DeployError(
          `The deploy lock is held and its lease has not expired:\n${live.map((s) => `  ${describe(s)}`).join("\n")}`,
          {
            host: live[0]!.alias,
            hint: "If that run is still going, wait for it. If it is dead, pass --force (or wait for the lease to end: the next deploy takes an expired lock over).",
          },
        );
      }
      const released: string[] = [];
      for (const s of states.filter((x) => x.held)) {
        const r = remotes.find((x) => x.alias === s.alias)!;
        ctx.log.warn(`${describe(s)}: releasing`);
        const res = await r.run({
          what: "release the deploy lock",
          script: s.token ? releaseLockScript(env.path, s.token) : removeAnonymousLockScript(env.path),
        });
        if (res.stdout.trim() === "released") released.push(s.alias);
        else ctx.log.warn(`${s.alias}: the lock changed meanwhile (another run took it); left in place.`);
      }
      ctx.emit({ ok: true, released }, () =>
        ctx.print(
          released.length ? `released the deploy lock on ${released.join(", ")}` : "no lock to release",
        ),
      );
      return EXIT.ok;
    });
  },
};
