import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export const DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";

const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/**
 * An in-memory registry speaking just the manifest part of the v2 API, with the two auth
 * schemes real registries use (Basic like distribution+htpasswd, Bearer tokens like GHCR).
 * Unit tests only: e2e tests use the testbed's real registry.
 */
export class FakeRegistry {
  readonly blobs = new Map<string, { bytes: Buffer; mediaType: string }>();
  readonly tags = new Map<string, string>();
  readonly requests: string[] = [];
  /** Scopes asked of the token endpoint. */
  readonly scopes: string[] = [];
  readonly issuedTokens = new Set<string>();
  /** Send Docker-Content-Digest headers (some registries omit them on HEAD). */
  digestHeader = true;
  private server?: Server;
  host = "";

  constructor(readonly opts: { auth: "none" | "basic" | "bearer"; username?: string; password?: string }) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        res.statusCode = 500;
        res.end(String(e));
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.host = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.host;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()));
  }

  /** Store a manifest document under repo:tag; returns its digest. */
  put(repo: string, tag: string, doc: unknown, mediaType = DOCKER_V2): string {
    const bytes = Buffer.from(JSON.stringify(doc, null, 3));
    const digest = digestOf(bytes);
    this.blobs.set(`${repo}@${digest}`, { bytes, mediaType });
    this.tags.set(`${repo}:${tag}`, digest);
    return digest;
  }

  digestOf(repo: string, tag: string): string | undefined {
    return this.tags.get(`${repo}:${tag}`);
  }

  /** The parsed manifest document repo:tag points at. */
  manifestOf(repo: string, tag: string): unknown {
    const blob = this.blobs.get(`${repo}@${this.digestOf(repo, tag)}`);
    return blob && JSON.parse(blob.bytes.toString());
  }

  private authorised(req: IncomingMessage, scopeNeeded: string): boolean {
    const h = req.headers.authorization ?? "";
    if (this.opts.auth === "none") return true;
    if (this.opts.auth === "basic") return h === this.basic();
    if (!h.startsWith("Bearer ")) return false;
    const token = h.slice(7);
    return this.issuedTokens.has(`${token} ${scopeNeeded}`) || this.issuedTokens.has(`${token} *`);
  }

  private basic(): string {
    return `Basic ${Buffer.from(`${this.opts.username}:${this.opts.password}`).toString("base64")}`;
  }

  private challenge(res: ServerResponse, scope: string) {
    res.statusCode = 401;
    res.setHeader(
      "www-authenticate",
      this.opts.auth === "basic"
        ? 'Basic realm="fake"'
        : `Bearer realm="http://${this.host}/token",service="fake",scope="${scope}"`,
    );
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? "/", `http://${this.host}`);
    this.requests.push(`${req.method} ${url.pathname}`);
    if (url.pathname === "/token") {
      if (req.headers.authorization !== this.basic()) {
        res.statusCode = 401;
        return res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
      }
      const token = randomBytes(12).toString("hex");
      const scope = url.searchParams.get("scope") ?? "";
      this.scopes.push(scope);
      // A pull,push token also serves pull requests, as on real registries.
      this.issuedTokens.add(`${token} ${scope}`);
      if (scope.endsWith(":pull,push")) this.issuedTokens.add(`${token} ${scope.replace(/,push$/, "")}`);
      if (!scope) this.issuedTokens.add(`${token} *`);
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ token }));
    }
    if (url.pathname === "/v2/") {
      if (!this.authorised(req, "") && !this.anyToken(req)) return this.challenge(res, "");
      return res.end("{}");
    }
    const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (!m) {
      res.statusCode = 404;
      return res.end();
    }
    const [, repo, ref] = m as unknown as [string, string, string];
    const write = req.method === "PUT";
    const scope = `repository:${repo}:${write ? "pull,push" : "pull"}`;
    if (!this.authorised(req, scope)) return this.challenge(res, scope);
    if (write) {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const bytes = Buffer.concat(chunks);
      const digest = digestOf(bytes);
      this.blobs.set(`${repo}@${digest}`, { bytes, mediaType: String(req.headers["content-type"]) });
      this.tags.set(`${repo}:${ref}`, digest);
      res.statusCode = 201;
      res.setHeader("docker-content-digest", digest);
      return res.end();
    }
    const digest = ref.startsWith("sha256:") ? ref : this.tags.get(`${repo}:${ref}`);
    const blob = digest && this.blobs.get(`${repo}@${digest}`);
    if (!blob) {
      res.statusCode = 404;
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown" }] }));
    }
    res.setHeader("content-type", blob.mediaType);
    if (this.digestHeader) res.setHeader("docker-content-digest", digest!);
    res.setHeader("content-length", blob.bytes.length);
    return req.method === "HEAD" ? res.end() : res.end(blob.bytes);
  }

  private anyToken(req: IncomingMessage): boolean {
    const h = req.headers.authorization ?? "";
    const token = h.startsWith("Bearer ") ? h.slice(7) : "";
    return [...this.issuedTokens].some((t) => t.startsWith(`${token} `)) && token !== "";
  }
}

/** A single-platform image manifest whose layers sum to `layers` bytes. */
export function imageManifest(seed: string, layers = [1000, 2000]): unknown {
  const d = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}`;
  return {
    schemaVersion: 2,
    mediaType: DOCKER_V2,
    config: {
      mediaType: "application/vnd.docker.container.image.v1+json",
      size: 100,
      digest: d(`${seed}-config`),
    },
    layers: layers.map((size, i) => ({
      mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
      size,
      digest: d(`${seed}-layer-${i}`),
    })),
  };
}

/** A multi-platform index as registries serve it: its media type and each platform's manifest. */
export interface ImageIndexDoc {
  mediaType: string;
  manifests: { digest: string; platform: { os: string; architecture: string } }[];
}
export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
/** os/architecture of each manifest of an index, in order. */
export const indexPlatforms = (index: ImageIndexDoc) =>
  index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`);
