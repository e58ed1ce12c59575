/**
 * strategy: blue-green. A release starts as the idle color (its own compose project beside the
 * live one, on its own port), is held to the health gate, and only then does the proxy switch to
 * it: the upstream file is rewritten and the proxy reloaded (nginx drains old connections
 * gracefully), the switch is verified through the proxy, and the old color stops after the drain
 * period (or stays warm until the next deploy with keep-warm). If the new color never gets
 * healthy the proxy is never touched; if the check through the proxy fails, it switches back.
 * A rollback is the same move with the earlier release's image: with the old color still warm it
 * is only a switch.
 */

import { parse } from "yaml";
import { type ComposeBin, type ComposeProject, composeUpScript } from "../commands/compose.js";
import { serviceContainersScript } from "../commands/docker.js";
import { parseRemoteHttp, remoteHttpScript } from "../commands/http.js";
import {
  type Color,
  colorOverride,
  colorProject,
  nginxColorSwitch,
  nginxUpstream,
  otherColor,
  parseUpstream,
  readMarkerScript,
  readUpstreamScript,
  SWITCH_UNCERTAIN,
  stopColorScript,
  switchMarkerScript,
  switchUpstreamScript,
} from "../commands/proxy.js";
import { activateReleaseScript, statePaths } from "../commands/release.js";
import type { Environment } from "../config/schema.js";
import { CommandError, ConfigError, ConnectionLostError, DeployError } from "../core/errors.js";
import type { LedgerEntry } from "../release/ledger.js";
import type { Remote } from "../ssh/types.js";
import type { ComposeSource } from "./compose-file.js";
import { assessHealth, parseContainers, waitHealthy } from "./health.js";
import type { ReleaseContext } from "./release.js";

type BlueGreen = NonNullable<Environment["blue-green"]>;

/** The part of release.ts's per-host run this module reads and updates. */
export interface ColorHost {
  remote: Remote;
  bin: ComposeBin;
  ledger: LedgerEntry[];
  /** Set once the proxy points at the new color: a later failure elsewhere must switch it back. */
  touched: boolean;
}

type EntryFields = Pick<LedgerEntry, "id" | "kind" | "image-ref" | "status"> & Partial<LedgerEntry>;

export interface ColorRelease {
  /** The ledger fields of this release (id, kind, image-ref, ...); the color and status are added. */
  base: Pick<LedgerEntry, "id" | "kind" | "image-ref"> & Partial<LedgerEntry>;
  /** The image ID the health gate expects the new color's containers to run. */
  imageId: string;
  /** Appends a ledger line for this host (release.ts's `record`). */
  record(fields: EntryFields): Promise<void>;
}

const COMPOSE_UP_TIMEOUT = 15 * 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function blueGreenOf(env: Environment): BlueGreen {
  const bg = env["blue-green"];
  if (!bg)
    throw new ConfigError("strategy: blue-green needs a blue-green section in deploy-kit.yml.", {
      hint: "Add blue-green: { container-port, ports: { blue, green }, proxy: { upstream-file, reload-command, verify-url } }.",
    });
  return bg;
}

export const proxiedService = (env: Environment, bg: BlueGreen) => bg.service ?? env.compose.service[0]!;

/** Images that keep state of their own: a second, empty copy per colour loses it. */
const STATEFUL_IMAGE =
  /^(postgres(ql)?|postgis|timescaledb(-ha)?|mysql(-server)?|mariadb|percona(-server)?|mongo(db)?|redis(-stack(-server)?)?|valkey|keydb|rabbitmq|elasticsearch|opensearch|cassandra|couchdb|neo4j|influxdb|clickhouse(-server)?|minio|kafka|zookeeper|etcd|cockroach|mssql-server|nats|memgraph)$/;

interface ComposeService {
  image?: unknown;
  ports?: unknown[];
  volumes?: unknown[];
}

/** The repository part of an image, last component, without registry, tag or digest. */
const imageBase = (image: string) =>
  image
    .split("@")[0]!
    .split("/")
    .pop()!
    .replace(/:[^:]*$/, "")
    .toLowerCase();

/**
 * Why a service must not run once per colour, if it must not: a known stateful image, or a
 * named volume compose scopes to the project (each colour would get its own, empty).
 */
