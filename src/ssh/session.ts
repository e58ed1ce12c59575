import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { posix } from "node:path";
import type { Duplex } from "node:stream";
import ssh2 from "ssh2";
import { uploadScript } from "../commands/files.js";
import { script, sh } from "../commands/shell.js";
import { CommandError, ConfigError, ConnectionLostError, DeployError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { redact } from "../core/secrets.js";
import {
  fingerprint,
  hostKeyName,
  type KnownHostKey,
  keyscanCommand,
  type PinnedKeys,
  parseKnownHosts,
  pinnedKeys,
  preferredHostKeyAlgorithms,
  verifyHostKey,
} from "./known-hosts.js";
import type { Remote, RemoteCommand, RemoteResult } from "./types.js";

const { Client, utils } = ssh2;
type Ssh2Client = InstanceType<typeof Client>;

/** Where a host is reached, with the alias people see. */
export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
  alias: string;
}

export interface SshCredentials {
  /** OpenSSH or PEM private key text (already registered as a secret). */
  privateKey: string;
  /** known_hosts text pinning every host and the jump host. */
  knownHosts: string;
}

export interface ConnectOptions {
  connectTimeoutMs: number;
  keepaliveMs: number;
  log: Log;
  /** An open connection to a jump host to tunnel through. */
  via?: SshConnection;
}

/** The private key, parsed once: its type and public fingerprint make auth errors readable. */
export interface ClientKey {
  text: string;
  type: string;
  fingerprint: string;
}

export function parsePrivateKey(text: string): ClientKey {
  const trimmed = text.trim();
  if (!trimmed) {
    throw new ConfigError("The ssh-key input is empty.", {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a workflow expression, not a template
      hint: "Pass the deploy key's private half from a secret: `ssh-key: ${{ secrets.DEPLOY_SSH_KEY }}`.",
    });
  }
  let parsed = utils.parseKey(`${trimmed}\n`);
  if (Array.isArray(parsed)) parsed = parsed[0]!;
  if (parsed instanceof Error) {
    const encrypted = /encrypted|passphrase/i.test(parsed.message);
    throw new ConfigError(
      encrypted
        ? "The ssh-key is protected by a passphrase; a CI deploy key cannot be."
        : `The ssh-key input is not a private key ssh2 can read (${parsed.message}).`,
      {
        hint: encrypted
          ? "Create a dedicated deploy key without a passphrase (`ssh-keygen -t ed25519 -N '' -f deploy_key`) and store it as a secret."
          : "Store the whole private key file, from -----BEGIN to -----END, as the secret.",
      },
    );
  }
  if (!parsed.isPrivateKey()) {
    throw new ConfigError("The ssh-key input is a public key; it must be the private key.", {
      hint: "Store the private key (deploy_key, not deploy_key.pub) as the secret.",
    });
  }
  return { text: `${trimmed}\n`, type: parsed.type, fingerprint: fingerprint(parsed.getPublicSSH()) };
}

/** Known-hosts checks done before any connection: a host without a pinned key is never contacted. */
export function pinnedKeysFor(knownHosts: string, endpoints: SshEndpoint[]): Map<SshEndpoint, PinnedKeys> {
  const entries = parseKnownHosts(knownHosts);
  const out = new Map<SshEndpoint, PinnedKeys>();
  const missing: SshEndpoint[] = [];
  for (const e of endpoints) {
    const pinned = pinnedKeys(entries, e.host, e.port);
    if (pinned.keys.length === 0) missing.push(e);
    out.set(e, pinned);
  }
  if (missing.length) {
    throw new ConfigError(
      `known-hosts has no host key for ${missing.map((e) => `${e.alias} (${hostKeyName(e.host, e.port)})`).join(", ")}.`,
      {
        problems: missing.map((e) => ({
          path: `known-hosts ${e.alias}`,
          message: `run \`${keyscanCommand(e.host, e.port)}\`, check the fingerprints against the server's (\`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on it), and add the lines to the known-hosts secret`,
        })),
        hint: "Host keys are pinned, never trusted on first use: put the known_hosts lines of every host (and the jump host) in a secret and pass it as `known-hosts`.",
      },
    );
  }
  return out;
}

