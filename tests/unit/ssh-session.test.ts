import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ssh2 from "ssh2";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CommandError, ConnectionLostError, DeployError, describeError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets, registerSecret } from "../../src/core/secrets.js";
import { copyBackupToRunner } from "../../src/migrate/backup.js";
import { fingerprint, parseKnownHosts, pinnedKeys } from "../../src/ssh/known-hosts.js";
import {
  connect,
  connectAlgorithms,
  loginShellCommand,
  parsePrivateKey,
  type SshConnection,
} from "../../src/ssh/session.js";
import { FakeRemote } from "../support/fake-remote.js";

const { Server, utils } = ssh2;

/**
 * A real SSH server in the test process (ssh2's Server): exec runs `sh -c` locally, direct-tcpip
 * tunnels connect for real. It counts handshakes and authentication attempts.
 */
function startServer(opts: {
  allowedKey: string;
  hostKey: string;
  acceptPublicKey?: boolean;
  algorithms?: ssh2.Algorithms;
  /** The user's login shell as sshd would run it: `shell -c <command>`. */
  loginShell?: "sh" | "fish-like" | "csh-like";
  /** Pass only this many bytes of each command's stdin, then end it: an upload cut short. */
  truncateStdin?: number;
}) {
  const allowed = utils.parseKey(opts.allowedKey) as ssh2.ParsedKey;
  const stats = { connections: 0, authAttempts: 0, ready: 0 };
  const clients = new Set<ssh2.Connection>();
  const server = new Server({ hostKeys: [opts.hostKey], algorithms: opts.algorithms }, (client) => {
    stats.connections++;
    clients.add(client);
    client.on("authentication", (ctx) => {
      stats.authAttempts++;
      if (ctx.method !== "publickey" || opts.acceptPublicKey === false)
        return ctx.reject(opts.acceptPublicKey === false ? ["password"] : ["publickey", "password"]);
      if (ctx.key.algo !== allowed.type || !ctx.key.data.equals(allowed.getPublicSSH()))
        return ctx.reject(["publickey"]);
      if (!ctx.signature) return ctx.accept();
      if (allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(["publickey"]);
      ctx.accept();
    });
    client.on("ready", () => {
      stats.ready++;
      client.on("session", (accept) => {
        const session = accept();
        session.on("exec", (acceptExec, _reject, info) => {
          const stream = acceptExec();
          const child = spawn("/bin/sh", ["-c", asLoginShell(opts.loginShell ?? "sh", info.command)]);
          if (opts.truncateStdin === undefined) stream.pipe(child.stdin);
          else {
            let left = opts.truncateStdin;
            stream.on("data", (d: Buffer) => {
              if (left > 0) child.stdin.write(d.subarray(0, left));
              left -= d.length;
            });
            stream.on("end", () => child.stdin.end());
          }
          child.stdout.pipe(stream, { end: false });
          child.stderr.pipe(stream.stderr, { end: false });
          session.on("signal", () => child.kill("SIGKILL"));
          stream.on("close", () => child.kill("SIGKILL"));
          child.on("close", (code) => {
            try {
              stream.exit(code ?? 255);
              stream.end();
            } catch {}
          });
        });
      });
      client.on("tcpip", (accept, _reject, info) => {
        const stream = accept();
        const sock = netConnect(info.destPort, info.destIP);
        stream.pipe(sock).pipe(stream);
        sock.on("error", () => stream.close());
      });
    });
    client.on("error", () => {});
  });
  return new Promise<{ port: number; stats: typeof stats; close: () => void; drop: () => void }>(
    (resolve) => {
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as { port: number }).port;
        // drop: the server side hangs up every connection, as a killed sshd does.
        const drop = () => {
          for (const c of clients) c.end();
        };
        resolve({ port, stats, close: () => server.close(), drop });
      });
    },
  );
}

/**
 * What a non-POSIX login shell does to a command line before anything runs, reduced to the two
 * rules that break POSIX quoting: fish reads `\\` inside single quotes as one backslash; csh
 * refuses a quoted newline and expands `!` history even inside single quotes.
 */