export function statefulReasons(svc: ComposeService, volumes: Record<string, unknown>): string[] {
  const reasons: string[] = [];
  if (typeof svc.image === "string" && STATEFUL_IMAGE.test(imageBase(svc.image)))
    reasons.push(`its image ${svc.image} keeps data`);
  for (const v of Array.isArray(svc.volumes) ? svc.volumes : []) {
    const source =
      typeof v === "string"
        ? v.split(":").length > 1
          ? v.split(":")[0]
          : undefined
        : (v as { type?: unknown; source?: unknown })?.type === "volume"
          ? (v as { source?: unknown }).source
          : undefined;
    // Paths (bind mounts) and ${...} are the host's; a bare name is a compose volume.
    if (typeof source !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(source)) continue;
    const def = (volumes[source] ?? {}) as { name?: unknown; external?: unknown };
    if (def.name || def.external) continue;
    reasons.push(
      `its named volume ${source} belongs to the compose project, so each colour gets a new, empty one`,
    );
  }
  return reasons;
}

/**
 * Checks of the compose file that blue-green needs, before anything changes (run at compose
 * load and again per host). Each color publishes the proxied service on its own port through
 * deploy-kit's override, and compose concatenates the `ports` of merged files: a port the user's
 * file publishes itself would be taken twice. Each colour is its own compose project: a stateful
 * service in it would get a new, empty copy per colour, and the first switch would stop the real
 * one, so such a service must be split out or listed in blue-green.shared-services.
 */
export function checkColorCompose(compose: ComposeSource, env: Environment): void {
  const bg = blueGreenOf(env);
  const service = proxiedService(env, bg);
  const doc = parse(compose.content) as {
    services?: Record<string, ComposeService>;
    volumes?: Record<string, unknown>;
  };
  const services = doc?.services ?? {};
  const ports = services[service]?.ports;
  if (Array.isArray(ports) && ports.length) {
    throw new ConfigError(
      `strategy: blue-green publishes service ${service} on blue-green.ports (${bg.ports.blue} blue, ${bg.ports.green} green), but ${compose.name} publishes it too (ports: ${JSON.stringify(ports)}); nothing was changed.`,
      {
        hint: `Remove \`ports:\` from service ${service} in ${compose.name}: deploy-kit adds "${bg["bind-address"]}:<color port>:${bg["container-port"]}" per color, and the proxy is what listens publicly.`,
      },
    );
  }
  const shared = bg["shared-services"];
  const unknown = shared.filter((s) => !(s in services));
  if (unknown.length) {
    throw new ConfigError(
      `blue-green.shared-services names ${unknown.join(", ")}, which ${compose.name} does not define; nothing was changed.`,
      { hint: `Services in ${compose.name}: ${Object.keys(services).join(", ") || "(none)"}.` },
    );
  }
  const stateful = Object.entries(services)
    .filter(([name]) => !shared.includes(name))
    .map(([name, svc]) => ({ name, reasons: statefulReasons(svc ?? {}, doc?.volumes ?? {}) }))
    .filter((s) => s.reasons.length);
  if (stateful.length) {
    throw new ConfigError(
      `strategy: blue-green runs every service of ${compose.name} once per colour, and ${stateful.map((s) => `service ${s.name} keeps state (${s.reasons.join("; ")})`).join(", ")}: the new colour would start with an empty copy and the switch would stop the real one. Nothing was changed.`,
      {
        hint: `Split ${stateful.map((s) => s.name).join(", ")} out of the colours: run it in its own compose project (or use a managed service) and list it in blue-green.shared-services: [${stateful.map((s) => s.name).join(", ")}], which deploy-kit then never starts per colour and never stops. A volume that may be shared by both colours of an app service gets a fixed \`name:\` in the top-level volumes.`,
      },
    );
  }
}

/** The services a colour runs: the compose file's, without the shared ones. */
export function colorServices(compose: ComposeSource, bg: BlueGreen): string[] | undefined {
  if (!bg["shared-services"].length) return undefined;
  const doc = parse(compose.content) as { services?: Record<string, unknown> };
  return Object.keys(doc?.services ?? {}).filter((s) => !bg["shared-services"].includes(s));
}

