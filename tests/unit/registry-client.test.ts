import { createServer } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, DeployError, describeError } from "../../src/core/errors.js";
import { forgetSecrets, redact } from "../../src/core/secrets.js";
import { RegistryClient, resolveTag, sha256Digest } from "../../src/registry/client.js";
import { DOCKER_V2, FakeRegistry, imageManifest, OCI_INDEX } from "../support/fake-registry.js";

const creds = { username: "dk", password: "s3cret-registry-pass" };

afterEach(() => forgetSecrets());

describe.each(["basic", "bearer"] as const)("RegistryClient with %s auth", (auth) => {
  const reg = new FakeRegistry({ auth, ...creds });
  let host = "";
  beforeAll(async () => {
    host = await reg.start();
  });
  afterAll(() => reg.stop());

  const client = () => new RegistryClient({ registry: host, credentials: creds });

  it("reads a manifest: digest from the registry equals sha256 of the exact bytes", async () => {
    const digest = reg.put("t4-app", "sha-aaaaaaaaaaaa", imageManifest("a"));
    const m = await client().getManifest("t4-app", "sha-aaaaaaaaaaaa");
    expect(m?.digest).toBe(digest);
    expect(sha256Digest(m!.bytes)).toBe(digest);
    expect(m?.mediaType).toBe(DOCKER_V2);
  });

  it("returns undefined for a tag that does not exist", async () => {
    expect(await client().getManifest("t4-app", "nope")).toBeUndefined();
    expect(await client().resolveTag("t4-app", "nope")).toBeUndefined();
  });

  it("adds a tag by PUTting the same bytes: the digest does not change", async () => {
    const digest = reg.put("t4-app", "sha-bbbbbbbbbbbb", imageManifest("b"));
    const c = client();
    const m = (await c.getManifest("t4-app", "sha-bbbbbbbbbbbb"))!;
    expect(await c.putManifest("t4-app", "1.2.3", m)).toBe(digest);
    expect(reg.digestOf("t4-app", "1.2.3")).toBe(digest);
    expect(await c.resolveTag("t4-app", "1.2.3")).toBe(digest);
  });

  it("checkAccess rejects a wrong password, naming the registry and the user, never the password", async () => {
    const bad = new RegistryClient({
      registry: host,
      credentials: { username: "dk", password: "wrong-pass-123" },
    });
    const e = await bad.checkAccess("t4-app").catch((x) => x);
    expect(e).toBeInstanceOf(ConfigError);
    const text = describeError(e);
    expect(text).toContain(`Registry ${host} rejected the credentials for user "dk"`);
    expect(text).toContain("packages:write");
    expect(text).not.toContain("wrong-pass-123");
  });

  it("without credentials says which registry wants a login", async () => {
    const e = await new RegistryClient({ registry: host }).checkAccess("t4-app").catch((x) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toBe(`Registry ${host} requires a login and no credentials were given.`);
  });

  it("resolveTag falls back to GET when HEAD carries no digest header", async () => {
    const digest = reg.put("t4-app", "sha-cccccccccccc", imageManifest("c"));
    reg.digestHeader = false;
    try {
      expect(await resolveTag(`${host}/t4-app`, "sha-cccccccccccc", { credentials: creds })).toBe(digest);
    } finally {
      reg.digestHeader = true;
    }
  });
});

describe("RegistryClient bearer tokens", () => {
  const reg = new FakeRegistry({ auth: "bearer", ...creds });
  let host = "";
  beforeAll(async () => {
    host = await reg.start();
  });
  afterAll(() => reg.stop());

  it("asks for push scope only to write, and registers every token as a secret", async () => {
    reg.put("acme/app", "sha-dddddddddddd", imageManifest("d"));
    const c = new RegistryClient({ registry: host, credentials: creds });
    const m = (await c.getManifest("acme/app", "sha-dddddddddddd"))!;
    await c.putManifest("acme/app", "main", m);
    expect(reg.scopes).toEqual(["repository:acme/app:pull", "repository:acme/app:pull,push"]);
    for (const t of reg.issuedTokens) expect(redact(`token ${t.split(" ")[0]}`)).toBe("token ***");
  });

  it("rejects a wrong password at the token endpoint", async () => {
    const c = new RegistryClient({ registry: host, credentials: { username: "dk", password: "nope-nope" } });
    const e = await c.getManifest("acme/app", "x").catch((x) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(`Registry ${host} rejected the credentials`);
  });
});

describe("RegistryClient failures", () => {
  it("names the registry and the address when it cannot connect", async () => {
    const port = await new Promise<number>((r) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => r(p));
      });
    });
    const e = await new RegistryClient({ registry: `127.0.0.1:${port}` })
      .getManifest("t4-app", "x")
      .catch((x) => x);
    expect(e).toBeInstanceOf(DeployError);
    expect(e.message).toContain(
      `Cannot reach registry 127.0.0.1:${port} at http://127.0.0.1:${port}/v2/t4-app`,
    );
  });

  it("refuses a manifest whose bytes do not hash to the digest asked for", async () => {
    const reg = new FakeRegistry({ auth: "none" });
    const host = await reg.start();
    try {
      const real = reg.put("t4-app", "x", imageManifest("e"));
      const other = reg.put("t4-app", "y", imageManifest("f"));
      // Corrupt the store: the digest `real` now serves other bytes.
      reg.blobs.set(`t4-app@${real}`, reg.blobs.get(`t4-app@${other}`)!);
      const e = await new RegistryClient({ registry: host }).getManifest("t4-app", real).catch((x) => x);
      expect(e).toBeInstanceOf(DeployError);
      expect(e.message).toContain(`whose sha256 is ${other}`);
    } finally {
      await reg.stop();
    }
  });

  it("sums the platform images of an index, leaving attestations out", async () => {
    const reg = new FakeRegistry({ auth: "none" });
    const host = await reg.start();
    try {
      const amd = reg.put("t4-app", "amd", imageManifest("amd", [1000]));
      const arm = reg.put("t4-app", "arm", imageManifest("arm", [500]));
      const att = reg.put("t4-app", "att", imageManifest("att", [99999]));
      reg.put(
        "t4-app",
        "multi",
        {
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [
            { digest: amd, platform: { os: "linux", architecture: "amd64" } },
            { digest: arm, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
            {
              digest: att,
              platform: { os: "unknown", architecture: "unknown" },
              annotations: { "vnd.docker.reference.type": "attestation-manifest" },
            },
          ],
        },
        OCI_INDEX,
      );
      const c = new RegistryClient({ registry: host });
      const m = (await c.getManifest("t4-app", "multi"))!;
      expect(m.mediaType).toBe(OCI_INDEX);
      expect(await c.imageSize("t4-app", m)).toEqual({
        bytes: 1100 + 600,
        platforms: ["linux/amd64", "linux/arm64/v8"],
      });
    } finally {
      await reg.stop();
    }
  });

  it("never sends credentials over plain HTTP to a public address", () => {
    expect(() => new RegistryClient({ registry: "registry.example.com", insecure: true })).toThrow(
      ConfigError,
    );
  });
});