function asLoginShell(shell: "sh" | "fish-like" | "csh-like", command: string): string {
  if (shell === "fish-like") return command.replace(/\\\\/g, "\\");
  if (shell === "csh-like" && /[\n!]/.test(command)) return "echo 'Unmatched quote.' >&2; exit 1";
  return command;
}

const clientPair = utils.generateKeyPairSync("ed25519");
const otherPair = utils.generateKeyPairSync("ed25519");
const hostPair = utils.generateKeyPairSync("ed25519");
const impostorPair = utils.generateKeyPairSync("ed25519");
const key = parsePrivateKey(clientPair.private);
const log = new MemoryLog();

function pinnedFor(port: number, hostPublic = hostPair.public) {
  const [type, b64] = hostPublic.trim().split(" ");
  return pinnedKeys(parseKnownHosts(`[127.0.0.1]:${port} ${type} ${b64}`), "127.0.0.1", port);
}
const endpoint = (port: number, alias = "web-1") => ({ host: "127.0.0.1", port, user: "deploy", alias });
const opts = { connectTimeoutMs: 5000, keepaliveMs: 10_000, log };

describe("SshConnection against a real SSH server", () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  let conn: SshConnection;
  beforeAll(async () => {
    srv = await startServer({ allowedKey: clientPair.public, hostKey: hostPair.private });
    conn = await connect(endpoint(srv.port), key, pinnedFor(srv.port), opts);
  });
  afterAll(async () => {
    await conn.close();
    srv.close();
    forgetSecrets();
  });

  test("runs scripts, streams stdin, returns exit codes", async () => {
    const r = await conn.run({ what: "echo", script: "set -eu\necho hello; echo warn >&2" });
    expect(r).toEqual({ exitCode: 0, stdout: "hello\n", stderr: "warn\n" });
    const cat = await conn.run({ what: "cat", script: "cat | tr a-z A-Z", stdin: "from stdin" });
    expect(cat.stdout).toBe("FROM STDIN");
    const failing = await conn.run({ what: "false", script: "exit 3", allowFailure: true });
    expect(failing.exitCode).toBe(3);
  });

  test("a non-zero exit throws with the host alias, the step and the stderr tail, secrets redacted", async () => {
    registerSecret("s3cr3t-value-123");
    const err = await conn
      .run({
        what: "docker compose up",
        script: "set -eu\necho 'password s3cr3t-value-123 rejected' >&2\nfalse\necho never",
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.host).toBe("web-1");
    expect(err.exitCode).toBe(1);
    expect(err.message).toContain("docker compose up on web-1 exited 1");
    expect(err.message).toContain("password *** rejected");
    expect(err.message).not.toContain("s3cr3t");
  });

  test("a value with shell metacharacters reaches the script as data", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-ssh-"));
    const evil = `x'; touch ${dir}/canary; echo '`;
    const { quote } = await import("../../src/commands/shell.js");
    const r = await conn.run({ what: "echo", script: `printf %s ${quote(evil)}` });
    expect(r.stdout).toBe(evil);
    expect(readdirSync(dir)).toEqual([]);
  });

  test("a timeout kills the command and says so", async () => {
    const t = Date.now();
    const err = await conn.run({ what: "slow step", script: "sleep 20", timeoutMs: 300 }).catch((e) => e);
    expect(Date.now() - t).toBeLessThan(5000);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.message).toContain("slow step (timed out after 0.3 s) on web-1 was killed");
  });

  test("uploads atomically with the mode asked for", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-up-"));
    await conn.upload(`${dir}/sub/compose.yml`, "services: {}\n", 0o640);
    expect(readFileSync(`${dir}/sub/compose.yml`, "utf8")).toBe("services: {}\n");
    expect(statSync(`${dir}/sub/compose.yml`).mode & 0o777).toBe(0o640);
    expect(readdirSync(`${dir}/sub`)).toEqual(["compose.yml"]);
  });

  test("an upload whose bytes differ from those sent is refused on the host and the old file stays", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-up-"));
    const target = `${dir}/compose.yml`;
    const { uploadScript } = await import("../../src/commands/files.js");
    await conn.upload(target, "old: file\n");
    // Same length, other bytes: only the hash can tell.
    const sent = "services: {}\n";
    const r = await conn.run({
      what: "upload",
      script: uploadScript({
        path: target,
        tmp: `${target}.tmp`,
        mode: 0o644,
        bytes: sent.length,
        sha256: createHash("sha256").update(sent).digest("hex"),
      }),
      stdin: "services: []\n",
      allowFailure: true,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`upload to ${target}: its sha256 is`);
    expect(r.stderr).toContain("the file there was not replaced");
    expect(readFileSync(target, "utf8")).toBe("old: file\n");
    expect(readdirSync(dir)).toEqual(["compose.yml"]);
  });

  test("downloads byte for byte (binary), with the size and sha256 of what arrived", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-down-"));
    const data = Buffer.concat(
      Array.from({ length: 16_000 }, (_, i) => Buffer.from([...Array(256).keys()].map((b) => (b + i) % 256))),
    );
    writeFileSync(`${dir}/dump`, data);
    const got = await conn.download(`${dir}/dump`, `${dir}/copy`);
    expect(got).toEqual({ bytes: data.length, sha256: createHash("sha256").update(data).digest("hex") });
    expect(readFileSync(`${dir}/copy`).equals(data)).toBe(true);
    const missing = await conn.download(`${dir}/nope`, `${dir}/copy2`).catch((e) => e);
    expect(missing).toBeInstanceOf(CommandError);
    expect(missing.message).toContain("download nope on web-1 exited 1");
  });

  test("copyBackupToRunner: the copy on the runner has the host file's size and sha256", async () => {
    const host = mkdtempSync(join(tmpdir(), "dk-host-"));
    const runner = mkdtempSync(join(tmpdir(), "dk-runner-"));
    const dump = Buffer.from([0, 255, 10, 13, 0, 1, 2, 3, 0x1f, 0x8b]);
    writeFileSync(`${host}/20260101T000000Z_r1.dump`, dump);
    const copy = await copyBackupToRunner(conn, `${host}/20260101T000000Z_r1.dump`, `${runner}/backups`);
    expect(copy).toBe(`${runner}/backups/web-1_20260101T000000Z_r1.dump`);
    expect(readFileSync(copy).equals(dump)).toBe(true);
    expect(readdirSync(`${runner}/backups`)).toEqual(["web-1_20260101T000000Z_r1.dump"]);
  });

  test("many commands, one connection (channels are multiplexed and bounded)", async () => {
    const before = srv.stats.connections;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => conn.run({ what: `n${i}`, script: `echo ${i}` })),
    );
    expect(results.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 12 }, (_, i) => String(i)));
    expect(srv.stats.connections - before).toBe(0);
    expect(srv.stats.ready).toBe(1);
  });
});