/** The color the proxy serves now: the upstream file's marker, else the ledger's last good color. */
export async function liveColor(
  host: ColorHost,
  app: string,
  bg: BlueGreen,
): Promise<{ color: Color; release: string } | undefined> {
  const lastGood = (color?: Color) =>
    host.ledger.findLast(
      (e) =>
        (e.kind === "deploy" || e.kind === "rollback") &&
        e.status === "succeeded" &&
        e.color &&
        (!color || e.color === color),
    );
  if (bg.proxy.switch === "file") {
    // The marker is the truth nginx acts on; the ledger says which release that colour runs.
    const res = await host.remote.run({
      what: "read which colour the proxy's marker selects",
      script: readMarkerScript(bg.proxy["upstream-file"]),
    });
    const color = res.stdout.trim() as Color | "";
    const last = lastGood(color || undefined);
    if (color && last) return { color, release: last.id };
    return last ? { color: last.color!, release: last.id } : undefined;
  }
  const res = await host.remote.run({
    what: "read the proxy's upstream file",
    script: readUpstreamScript(bg.proxy["upstream-file"]),
  });
  const marked = parseUpstream(res.stdout, app);
  if (marked) return { color: marked.color, release: marked.release };
  const last = lastGood();
  return last ? { color: last.color!, release: last.id } : undefined;
}

function colorCompose(ctx: ReleaseContext, bin: ComposeBin, color: Color, releaseId: string): ComposeProject {
  const dir = statePaths(ctx.env.path)
    .release(releaseId)
    .slice(ctx.env.path.replace(/\/+$/, "").length + 1);
  return {
    bin,
    project: colorProject(ctx.config.app, color),
    dir: ctx.env.path,
    // The release's own files: the live files at <path> belong to the color being replaced.
    files: [`${dir}/${ctx.compose.name}`, `${dir}/override.yml`, `${dir}/color.yml`],
    projectDirectory: ctx.env.path,
  };
}

/**
 * The switch step's own deadline, past the host's: test, reload and a second reload, each bounded
 * by reload-timeout on the host, plus margin. Only a host that stops answering reaches it.
 */
const switchDeadline = (bg: BlueGreen) => 3 * bg.proxy["reload-timeout"] + 30_000;

/**
 * A switch whose outcome is unknown: the host said nginx may serve either file, or the step was
 * cut by its deadline or a lost connection somewhere between writing the file and putting it back.
 */
const uncertainSwitch = (e: unknown) =>
  (e instanceof CommandError && (e.exitCode === SWITCH_UNCERTAIN || e.exitCode === null)) ||
  e instanceof ConnectionLostError;

async function switchProxy(
  host: ColorHost,
  ctx: ReleaseContext,
  bg: BlueGreen,
  to: { color: Color; release: string },
): Promise<void> {
  if (bg.proxy.switch === "file") {
    const res = await host.remote.run({
      what: `switch the proxy to ${to.color} (marker file)`,
      script: switchMarkerScript({
        file: bg.proxy["upstream-file"],
        content: nginxColorSwitch({
          app: ctx.config.app,
          name: bg.proxy["upstream-name"] ?? ctx.config.app,
          file: bg.proxy["upstream-file"],
          address: bg["bind-address"],
          ports: bg.ports,
        }),
        color: to.color,
        reloadCommand: bg.proxy["reload-command"],
        testCommand: bg.proxy["test-command"],
        timeoutS: bg.proxy["reload-timeout"] / 1000,
      }),
      timeoutMs: switchDeadline(bg),
      hint: "The proxy's test or reload command failed or ran past reload-timeout when the include was written; it was put back. Check blue-green.proxy (reload-command, test-command, reload-timeout) and that the deploy user may run them.",
    });
    if (res.stdout.includes("reloaded"))
      ctx.log.info(
        `${host.remote.alias}: the proxy's include ${bg.proxy["upstream-file"]} changed: reloaded once`,
      );
    return;
  }
  const content = nginxUpstream(bg.proxy["upstream-name"] ?? ctx.config.app, {
    app: ctx.config.app,
    color: to.color,
    release: to.release,
    address: bg["bind-address"],
    port: bg.ports[to.color],
  });
  await host.remote.run({
    what: `switch the proxy to ${to.color}`,
    script: switchUpstreamScript({
      file: bg.proxy["upstream-file"],
      content,
      reloadCommand: bg.proxy["reload-command"],
      testCommand: bg.proxy["test-command"],
      timeoutS: bg.proxy["reload-timeout"] / 1000,
    }),
    timeoutMs: switchDeadline(bg),
    hint: "The proxy's test or reload command failed or ran past reload-timeout; the upstream file was put back. Check blue-green.proxy (reload-command, test-command, reload-timeout) and that the deploy user may run them.",
  });
}