/**
 * Current algorithms only, documented in README's security model: no SHA-1 (no `ssh-rsa`
 * signatures, no sha1 key exchange or MAC), no CBC ciphers. OpenSSH 7.4+ offers all of these.
 * chacha20-poly1305 is left out: with ssh2 1.17 a connection through a jump host using it hangs.
 */
export const SSH_ALGORITHMS = {
  kex: [
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
  ],
  serverHostKey: [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
  ],
  cipher: ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"],
  hmac: ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"],
} as const satisfies Record<string, readonly string[]>;

/** The pinned algorithms, host key types we hold a pinned key for first (so the server presents one). */
export function connectAlgorithms(pinned: PinnedKeys): ssh2.Algorithms {
  const allowed: readonly string[] = SSH_ALGORITHMS.serverHostKey;
  const preferred = preferredHostKeyAlgorithms(pinned).filter((a) => allowed.includes(a));
  return {
    kex: [...SSH_ALGORITHMS.kex],
    cipher: [...SSH_ALGORITHMS.cipher],
    hmac: [...SSH_ALGORITHMS.hmac],
    serverHostKey: [
      ...preferred,
      ...allowed.filter((a) => !preferred.includes(a)),
    ] as ssh2.ServerHostKeyAlgorithm[],
  };
}

/**
 * The command line sshd hands to the user's login shell (bash, dash, zsh, fish, csh...). It is
 * one single-quoted word of characters that every one of those shells leaves alone (no quote,
 * backslash, `!`, `%`, `$` or newline: the script's own bytes travel as printf octal escapes), and
 * /bin/sh rebuilds and runs the script: no login shell can change what runs.
 */
export function loginShellCommand(script: string): string {
  let encoded = "";
  for (const byte of Buffer.from(script, "utf8")) {
    const c = String.fromCharCode(byte);
    encoded +=
      byte >= 0x20 && byte < 0x7f && !`'"\\$\`!%`.includes(c) ? c : `\\${byte.toString(8).padStart(3, "0")}`;
  }
  return `exec /bin/sh -c 'eval "$(printf "${encoded}")"'`;
}

const MAX_CHANNELS = 4;
const STDOUT_LIMIT = 32 * 1024 * 1024;
const STDERR_TAIL = 4000;

/** One SSH connection to one host; every command and upload of the action is a channel on it. */
export class SshConnection implements Remote {
  readonly alias: string;
  private closed = false;
  private lostReason?: string;
  private active = 0;
  private queue: (() => void)[] = [];

  constructor(
    readonly endpoint: SshEndpoint,
    private readonly client: Ssh2Client,
    private readonly log: Log,
  ) {
    this.alias = endpoint.alias;
    client.on("error", (e) => {
      this.lostReason = e.message;
    });
    client.on("close", () => {
      this.closed = true;
    });
  }

  /** sshd limits sessions per connection (MaxSessions, 10 by default): stay well below. */
  private async slot(): Promise<() => void> {
    if (this.active >= MAX_CHANNELS) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    return () => {
      this.active--;
      this.queue.shift()?.();
    };
  }

  async run(cmd: RemoteCommand): Promise<RemoteResult> {
    if (this.closed) throw this.lost(cmd.what, "before");
    const release = await this.slot();
    try {
      return await this.exec(cmd);
    } finally {
      release();
    }
  }

  private why(): string {
    return this.lostReason ? ` (${this.lostReason})` : "";
  }

  /** The connection is gone: say so, with the host and the step, never as a command's failure. */
  private lost(
    what: string,
    when: "before" | "at the start of" | "during",
    detail?: string,
  ): ConnectionLostError {
    const why = [detail, this.lostReason].filter(Boolean).join(", ");
    return new ConnectionLostError(
      `The SSH connection to ${this.alias} was lost ${when} ${what}${why ? ` (${why})` : ""}; that step did not finish.`,
      { host: this.alias, during: what },
    );
  }