describe("an upload cut short on the way", () => {
  test("fails naming the file and the bytes that arrived; the old file stays", async () => {
    const srv = await startServer({
      allowedKey: clientPair.public,
      hostKey: hostPair.private,
      truncateStdin: 10,
    });
    const conn = await connect(endpoint(srv.port), key, pinnedFor(srv.port), opts);
    const dir = mkdtempSync(join(tmpdir(), "dk-up-"));
    const target = `${dir}/compose.yml`;
    writeFileSync(target, "old: file\n");
    try {
      const err = await conn.upload(target, "services:\n  api: { image: app }\n").catch((e) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect(err.message).toContain("upload compose.yml on web-1 exited 1");
      expect(err.message).toContain(
        `upload to ${target}: only 10 of 32 bytes arrived; the file there was not replaced`,
      );
      expect(err.hint).toContain("the previous file is unchanged");
      expect(readFileSync(target, "utf8")).toBe("old: file\n");
      expect(readdirSync(dir)).toEqual(["compose.yml"]);
    } finally {
      await conn.close();
      srv.close();
    }
  });
});

describe("copyBackupToRunner when the copy is not the host's file", () => {
  test("fails naming both checksums and leaves no file that looks like a backup", async () => {
    const remote = new FakeRemote([[/checksum the backup/, { stdout: `10 ${"ab".repeat(32)}\n` }]]);
    remote.files.set("/srv/shop/.deploy-kit/backups/x.dump", Buffer.from("0123456789"));
    const runner = mkdtempSync(join(tmpdir(), "dk-runner-"));
    const err = await copyBackupToRunner(remote, "/srv/shop/.deploy-kit/backups/x.dump", runner).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(DeployError);
    expect(err.message).toContain(
      `The copy of backup /srv/shop/.deploy-kit/backups/x.dump from t5-host-1 is not the host's file: 10 bytes with sha256 ${createHash("sha256").update("0123456789").digest("hex")}, the host has 10 bytes with sha256 ${"ab".repeat(32)}.`,
    );
    expect(readdirSync(runner)).toEqual([]);
  });
});

describe("a connection lost mid-run", () => {
  test("is said as a lost connection naming the host and the step, and every later step says so too", async () => {
    const srv = await startServer({ allowedKey: clientPair.public, hostKey: hostPair.private });
    const conn = await connect(endpoint(srv.port, "db-2"), key, pinnedFor(srv.port), opts);
    try {
      const running = conn.run({ what: "pull the image", script: "sleep 5" }).catch((e) => e);
      await new Promise((r) => setTimeout(r, 300));
      srv.drop();
      const e = await running;
      expect(e).toBeInstanceOf(ConnectionLostError);
      expect(e.message).toMatch(
        /^The SSH connection to db-2 was lost during pull the image.*; that step did not finish\.$/,
      );
      expect(e).toMatchObject({ host: "db-2", during: "pull the image" });
      const later = await conn.run({ what: "write the ledger", script: "true" }).catch((x) => x);
      expect(later).toBeInstanceOf(ConnectionLostError);
      expect(later.message).toMatch(
        /^The SSH connection to db-2 was lost (before|at the start of) write the ledger/,
      );
      expect(describeError(later)).toContain("What to do: Check that the host is up and its sshd answers");
    } finally {
      await conn.close();
      srv.close();
    }
  });
});

describe("scripts run under /bin/sh whatever the login shell", () => {
  // Backslashes, quotes, `!`, `%`, `$`, newlines and non-ASCII: what real scripts contain.
  const script = [
    "set -eu",
    `x='a b'; y="$x \\\\ \\$HOME !bang 100% \`echo hi\`"`,
    `printf '%s|\\n' "$y" "été"`,
    "printf '%s\\n' 'a\\b' | sed 's#\\\\#/#'",
    "cat <<EOF",
    "here $x",
    "EOF",
    "exit 3",
  ].join("\n");
  const expected = "a b \\ $HOME !bang 100% hi|\nété|\na/b\nhere a b\n";

  test("the command line is one word every login shell leaves alone", () => {
    const line = loginShellCommand(script);
    expect(line).toMatch(/^exec \/bin\/sh -c '(?:[^'\\\n!]|\\[0-7]{3})*'$/);
  });

  test.each([["sh"], ["bash"], ["dash"]])("%s as the login shell runs the script as sh would", (shell) => {
    const r = spawnSync(shell, ["-c", loginShellCommand(script)], { encoding: "utf8" });
    expect(r.stdout).toBe(expected);
    expect(r.status).toBe(3);
  });

  test.each([["fish-like" as const], ["csh-like" as const]])(
    "over SSH with a %s login shell, the script is unchanged",
    async (loginShell) => {
      const srv = await startServer({ allowedKey: clientPair.public, hostKey: hostPair.private, loginShell });
      try {
        const conn = await connect(endpoint(srv.port), key, pinnedFor(srv.port), opts);
        const r = await conn.run({ what: "script", script, allowFailure: true });
        expect(r.stdout).toBe(expected);
        expect(r.exitCode).toBe(3);
        await conn.close();
      } finally {
        srv.close();
      }
    },
  );
});