/** What the proxy's file selects now, for a message; never throws. */
async function readProxyFile(host: ColorHost, bg: BlueGreen): Promise<string> {
  const file = bg.proxy["upstream-file"];
  try {
    const res = await host.remote.run({
      what: "read the proxy's upstream file back",
      script: bg.proxy.switch === "file" ? readMarkerScript(file) : readUpstreamScript(file),
      timeoutMs: 15_000,
    });
    const text = res.stdout.trim();
    if (bg.proxy.switch === "file") return text ? `${text} (marker)` : "no include";
    const m = /color=(blue|green)/.exec(text);
    return m ? m[1]! : text ? "a file deploy-kit did not write" : "no file";
  } catch (e) {
    return `unknown (${oneLine(e)})`;
  }
}

/** Ask the proxy, from the host, until it answers 2xx/3xx or verify-timeout passes. */
async function verifyThroughProxy(host: ColorHost, ctx: ReleaseContext, bg: BlueGreen): Promise<void> {
  const url = bg.proxy["verify-url"];
  const deadline = Date.now() + bg.proxy["verify-timeout"];
  let last = "";
  for (;;) {
    const res = await host.remote.run({
      what: `request ${url} through the proxy`,
      script: remoteHttpScript({ url, method: "GET", timeoutMs: 5_000, headersOnStdin: false }),
    });
    const r = parseRemoteHttp(res.stdout);
    if (r.tool === "none") {
      throw new DeployError(`${host.remote.alias}: cannot check the proxy: ${r.error}.`, {
        host: host.remote.alias,
        hint: "Install curl (or wget) on the host: blue-green verifies the switch through the proxy from there.",
      });
    }
    if (r.status >= 200 && r.status < 400) {
      ctx.log.info(`${host.remote.alias}: ${url} answers ${r.status} through the proxy`);
      return;
    }
    last = r.status ? `status ${r.status}` : r.error.split("\n").pop() || `exit ${r.exitCode}`;
    if (Date.now() + 500 > deadline) break;
    await sleep(500);
  }
  throw new DeployError(
    `${host.remote.alias}: ${url} did not answer through the proxy within ${bg.proxy["verify-timeout"] / 1000} s: ${last}.`,
    {
      host: host.remote.alias,
      hint: "Check that the proxy's upstream include is the file blue-green.proxy.upstream-file names and that verify-url is the proxy's address as seen from the host.",
    },
  );
}

/** Does the color already run `imageId`, healthy (kept warm)? Then starting it again is skipped. */
async function isWarm(host: ColorHost, project: string, services: readonly string[], imageId: string) {
  const res = await host.remote.run({
    what: "check the idle color's containers",
    script: serviceContainersScript(project, services),
  });
  return assessHealth(parseContainers(res.stdout), services, imageId, 0).state === "healthy";
}

async function stopColor(
  host: ColorHost,
  ctx: ReleaseContext,
  color: Color,
  project = colorProject(ctx.config.app, color),
): Promise<void> {
  const label =
    project === ctx.config.app ? `project ${project} (a recreate deploy's)` : `the ${color} color`;
  const res = await host.remote.run({
    what: `stop ${label}`,
    // Shared services (blue-green.shared-services) may run in project <app>: never stop them.
    script: stopColorScript(project, blueGreenOf(ctx.env)["shared-services"]),
    timeoutMs: 5 * 60_000,
    allowFailure: true,
  });
  if (res.exitCode !== 0)
    ctx.log.warn(`${host.remote.alias}: could not stop ${label}: ${res.stderr.trim().split("\n").pop()}`);
  else ctx.log.info(`${host.remote.alias}: ${label}: ${res.stdout.trim()} container(s)`);
}

const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 300);

/**
 * Put a release live on one host as the idle color. The release's compose file and image
 * override are already in its directory (release.ts wrote or copied them); this adds the color's
 * port override, starts the color, gates it, switches and verifies the proxy, records the ledger
 * line, then drains and stops the old color. Returns the color now live.
 */