  private exec(cmd: RemoteCommand): Promise<RemoteResult> {
    this.log.debug(`[${this.alias}] ${cmd.what}`);
    const command = loginShellCommand(cmd.script);
    return new Promise<RemoteResult>((resolve, reject) => {
      this.client.exec(command, (err, stream) => {
        if (err) {
          // ssh2 says "No response from server" / "Not connected" when the peer went away.
          const gone =
            this.closed || this.lostReason || /no response|not connected|closed/i.test(err.message);
          reject(
            gone
              ? this.lost(cmd.what, "at the start of", err.message)
              : new DeployError(`Could not start ${cmd.what} on ${this.alias}: ${err.message}${this.why()}`, {
                  host: this.alias,
                }),
          );
          return;
        }
        let stdout = "";
        let stderr = "";
        let exitCode: number | undefined;
        let signal: string | undefined;
        let timedOut = false;
        const lines = lineSplitter(cmd.onLine);
        stream.on("data", (d: Buffer) => {
          if (stdout.length < STDOUT_LIMIT) stdout += d.toString();
          lines(d);
        });
        stream.stderr.on("data", (d: Buffer) => {
          stderr = (stderr + d.toString()).slice(-STDERR_TAIL * 4);
          lines(d);
        });
        stream.on("exit", (code: number | null, sig?: string) => {
          if (typeof code === "number") exitCode = code;
          else signal = sig ?? "unknown";
        });
        const timer = cmd.timeoutMs
          ? setTimeout(() => {
              timedOut = true;
              // OpenSSH >= 7.9 delivers the signal; closing the channel covers older servers.
              try {
                stream.signal("KILL");
              } catch {}
              stream.close();
            }, cmd.timeoutMs)
          : undefined;
        stream.on("close", () => {
          if (timer) clearTimeout(timer);
          lines.flush();
          const tail = redact(tailOf(stderr.trim() || stdout.trim()));
          if (timedOut) {
            reject(
              new CommandError({
                command: redact(cmd.script),
                what: `${cmd.what} (timed out after ${cmd.timeoutMs! / 1000} s)`,
                exitCode: null,
                stderrTail: tail,
                host: this.alias,
                hint: cmd.hint,
              }),
            );
            return;
          }
          if (exitCode === undefined && signal === undefined) {
            reject(this.lost(cmd.what, "during"));
            return;
          }
          // stdout is parsed by the caller; stderr is only ever shown, so it leaves redacted.
          const result = { exitCode: exitCode ?? -1, stdout, stderr: redact(stderr) };
          if (exitCode === 0 || cmd.allowFailure) {
            resolve(result);
            return;
          }
          reject(
            new CommandError({
              command: redact(cmd.script),
              what: cmd.what,
              exitCode: exitCode ?? null,
              stderrTail: tail,
              host: this.alias,
              hint: cmd.hint,
            }),
          );
        });
        if (cmd.stdin !== undefined) stream.end(cmd.stdin);
        else stream.end();
      });
    });
  }

  /**
   * Write a file atomically: into a temporary name beside it, checked against the size and
   * sha256 sent, then renamed over the old one (uploadScript).
   */
  async upload(remotePath: string, content: string | Buffer, mode = 0o644): Promise<void> {
    const bytes = typeof content === "string" ? Buffer.from(content) : content;
    await this.run({
      what: `upload ${posix.basename(remotePath)}`,
      script: uploadScript({
        path: remotePath,
        tmp: `${remotePath}.dk-${randomBytes(4).toString("hex")}`,
        mode,
        bytes: bytes.length,
        sha256: createHash("sha256").update(bytes).digest("hex"),
      }),
      stdin: bytes,
      hint: "The file that arrived on the host is not the one sent (a connection cut or a full disk): the previous file is unchanged. Check the host's free space and the network, then run again.",
    });
  }

