import { createHmac, randomBytes } from "node:crypto";
import ssh2 from "ssh2";
import { describe, expect, test } from "vitest";
import { ConfigError } from "../../src/core/errors.js";
import {
  fingerprint,
  hostKeyName,
  keyscanCommand,
  keyTypeOf,
  parseKnownHosts,
  pinnedKeys,
  preferredHostKeyAlgorithms,
  verifyHostKey,
} from "../../src/ssh/known-hosts.js";
import { parsePrivateKey, pinnedKeysFor } from "../../src/ssh/session.js";

const { utils } = ssh2;

function publicKey(type: "ed25519" | "ecdsa" = "ed25519") {
  const pair =
    type === "ecdsa"
      ? utils.generateKeyPairSync("ecdsa", { bits: 256 })
      : utils.generateKeyPairSync("ed25519");
  const [kt, b64] = pair.public.trim().split(" ");
  return { type: kt!, b64: b64!, blob: Buffer.from(b64!, "base64"), private: pair.private };
}

function hashed(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString("base64")}|${createHmac("sha1", salt).update(name).digest("base64")}`;
}

const a = publicKey();
const b = publicKey();
const c = publicKey("ecdsa");

describe("known_hosts", () => {
  test.each([
    ["plain name on port 22", `10.0.0.5 ${a.type} ${a.b64}`, "10.0.0.5", 22, 1],
    ["plain name does not pin another port", `10.0.0.5 ${a.type} ${a.b64}`, "10.0.0.5", 2222, 0],
    ["[host]:port", `[10.0.0.5]:2222 ${a.type} ${a.b64}`, "10.0.0.5", 2222, 1],
    ["[host]:port does not pin port 22", `[10.0.0.5]:2222 ${a.type} ${a.b64}`, "10.0.0.5", 22, 0],
    ["comma list", `web,10.0.0.5 ${a.type} ${a.b64}`, "10.0.0.5", 22, 1],
    ["wildcard", `*.example.com ${a.type} ${a.b64}`, "web.example.com", 22, 1],
    ["negation vetoes", `*.example.com,!db.example.com ${a.type} ${a.b64}`, "db.example.com", 22, 0],
    ["hashed entry", `${hashed("10.0.0.5")} ${a.type} ${a.b64}`, "10.0.0.5", 22, 1],
    ["hashed [host]:port", `${hashed("[10.0.0.5]:2222")} ${a.type} ${a.b64}`, "10.0.0.5", 2222, 1],
    ["hashed other host", `${hashed("10.0.0.6")} ${a.type} ${a.b64}`, "10.0.0.5", 22, 0],
    [
      "comments and junk skipped",
      `# comment\n\nnot a line\n10.0.0.5 ${a.type} ${a.b64} me@x`,
      "10.0.0.5",
      22,
      1,
    ],
    ["type that disagrees with the blob is skipped", `10.0.0.5 ssh-rsa ${a.b64}`, "10.0.0.5", 22, 0],
  ])("%s", (_name, text, host, port, count) => {
    expect(pinnedKeys(parseKnownHosts(text), host, port).keys).toHaveLength(count);
  });

  test("the presented key must equal a pinned key; revoked keys are refused", () => {
    const text = [
      `h ${a.type} ${a.b64}`,
      `@revoked h ${b.type} ${b.b64}`,
      `@cert-authority h ${c.type} ${c.b64}`,
    ].join("\n");
    const pinned = pinnedKeys(parseKnownHosts(text), "h", 22);
    expect(pinned.certAuthorities).toBe(1);
    expect(verifyHostKey(pinned, a.blob)).toMatchObject({ ok: true, key: { line: 1 } });
    expect(verifyHostKey(pinned, b.blob)).toMatchObject({ ok: false, reason: "revoked" });
    expect(verifyHostKey(pinned, c.blob)).toEqual({
      ok: false,
      reason: "mismatch",
      presented: { type: "ecdsa-sha2-nistp256", fingerprint: fingerprint(c.blob) },
    });
  });

  test("fingerprints and key types read like ssh-keygen's", () => {
    expect(fingerprint(a.blob)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(keyTypeOf(a.blob)).toBe("ssh-ed25519");
    expect(keyTypeOf(Buffer.from([0, 0, 1]))).toBe("");
  });

  test("known key types are preferred, in file order, rsa by its sha2 algorithms", () => {
    const rsaLine = "h ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7";
    const text = `${rsaLine}\nh ${c.type} ${c.b64}`;
    const pinned = pinnedKeys(parseKnownHosts(text), "h", 22);
    // The truncated rsa blob still names its type, so it counts as a pinned rsa key.
    expect(preferredHostKeyAlgorithms(pinned)).toEqual([
      "rsa-sha2-512",
      "rsa-sha2-256",
      "ecdsa-sha2-nistp256",
    ]);
  });

  test.each([
    ["h", 22, "h", "ssh-keyscan -t ed25519,ecdsa,rsa h"],
    ["h", 2222, "[h]:2222", "ssh-keyscan -p 2222 -t ed25519,ecdsa,rsa h"],
  ])("names for %s:%d", (host, port, name, scan) => {
    expect(hostKeyName(host, port)).toBe(name);
    expect(keyscanCommand(host, port)).toBe(scan);
  });

  test("a host without a pinned key fails before connecting, with the keyscan line", () => {
    const hosts = [
      { host: "10.0.0.5", port: 22, user: "deploy", alias: "web-1" },
      { host: "10.0.0.6", port: 2222, user: "deploy", alias: "web-2" },
    ];
    let err: unknown;
    try {
      pinnedKeysFor(`10.0.0.5 ${a.type} ${a.b64}`, hosts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const ce = err as ConfigError;
    expect(ce.message).toContain("web-2 ([10.0.0.6]:2222)");
    expect(ce.message).not.toContain("web-1");
    expect(ce.problems[0]!.message).toContain("ssh-keyscan -p 2222 -t ed25519,ecdsa,rsa 10.0.0.6");
  });
});

describe("parsePrivateKey", () => {
  test("reads type and public fingerprint", () => {
    const k = parsePrivateKey(a.private);
    expect(k.type).toBe("ssh-ed25519");
    expect(k.fingerprint).toBe(fingerprint(a.blob));
  });
  test.each([
    ["empty", "  ", /empty/],
    ["garbage", "hello", /not a private key/],
    ["a public key", `${a.type} ${a.b64}`, /public key/],
    [
      "a passphrase-protected key",
      utils.generateKeyPairSync("ed25519", { passphrase: "pw", cipher: "aes256-cbc", rounds: 4 }).private,
      /passphrase/,
    ],
  ])("refuses %s", (_n, text, msg) => {
    expect(() => parsePrivateKey(text)).toThrow(msg);
  });
});