export async function releaseOnIdleColor(
  host: ColorHost,
  ctx: ReleaseContext,
  rel: ColorRelease,
): Promise<Color> {
  const bg = blueGreenOf(ctx.env);
  const { remote } = host;
  const alias = remote.alias;
  host.touched = false;
  checkColorCompose(ctx.compose, ctx.env);
  const live = await liveColor(host, ctx.config.app, bg);
  const color = live ? otherColor(live.color) : "blue";
  const project = colorCompose(ctx, host.bin, color, rel.base.id);
  const services = ctx.env.compose.service;
  const fail = async (e: unknown, what: string): Promise<never> => {
    await rel
      .record({ ...rel.base, color, status: "failed", reason: oneLine(e) })
      .catch((le) => ctx.log.warn(`${alias}: could not record the failed release: ${(le as Error).message}`));
    const serving = live ? `${live.color} (release ${live.release})` : "what it served before";
    throw new DeployError(`${(e as Error).message}\n${alias}: ${what}; the proxy serves ${serving}.`, {
      host: alias,
      hint: (e as DeployError).hint,
      cause: e,
    });
  };

  ctx.log.info(
    `${alias}: starting ${rel.base.id} as ${color} (port ${bg.ports[color]})${live ? `; ${live.color} stays live until the switch` : ""}`,
  );
  try {
    await remote.upload(
      `${statePaths(ctx.env.path).release(rel.base.id)}/color.yml`,
      colorOverride({
        service: proxiedService(ctx.env, bg),
        address: bg["bind-address"],
        port: bg.ports[color],
        containerPort: bg["container-port"],
        version: ctx.compose.version,
      }),
      0o644,
    );
    if (await isWarm(host, project.project, services, rel.imageId)) {
      ctx.log.info(`${alias}: ${color} already runs this image, healthy (kept warm): switching only`);
    } else {
      await remote.run({
        what: `docker compose up (${color})`,
        // Shared services run outside the colours: start only the colour's own, without deps.
        script: composeUpScript(project, colorServices(ctx.compose, bg)),
        timeoutMs: COMPOSE_UP_TIMEOUT,
        onLine: (l) => ctx.log.debug(`[${alias}] ${l}`),
        hint: "Compose could not start the new color; its error is above. The compose file and the operator's .env on the host must work together.",
      });
      await waitHealthy(remote, {
        project: project.project,
        services,
        imageId: rel.imageId,
        timeoutMs: ctx.env.health.timeout,
        intervalMs: ctx.env.health.interval,
        log: ctx.log,
      });
    }
  } catch (e) {
    // Never healthy: the proxy was not touched. Stop the failed color so it does not crash-loop.
    await stopColor(host, ctx, color);
    return fail(e, `${color} never became healthy and the proxy was not touched`);
  }

  try {
    host.touched = true;
    await switchProxy(host, ctx, bg, { color, release: rel.base.id });
  } catch (e) {
    host.touched = false;
    if (uncertainSwitch(e)) {
      // nginx may serve either colour: stopping one could stop what serves. Both keep running.
      const file = await readProxyFile(host, bg);
      return fail(
        e,
        `the proxy switch to ${color} did not finish (the upstream file now says: ${file}), so nginx may serve either colour: ${color} and ${live?.color ?? "the previous containers"} are both left running. Run \`${bg.proxy["reload-command"]}\` on the host once it answers, then deploy again (or roll back)`,
      );
    }
    // The script put the previous upstream file back; the proxy still serves the old color.
    await stopColor(host, ctx, color);
    return fail(e, "the proxy could not be switched");
  }
  try {
    await verifyThroughProxy(host, ctx, bg);
  } catch (e) {
    if (live) {
      await switchProxy(host, ctx, bg, live).then(
        () => {
          host.touched = false;
        },
        (se) => ctx.log.error(`${alias}: switching the proxy back to ${live.color} failed: ${oneLine(se)}`),
      );
    }
    return fail(
      e,
      host.touched ? "the switch could not be verified" : "switched back after the check failed",
    );
  }
  ctx.log.info(`${alias}: the proxy serves ${color} (${rel.base.id})`);

  // The live files at <path> follow the live release, for people and tools that run compose there.
  await remote.run({
    what: "make the release files the live ones",
    script: activateReleaseScript(ctx.env.path, rel.base.id, ctx.compose.name),
  });
  await rel.record({ ...rel.base, color, status: "succeeded" });

  if (!live) {
    // The first blue-green release: containers a recreate deploy left (project <app>) stop too.
    if (bg.drain > 0) await sleep(bg.drain);
    await stopColor(host, ctx, color, ctx.config.app);
  } else {
    if (bg["keep-warm"]) {
      ctx.log.info(`${alias}: ${live.color} stays running (keep-warm) for an instant rollback`);
    } else {
      // Requests already sent to the old colour finish: give them the drain period.
      if (bg.drain > 0) await sleep(bg.drain);
      await stopColor(host, ctx, live.color);
    }
  }
  return color;
}
