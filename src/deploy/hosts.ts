import type { z } from "zod";
import {
  type Environment,
  type Host,
  hostValue,
  parseHostString,
  portValue,
  userValue,
} from "../config/schema.js";
import { ConfigError, DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { registerSecret } from "../core/secrets.js";
import {
  connect,
  parsePrivateKey,
  pinnedKeysFor,
  type SshConnection,
  type SshEndpoint,
} from "../ssh/session.js";

export interface SshSecrets {
  /** The private key text (the `ssh-key` input). */
  sshKey: string;
  /** known_hosts text (the `known-hosts` input). */
  knownHosts: string;
}

/** The open connections of one action run: one per host, reused by every phase. */
export interface OpenHosts {
  remotes: SshConnection[];
  close(): Promise<void>;
}

type HostSpec = Pick<Host, "host" | "port" | "user" | "host-env" | "user-env" | "port-env"> & {
  alias?: string;
};

/**
 * Where to connect. A host, user or port named by `host-env`/`user-env`/`port-env` is read from
 * the environment now, validated like a value written in the file, and masked: it may be a secret
 * (VPS_HOST), so from here on the host is shown by its alias only.
 */
export function resolveHost(h: HostSpec, where: string, env: NodeJS.ProcessEnv = process.env): SshEndpoint {
  const read = (key: "host-env" | "user-env" | "port-env"): string | undefined => {
    const name = h[key];
    if (!name) return undefined;
    const value = env[name]?.trim();
    if (!value) {
      throw new ConfigError(`${where}.${key}: the environment variable ${name} is empty or not set.`, {
        hint: `Pass it to this step, e.g. env: ${name}: \${{ secrets.${name} }} (or export it before running the CLI).`,
      });
    }
    registerSecret(value);
    return value;
  };
  const check = <T>(key: string, schema: z.ZodType<T>, value: unknown): T => {
    const r = schema.safeParse(value);
    if (!r.success) {
      // The value is masked in the message too: say what is wrong with it, not what it is.
      throw new ConfigError(
        `${where}.${key}: the value of ${h[key as "host-env"]} is ${r.error.issues[0]?.message ?? "not valid"}.`,
        { hint: `Fix the variable ${h[key as "host-env"]} (or the secret it comes from).` },
      );
    }
    return r.data;
  };
  let host = h.host;
  let user = h.user;
  let port = h.port;
  const fromEnv = read("host-env");
  if (fromEnv !== undefined) {
    // "user@host:port" in one variable is common too; its parts are checked like the others.
    const parsed = parseHostString(fromEnv);
    host = check("host-env", hostValue, parsed?.host ?? fromEnv);
    if (parsed?.user) user = check("host-env", userValue, parsed.user);
    if (parsed?.port) port = check("host-env", portValue, parsed.port);
  }
  const u = read("user-env");
  if (u !== undefined) user = check("user-env", userValue, u);
  const p = read("port-env");
  if (p !== undefined) port = check("port-env", portValue, /^\d+$/.test(p) ? Number(p) : p);
  if (!host) throw new ConfigError(`${where}: no host.`);
  return { host, port, user, alias: h.alias ?? host };
}

/**
 * Connect to the environment's hosts (all of them, or the aliases in `only`). Host keys are
 * checked against known-hosts before anything is contacted; the jump host, if any, is reached
 * once and every host tunnels through that one connection.
 */
export async function openHosts(
  env: Environment,
  secrets: SshSecrets,
  log: Log,
  opts: { only?: readonly string[] } = {},
): Promise<OpenHosts> {
  registerSecret(secrets.sshKey);
  const key = parsePrivateKey(secrets.sshKey);
  const hosts = env.hosts
    .map((h, i) => ({ h, where: `hosts[${i}]` }))
    .filter(({ h }) => !opts.only || opts.only.includes(h.alias))
    .map(({ h, where }) => resolveHost(h, where));
  if (hosts.length === 0) throw new ConfigError("No host to connect to.");
  const j = env.ssh.jump;
  const jump = j
    ? {
        ...resolveHost(j, "ssh.jump"),
        alias: `jump ${j.alias ?? (j["host-env"] ? `$${j["host-env"]}` : j.host)}`,
      }
    : undefined;
  const pinned = pinnedKeysFor(secrets.knownHosts, jump ? [jump, ...hosts] : hosts);
  const common = { connectTimeoutMs: env.ssh["connect-timeout"], keepaliveMs: env.ssh.keepalive, log };
  const via = jump ? await connect(jump, key, pinned.get(jump)!, common) : undefined;
  const settled = await Promise.allSettled(
    hosts.map((h) => connect(h, key, pinned.get(h)!, { ...common, via })),
  );
  const remotes = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const close = async () => {
    await Promise.allSettled(remotes.map((r) => r.close()));
    await via?.close();
  };
  const failures = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as Error] : []));
  if (failures.length) {
    await close();
    if (failures.length === 1) throw failures[0];
    for (const f of failures.slice(1)) log.error(f.message);
    const first = failures[0]!;
    throw new DeployError(`${failures.length} hosts could not be reached; the first: ${first.message}`, {
      host: (first as DeployError).host,
      hint: (first as DeployError).hint,
    });
  }
  log.info(`connected to ${remotes.map((r) => r.alias).join(", ")}${via ? ` via ${via.alias}` : ""}`);
  return { remotes, close };
}