  /**
   * Copy a file from the host into `localPath`, byte for byte (stdout as a stream, never as text),
   * returning what arrived: its size and sha256, for the caller to compare with the host's.
   */
  async download(remotePath: string, localPath: string): Promise<{ bytes: number; sha256: string }> {
    if (this.closed) throw this.lost(`download ${posix.basename(remotePath)}`, "before");
    const what = `download ${posix.basename(remotePath)}`;
    const release = await this.slot();
    try {
      return await new Promise((resolve, reject) => {
        this.client.exec(loginShellCommand(script(sh`cat ${remotePath}`)), (err, stream) => {
          if (err) return reject(this.lost(what, "at the start of", err.message));
          const hash = createHash("sha256");
          const out = createWriteStream(localPath, { mode: 0o600 });
          let bytes = 0;
          let stderr = "";
          let exitCode: number | undefined;
          stream.on("data", (d: Buffer) => {
            bytes += d.length;
            hash.update(d);
            // A dump can be larger than memory: let the disk set the pace.
            if (!out.write(d)) {
              stream.pause();
              out.once("drain", () => stream.resume());
            }
          });
          stream.stderr.on("data", (d: Buffer) => {
            stderr = (stderr + d.toString()).slice(-STDERR_TAIL);
          });
          stream.on("exit", (code: number | null) => {
            if (typeof code === "number") exitCode = code;
          });
          stream.on("close", () => {
            out.end(() => {
              if (exitCode === 0) resolve({ bytes, sha256: hash.digest("hex") });
              else if (exitCode === undefined) reject(this.lost(what, "during"));
              else
                reject(
                  new CommandError({
                    command: `cat ${remotePath}`,
                    what,
                    exitCode,
                    stderrTail: redact(stderr.trim()),
                    host: this.alias,
                  }),
                );
            });
          });
          stream.end();
        });
      });
    } finally {
      release();
    }
  }

  /** A tunnel to host:port from this host (used when this connection is the jump host). */
  forward(host: string, port: number): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      this.client.forwardOut("127.0.0.1", 0, host, port, (err, stream) => {
        if (err) reject(err);
        else resolve(stream);
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.client.destroy();
        resolve();
      }, 3000);
      this.client.once("close", () => {
        clearTimeout(t);
        resolve();
      });
      this.client.end();
    });
    this.closed = true;
  }
}

function tailOf(s: string): string {
  return s.length > STDERR_TAIL ? `…${s.slice(-STDERR_TAIL)}` : s;
}

function lineSplitter(onLine?: (line: string) => void) {
  let pending = "";
  const push = (d: Buffer) => {
    if (!onLine) return;
    pending += d.toString();
    const parts = pending.split("\n");
    pending = parts.pop() ?? "";
    for (const l of parts) onLine(redact(l));
  };
  push.flush = () => {
    if (onLine && pending) onLine(redact(pending));
    pending = "";
  };
  return push;
}

/**
 * Open one connection: host key pinned (checked before authenticating), then the deploy key.
 * Errors say which host, what was presented or offered, and what to do.
 */
