import type { Environment, Host } from "../config/schema.js";
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

export function endpointOf(h: Pick<Host, "host" | "port" | "user"> & { alias?: string }): SshEndpoint {
  return { host: h.host, port: h.port, user: h.user, alias: h.alias ?? h.host };
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
  const hosts = env.hosts.filter((h) => !opts.only || opts.only.includes(h.alias)).map(endpointOf);
  if (hosts.length === 0) throw new ConfigError("No host to connect to.");
  const jump = env.ssh.jump ? { ...endpointOf(env.ssh.jump), alias: `jump ${env.ssh.jump.host}` } : undefined;
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
