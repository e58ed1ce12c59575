import { createHash, createHmac } from "node:crypto";

/** One key line of a known_hosts file. */
export interface KnownHostKey {
  /** ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa... as written in the file. */
  type: string;
  /** The raw public key blob (what the server presents during the handshake). */
  blob: Buffer;
  /** 1-based line in the known-hosts text, for messages. */
  line: number;
}

interface Entry extends KnownHostKey {
  marker?: "revoked" | "cert-authority";
  patterns: string[];
}

/** Parse known_hosts text; lines that are not key lines (comments, junk) are skipped. */
export function parseKnownHosts(text: string): Entry[] {
  const out: Entry[] = [];
  text.split(/\r?\n/).forEach((raw, idx) => {
    const fields = raw.trim().split(/\s+/);
    if (!fields[0] || fields[0].startsWith("#")) return;
    let marker: Entry["marker"];
    if (fields[0] === "@revoked" || fields[0] === "@cert-authority") {
      marker = fields.shift()!.slice(1) as Entry["marker"];
    }
    const [hosts, type, b64] = fields;
    if (!hosts || !type || !b64 || !/^[A-Za-z0-9+/]+=*$/.test(b64)) return;
    const blob = Buffer.from(b64, "base64");
    // The blob starts with its own type name; a line whose two disagree is corrupt.
    if (keyTypeOf(blob) !== type) return;
    out.push({ marker, patterns: hosts.split(","), type, blob, line: idx + 1 });
  });
  return out;
}

/** The name known_hosts uses for a host: plain on port 22, "[host]:port" elsewhere. */
export function hostKeyName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, name: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${re}$`, "i").test(name);
}

function hashedMatch(pattern: string, name: string): boolean {
  // |1|base64(salt)|base64(HMAC-SHA1(salt, name)) as written by `ssh-keygen -H` / HashKnownHosts.
  const [, , salt, hash] = pattern.split("|");
  if (!salt || !hash) return false;
  const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
  return mac === hash;
}

function patternsMatch(patterns: string[], name: string): boolean {
  let matched = false;
  for (const p of patterns) {
    if (p.startsWith("|1|")) {
      if (hashedMatch(p, name)) matched = true;
    } else if (p.startsWith("!")) {
      // A negated pattern that matches vetoes the whole line, as in OpenSSH.
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

export interface PinnedKeys {
  /** Keys the host may present. */
  keys: KnownHostKey[];
  /** Keys the host must never present (@revoked). */
  revoked: KnownHostKey[];
  /** @cert-authority lines for this host: host certificates are not supported, so these pin nothing. */
  certAuthorities: number;
}

/** The keys known_hosts pins for host:port. */
export function pinnedKeys(entries: Entry[], host: string, port: number): PinnedKeys {
  const name = hostKeyName(host, port);
  const res: PinnedKeys = { keys: [], revoked: [], certAuthorities: 0 };
  for (const e of entries) {
    if (!patternsMatch(e.patterns, name)) continue;
    const key = { type: e.type, blob: e.blob, line: e.line };
    if (e.marker === "revoked") res.revoked.push(key);
    else if (e.marker === "cert-authority") res.certAuthorities++;
    else res.keys.push(key);
  }
  return res;
}

/** The type name at the start of an SSH public key blob ("" when the blob is malformed). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return "";
  const len = blob.readUInt32BE(0);
  if (len > 64 || blob.length < 4 + len) return "";
  return blob.subarray(4, 4 + len).toString("latin1");
}

/** "SHA256:..." as `ssh-keygen -lf` prints it. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

export type HostKeyVerdict =
  | { ok: true; key: KnownHostKey }
  | { ok: false; reason: "mismatch" | "revoked"; presented: { type: string; fingerprint: string } };

/** Compare what the server presented with what known_hosts pins. */
export function verifyHostKey(pinned: PinnedKeys, presented: Buffer): HostKeyVerdict {
  const shown = { type: keyTypeOf(presented), fingerprint: fingerprint(presented) };
  if (pinned.revoked.some((k) => k.blob.equals(presented))) {
    return { ok: false, reason: "revoked", presented: shown };
  }
  const key = pinned.keys.find((k) => k.blob.equals(presented));
  return key ? { ok: true, key } : { ok: false, reason: "mismatch", presented: shown };
}

/** The command that prints the line to add to known-hosts (to be verified out of band). */
export function keyscanCommand(host: string, port: number): string {
  return `ssh-keyscan ${port === 22 ? "" : `-p ${port} `}-t ed25519,ecdsa,rsa ${host}`;
}

// Host key algorithms each key type can be verified with, strongest first.
const ALGORITHMS_FOR: Record<string, string[]> = {
  "ssh-ed25519": ["ssh-ed25519"],
  "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
  "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
  "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
  "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256"],
};

/**
 * Host key algorithms to prefer so the server presents a key we have pinned, as OpenSSH does:
 * a host pinned only by its RSA key would otherwise present ed25519 and be refused. Only the
 * order changes; the set stays ssh2's default.
 */
export function preferredHostKeyAlgorithms(pinned: PinnedKeys): string[] {
  const out: string[] = [];
  for (const k of pinned.keys)
    for (const a of ALGORITHMS_FOR[k.type] ?? []) if (!out.includes(a)) out.push(a);
  return out;
}