export async function connect(
  endpoint: SshEndpoint,
  key: ClientKey,
  pinned: PinnedKeys,
  opts: ConnectOptions,
): Promise<SshConnection> {
  const where = `${endpoint.alias} (${endpoint.user}@${endpoint.host}:${endpoint.port}${opts.via ? ` via ${opts.via.alias}` : ""})`;
  let sock: Duplex | undefined;
  if (opts.via) {
    try {
      sock = await opts.via.forward(endpoint.host, endpoint.port);
    } catch (e) {
      throw new DeployError(
        `The jump host ${opts.via.alias} could not open a tunnel to ${endpoint.host}:${endpoint.port}: ${(e as Error).message}.`,
        {
          host: endpoint.alias,
          hint: "Check that the jump host reaches the host (and allows TCP forwarding: AllowTcpForwarding yes).",
        },
      );
    }
  }
  const client = new Client();
  let hostKeyProblem: { reason: string; presented: { type: string; fingerprint: string } } | undefined;
  let serverMethods: string[] | undefined;
  let offered = false;
  const started = Date.now();
  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error & { level?: string; code?: string }) => {
      client.removeAllListeners("ready");
      reject(describeConnectError(e));
    };
    const describeConnectError = (e: Error & { level?: string; code?: string }): Error => {
      if (hostKeyProblem) {
        const expected = pinned.keys.map(
          (k: KnownHostKey) => `${k.type} ${fingerprint(k.blob)} (known-hosts line ${k.line})`,
        );
        return new DeployError(
          `Host key ${hostKeyProblem.reason === "revoked" ? "is REVOKED" : "does NOT match known-hosts"} for ${where}: refused before authenticating.\n  presented: ${hostKeyProblem.presented.type} ${hostKeyProblem.presented.fingerprint}\n  expected:  ${expected.join("\n             ")}`,
          {
            host: endpoint.alias,
            hint: `If the server was rebuilt on purpose, verify its new key on the server (\`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\`), then replace the known-hosts lines with the output of \`${keyscanCommand(endpoint.host, endpoint.port)}\`. Otherwise treat this as a possible man-in-the-middle.`,
          },
        );
      }
      if (e.level === "client-authentication") {
        const accepts = serverMethods?.length ? serverMethods.join(", ") : "unknown";
        const pk = serverMethods?.includes("publickey");
        return new DeployError(
          `SSH authentication failed on ${where}: offered a ${key.type} key (${key.fingerprint}) for user ${endpoint.user}; the server accepts: ${accepts}.`,
          {
            host: endpoint.alias,
            hint:
              pk || !serverMethods
                ? `Add the deploy key's public half (fingerprint ${key.fingerprint}) to ~${endpoint.user}/.ssh/authorized_keys on the host, check the user name, and check that sshd accepts ${key.type} keys (PubkeyAcceptedAlgorithms).`
                : "The server does not accept public keys for this user: enable PubkeyAuthentication in sshd_config.",
          },
        );
      }
      if (e.level === "client-timeout") {
        return new DeployError(
          `No SSH handshake with ${where} within the connect timeout (${Math.round(opts.connectTimeoutMs / 1000)} s).`,
          {
            host: endpoint.alias,
            hint: "Check the address, port and firewall, or raise ssh.connect-timeout in deploy-kit.yml.",
          },
        );
      }
      const code = e.code ? ` (${e.code})` : "";
      return new DeployError(`Cannot connect to ${where}: ${e.message}${code}.`, {
        host: endpoint.alias,
        hint:
          e.code === "ECONNREFUSED"
            ? "Nothing listens on that port: check the host's port in deploy-kit.yml and that sshd runs."
            : "Check the address, port, firewall and that the runner can reach the host (or set ssh.jump).",
      });
    };
    client.once("ready", () => {
      client.removeListener("error", fail);
      resolve();
    });
    client.once("error", fail);
    client.connect({
      host: endpoint.host,
      port: endpoint.port,
      username: endpoint.user,
      sock,
      readyTimeout: opts.connectTimeoutMs,
      keepaliveInterval: opts.keepaliveMs,
      keepaliveCountMax: 3,
      algorithms: connectAlgorithms(pinned),
      hostVerifier: (presented: Buffer) => {
        // The local port ties this connection to the server's log ("from <ip> port <n>"), which is
        // how an operator (or a test) matches sshd's entries to this run. ssh2 keeps the socket private.
        const port = (client as unknown as { _sock?: { localPort?: number } })._sock?.localPort;
        if (port) opts.log.debug(`[${endpoint.alias}] ssh connection from local port ${port}`);
        const verdict = verifyHostKey(pinned, presented);
        if (!verdict.ok) hostKeyProblem = verdict;
        return verdict.ok;
      },
      authHandler: (methodsLeft, _partial, next) => {
        if (methodsLeft) serverMethods = methodsLeft;
        // ssh2 takes `false` as "no more methods" (its typings omit it).
        if (offered) return next(false as unknown as "none");
        offered = true;
        next({ type: "publickey", username: endpoint.user, key: key.text });
      },
    });
  });
  opts.log.debug(`[${endpoint.alias}] connected in ${Date.now() - started} ms`);
  return new SshConnection(endpoint, client, opts.log);
}