describe("algorithms are pinned to current ones", () => {
  test("no SHA-1, no ssh-rsa signatures, no CBC; pinned key types first", () => {
    const rsa = utils.generateKeyPairSync("rsa", { bits: 2048 });
    const [type, b64] = rsa.public.trim().split(" ");
    const a = connectAlgorithms(pinnedKeys(parseKnownHosts(`h ${type} ${b64}`), "h", 22));
    const all = Object.values(a).flat() as string[];
    expect(all.filter((x) => /sha1|ssh-rsa|cbc|md5|ssh-dss/.test(x))).toEqual([]);
    expect((a.serverHostKey as string[]).slice(0, 2)).toEqual(["rsa-sha2-512", "rsa-sha2-256"]);
    expect(a.serverHostKey).toContain("ssh-ed25519");
  });

  test.each([
    ["an ssh-rsa (SHA-1) host key signature", { serverHostKey: ["ssh-rsa"] }],
    ["a SHA-1 key exchange", { kex: ["diffie-hellman-group14-sha1"] }],
    ["a CBC cipher", { cipher: ["aes128-cbc"] }],
    ["a SHA-1 MAC", { cipher: ["aes128-ctr"], hmac: ["hmac-sha1"] }],
  ] as [string, ssh2.Algorithms][])("a server that only offers %s is refused", async (_what, algorithms) => {
    const rsa = utils.generateKeyPairSync("rsa", { bits: 2048 });
    const srv = await startServer({ allowedKey: clientPair.public, hostKey: rsa.private, algorithms });
    try {
      const err = await connect(endpoint(srv.port), key, pinnedFor(srv.port, rsa.public), opts).catch(
        (e) => e,
      );
      if (!(err instanceof DeployError)) await err.close();
      expect(err).toBeInstanceOf(DeployError);
      expect(srv.stats.ready).toBe(0);
    } finally {
      srv.close();
    }
  });
});

