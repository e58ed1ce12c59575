import { containerLogsScript, healthLogScript, serviceContainersScript } from "../commands/docker.js";
import { DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { redact } from "../core/secrets.js";
import type { Remote } from "../ssh/types.js";

export interface ContainerState {
  service: string;
  id: string;
  image: string;
  status: string;
  restarting: boolean;
  restarts: number;
  health: string;
  exitCode: number;
  startedAt: string;
  name: string;
}

export function parseContainers(stdout: string): { now: number; containers: ContainerState[] } {
  let now = 0;
  const containers: ContainerState[] = [];
  for (const line of stdout.split("\n")) {
    const f = line.trim().split("|");
    if (f[0] === "now") {
      now = Number(f[1]);
      continue;
    }
    if (f.length < 10) continue;
    const [service, id, image, status, restarting, restarts, health, exitCode, startedAt, name] =
      f as string[];
    containers.push({
      service: service!,
      id: id!,
      image: image!,
      status: status!,
      restarting: restarting === "true",
      restarts: Number(restarts) || 0,
      health: health!,
      exitCode: Number(exitCode) || 0,
      startedAt: startedAt!,
      name: name!.replace(/^\//, ""),
    });
  }
  return { now, containers };
}

export type HealthVerdict =
  | { state: "healthy" }
  | { state: "waiting"; detail: string }
  | { state: "failed"; detail: string; container?: ContainerState };

function uptimeSeconds(c: ContainerState, now: number): number {
  // Docker prints nanoseconds; Date.parse wants at most milliseconds.
  const t = Date.parse(c.startedAt.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isFinite(t) ? now - t / 1000 : 0;
}

const CRASH_LOOP_RESTARTS = 3;

/**
 * Is the release up? Every container of each service must run `imageId` and be healthy: its
 * healthcheck says so, or (without one) it has been running, not restarting, for `settleMs`.
 */
export function assessHealth(
  snapshot: { now: number; containers: ContainerState[] },
  services: readonly string[],
  imageId: string,
  settleMs: number,
): HealthVerdict {
  const waiting: string[] = [];
  for (const s of services) {
    const all = snapshot.containers.filter((c) => c.service === s);
    const fresh = all.filter((c) => c.image === imageId);
    for (const c of fresh) {
      if ((c.status === "exited" || c.status === "dead") && !c.restarting) {
        return { state: "failed", detail: `${c.name} exited with code ${c.exitCode}`, container: c };
      }
      if (c.health === "unhealthy") {
        return { state: "failed", detail: `${c.name} is unhealthy (its healthcheck fails)`, container: c };
      }
      if (c.restarts >= CRASH_LOOP_RESTARTS) {
        return {
          state: "failed",
          detail: `${c.name} keeps crashing (${c.restarts} restarts, last exit code ${c.exitCode})`,
          container: c,
        };
      }
    }
    if (fresh.length === 0) {
      waiting.push(`service ${s}: no container runs the new image yet`);
      continue;
    }
    const stale = all.filter((c) => c.image !== imageId && c.status !== "exited" && c.status !== "dead");
    if (stale.length)
      waiting.push(`service ${s}: ${stale.map((c) => c.name).join(", ")} still run the old image`);
    for (const c of fresh) {
      if (c.restarting || c.status !== "running")
        waiting.push(`${c.name} is ${c.restarting ? "restarting" : c.status}`);
      else if (c.health === "starting") waiting.push(`${c.name}: healthcheck starting`);
      else if (c.health === "none" && uptimeSeconds(c, snapshot.now) * 1000 < settleMs)
        waiting.push(`${c.name}: running, settling`);
    }
  }
  return waiting.length ? { state: "waiting", detail: waiting.join("; ") } : { state: "healthy" };
}

export interface HealthGate {
  project: string;
  services: readonly string[];
  imageId: string;
  timeoutMs: number;
  intervalMs: number;
  log: Log;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until the release is healthy; fail fast on a crash or a failing healthcheck. */
export async function waitHealthy(remote: Remote, gate: HealthGate): Promise<void> {
  const start = Date.now();
  // Without a healthcheck, "running" must last a moment: a container that dies at once is caught.
  const settleMs = Math.min(3000, gate.timeoutMs / 4);
  let last: HealthVerdict = { state: "waiting", detail: "no state read yet" };
  for (;;) {
    const res = await remote.run({
      what: "check the service containers",
      script: serviceContainersScript(gate.project, gate.services),
    });
    last = assessHealth(parseContainers(res.stdout), gate.services, gate.imageId, settleMs);
    if (last.state === "healthy") {
      gate.log.info(`${remote.alias}: healthy after ${((Date.now() - start) / 1000).toFixed(1)} s`);
      return;
    }
    if (last.state === "failed") break;
    if (Date.now() - start + gate.intervalMs > gate.timeoutMs) break;
    gate.log.debug(`${remote.alias}: ${last.detail}`);
    await sleep(gate.intervalMs);
  }
  const detail =
    last.state === "failed"
      ? last.detail
      : `not healthy within ${Math.round(gate.timeoutMs / 1000)} s (health.timeout): ${last.detail}`;
  const container = last.state === "failed" ? last.container : undefined;
  if (container) await showWhy(remote, container, gate.log);
  throw new DeployError(`${remote.alias}: the new release is not healthy: ${detail}.`, {
    host: remote.alias,
    hint: "See the container output above; fix the image or its configuration and deploy again.",
  });
}

async function showWhy(remote: Remote, c: ContainerState, log: Log): Promise<void> {
  const [logs, health] = await Promise.all([
    remote.run({ what: "read container logs", script: containerLogsScript(c.id), allowFailure: true }),
    remote.run({ what: "read the healthcheck log", script: healthLogScript(c.id), allowFailure: true }),
  ]);
  if (health.stdout.trim())
    log.info(
      `${remote.alias}: last healthcheck output of ${c.name}:\n${redact(health.stdout.trim().slice(-1500))}`,
    );
  if (logs.stdout.trim())
    log.info(`${remote.alias}: last output of ${c.name}:\n${redact(logs.stdout.trim())}`);
}
