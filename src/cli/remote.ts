import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { loadConfig, selectEnvironment } from "../config/load.js";
import type { Config, Environment } from "../config/schema.js";
import { ConfigError } from "../core/errors.js";
import { registerSecret } from "../core/secrets.js";
import { openHosts, type SshSecrets } from "../deploy/hosts.js";
import type { RegistryCredentials } from "../deploy/release.js";
import { lockOwner } from "../release/lock.js";
import type { SshConnection } from "../ssh/session.js";
import type { CliContext, FlagSpec } from "./types.js";

/** Flags of every command that connects to the hosts. */
export const SSH_FLAGS: Record<string, FlagSpec> = {
  "ssh-key": {
    type: "string",
    short: "i",
    value: "FILE",
    description: "private key file (default $DEPLOY_KIT_SSH_KEY, else ~/.ssh/id_ed25519)",
  },
  "known-hosts": {
    type: "string",
    value: "FILE",
    description:
      "known_hosts with the hosts' pinned keys (default $DEPLOY_KIT_KNOWN_HOSTS, else ~/.ssh/known_hosts)",
  },
};

/** Flags of every command that pulls on the hosts. The password only ever comes from the environment. */
export const REGISTRY_FLAGS: Record<string, FlagSpec> = {
  "registry-username": {
    type: "string",
    value: "USER",
    description: "log in on each host for the pull (password from $DEPLOY_KIT_REGISTRY_PASSWORD)",
  },
};

const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * The deploy key and the pinned host keys: --ssh-key FILE, else $DEPLOY_KIT_SSH_KEY (a file, or
 * the key itself as CI secrets hold it), else ~/.ssh/id_ed25519; --known-hosts FILE, else
 * $DEPLOY_KIT_KNOWN_HOSTS, else ~/.ssh/known_hosts. Host keys are never trusted on first use.
 */
export function sshSecrets(ctx: CliContext): SshSecrets {
  const env = ctx.io.env;
  const home = env.HOME || homedir();
  let sshKey: string;
  const keyFlag = ctx.string("ssh-key");
  const keyEnv = env.DEPLOY_KIT_SSH_KEY || undefined;
  if (!keyFlag && keyEnv && PRIVATE_KEY.test(keyEnv)) {
    sshKey = keyEnv;
  } else {
    const file = keyFlag ?? keyEnv ?? join(home, ".ssh/id_ed25519");
    sshKey = readFile(file, "SSH key", {
      hint: keyFlag
        ? "Check the path given to --ssh-key."
        : "Pass the deploy key with --ssh-key FILE (or DEPLOY_KIT_SSH_KEY). An ssh agent is not used: deploy-kit signs with the key file, like the actions do.",
    });
  }
  registerSecret(sshKey);
  const hostsFile =
    ctx.string("known-hosts") ?? (env.DEPLOY_KIT_KNOWN_HOSTS || join(home, ".ssh/known_hosts"));
  const knownHosts = readFile(hostsFile, "known_hosts", {
    hint: "Pin each host's key first: `ssh-keyscan -t ed25519 <host> >> ~/.ssh/known_hosts`, then compare the fingerprint with the server's (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it). Or pass --known-hosts FILE.",
  });
  return { sshKey, knownHosts };
}

function readFile(file: string, what: string, opts: { hint: string }): string {
  if (!existsSync(file)) throw new ConfigError(`No ${what} file at ${file}.`, opts);
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`Cannot read ${what} file ${file}: ${(e as Error).message}`, opts);
  }
}

export function registryCredentials(ctx: CliContext): RegistryCredentials | undefined {
  const username = ctx.string("registry-username");
  const password = ctx.io.env.DEPLOY_KIT_REGISTRY_PASSWORD;
  registerSecret(password);
  if (!username && !password) return undefined;
  if (!username || !password) {
    throw new ConfigError(
      username
        ? "--registry-username is set but DEPLOY_KIT_REGISTRY_PASSWORD is empty."
        : "DEPLOY_KIT_REGISTRY_PASSWORD is set but --registry-username is not.",
      { hint: "Give both, or neither to use the server's own docker login." },
    );
  }
  return { username, password };
}

/** Who deploys, as the ledger and the lock record it: user@machine (or the run URL inside Actions). */
export function actor(): string {
  return lockOwner();
}

export interface ConnectedEnvironment {
  config: Config;
  env: Environment;
  remotes: SshConnection[];
}

/** Connect to the environment's hosts for reading (no lock): ledger, lock, checks. */
export async function withHosts<T>(
  ctx: CliContext,
  fn: (c: ConnectedEnvironment) => Promise<T>,
  opts: { only?: string[]; environment?: string } = {},
): Promise<T> {
  const name = opts.environment ?? ctx.environment();
  const { config } = await loadConfig(ctx.configFile(), { environment: name });
  const env = selectEnvironment(config, name);
  const secrets = sshSecrets(ctx);
  const hosts = await ctx.log.group("Connect", () => openHosts(env, secrets, ctx.log, opts));
  try {
    return await fn({ config, env, remotes: hosts.remotes });
  } finally {
    await hosts.close();
  }
}