describe("connection refusals", () => {
  test("a host key that does not match is refused before authenticating, showing both fingerprints", async () => {
    const srv = await startServer({ allowedKey: clientPair.public, hostKey: impostorPair.private });
    try {
      const err = await connect(endpoint(srv.port), key, pinnedFor(srv.port), opts).catch((e) => e);
      expect(err).toBeInstanceOf(DeployError);
      const presented = fingerprint(Buffer.from(impostorPair.public.split(" ")[1]!, "base64"));
      const expected = fingerprint(Buffer.from(hostPair.public.split(" ")[1]!, "base64"));
      expect(err.message).toContain("does NOT match known-hosts for web-1");
      expect(err.message).toContain(`presented: ssh-ed25519 ${presented}`);
      expect(err.message).toContain(`expected:  ssh-ed25519 ${expected}`);
      expect(err.hint).toContain(`ssh-keyscan -p ${srv.port}`);
      expect(srv.stats.authAttempts).toBe(0);
    } finally {
      srv.close();
    }
  });

  test("an unknown key: the message names the key type offered and what the server accepts", async () => {
    const srv = await startServer({ allowedKey: otherPair.public, hostKey: hostPair.private });
    try {
      const err = await connect(endpoint(srv.port), key, pinnedFor(srv.port), opts).catch((e) => e);
      expect(err).toBeInstanceOf(DeployError);
      expect(err.message).toContain(`offered a ssh-ed25519 key (${key.fingerprint}) for user deploy`);
      expect(err.message).toContain("the server accepts: publickey");
      expect(err.hint).toContain("authorized_keys");
    } finally {
      srv.close();
    }
  });

  test("a port where nothing listens fails with the host and what to check", async () => {
    const srv = await startServer({ allowedKey: clientPair.public, hostKey: hostPair.private });
    const port = srv.port;
    srv.close();
    await new Promise((r) => setTimeout(r, 50));
    const err = await connect(endpoint(port), key, pinnedFor(port), opts).catch((e) => e);
    expect(err).toBeInstanceOf(DeployError);
    expect(err.message).toContain(`Cannot connect to web-1 (deploy@127.0.0.1:${port})`);
    expect(err.message).toContain("ECONNREFUSED");
  });

  test("through a jump host: one connection to each", async () => {
    const jump = await startServer({ allowedKey: clientPair.public, hostKey: impostorPair.private });
    const target = await startServer({ allowedKey: clientPair.public, hostKey: hostPair.private });
    try {
      const via = await connect(
        endpoint(jump.port, "bastion"),
        key,
        pinnedFor(jump.port, impostorPair.public),
        opts,
      );
      const conn = await connect(endpoint(target.port), key, pinnedFor(target.port), { ...opts, via });
      const r = await conn.run({ what: "hello", script: "echo via-jump" });
      expect(r.stdout).toBe("via-jump\n");
      expect(jump.stats.ready).toBe(1);
      expect(target.stats.ready).toBe(1);
      await conn.close();
      await via.close();
    } finally {
      jump.close();
      target.close();
    }
  });
});
