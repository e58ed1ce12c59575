import { createHash } from "node:crypto";
import { ConfigError, DeployError } from "../core/errors.js";
import { registerSecret } from "../core/secrets.js";
import { isDigest, isLoopback, isPrivateAddress, parseImageName, registryScheme } from "./reference.js";

export interface Credentials {
  username: string;
  password: string;
}

/** Every manifest kind a build can leave in a registry, most specific first. */
export const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
] as const;

export interface Manifest {
  digest: string;
  mediaType: string;
  /** The exact bytes the registry stores: re-tagging PUTs these, so the digest cannot change. */
  bytes: Uint8Array;
}

export interface RegistryOptions {
  /** The registry as written in the image name: ghcr.io, 10.200.0.1:5001, docker.io. */
  registry: string;
  /** The host serving /v2/ when it differs from `registry` (Docker Hub). */
  apiHost?: string;
  credentials?: Credentials;
  /** Plain HTTP for a registry on a private address (see registryScheme). */
  insecure?: boolean;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

type Access = "pull" | "pull,push";

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/**
 * A small client for the registry HTTP API v2: just what build and promotion need (resolve a
 * tag to its digest, copy a manifest under another tag). Handles both auth schemes registries
 * use: Basic (distribution with htpasswd) and Bearer tokens (GHCR, Docker Hub, ECR, GAR...).
 */
export class RegistryClient {
  readonly registry: string;
  private readonly base: string;
  private readonly fetch: typeof fetch;
  private readonly timeoutMs: number;
  private readonly credentials?: Credentials;
  private readonly insecure: boolean;
  private basic = false;
  private readonly tokens = new Map<string, string>();

  constructor(opts: RegistryOptions) {
    this.registry = opts.registry;
    this.insecure = opts.insecure ?? false;
    const host = opts.apiHost ?? opts.registry;
    this.base = `${registryScheme(host, this.insecure)}://${host}`;
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.credentials = opts.credentials;
    if (this.credentials) {
      registerSecret(this.credentials.password);
      registerSecret(basicToken(this.credentials));
    }
  }

  /** A client for the registry an image name points at. */
  static forImage(name: string, opts: Omit<RegistryOptions, "registry" | "apiHost"> = {}): RegistryClient {
    const ref = parseImageName(name);
    return new RegistryClient({ ...opts, registry: ref.registry, apiHost: ref.apiHost });
  }

  /**
   * Prove the credentials work for this repository before anything is built, so a wrong password
   * fails in a second with the registry's name, not after a ten-minute build.
   */
  async checkAccess(repository: string, access: Access = "pull,push"): Promise<void> {
    await this.request("GET", "/v2/", { scope: scopeFor(repository, access), what: "log in" });
  }

  /** The manifest a tag or digest points at, or undefined when there is none. */
  async getManifest(repository: string, ref: string): Promise<Manifest | undefined> {
    const res = await this.request("GET", manifestPath(repository, ref), {
      scope: scopeFor(repository, "pull"),
      headers: { accept: MANIFEST_TYPES.join(", ") },
      allow404: true,
      what: `read ${repository}:${ref}`,
    });
    if (res.status === 404) return undefined;
    const bytes = new Uint8Array(await res.arrayBuffer());
    const computed = sha256Digest(bytes);
    const header = res.headers.get("docker-content-digest");
    if (isDigest(ref) && computed !== ref) {
      throw new DeployError(
        `Registry ${this.registry} returned a manifest for ${ref} whose sha256 is ${computed}.`,
        {
          hint: "The registry or a proxy in between altered the manifest; do not deploy it.",
        },
      );
    }
    const mediaType =
      (res.headers.get("content-type") ?? "").split(";")[0]!.trim() ||
      mediaTypeOf(bytes) ||
      MANIFEST_TYPES[3];
    return { digest: header && isDigest(header) ? header : computed, mediaType, bytes };
  }

  /** The digest a tag points at (HEAD first: it does not count against pull rate limits). */
  async resolveTag(repository: string, tag: string): Promise<string | undefined> {
    const res = await this.request("HEAD", manifestPath(repository, tag), {
      scope: scopeFor(repository, "pull"),
      headers: { accept: MANIFEST_TYPES.join(", ") },
      allow404: true,
      what: `read ${repository}:${tag}`,
    });
    if (res.status === 404) return undefined;
    const header = res.headers.get("docker-content-digest");
    if (header && isDigest(header)) return header;
    return (await this.getManifest(repository, tag))?.digest;
  }

  /** Store `manifest` under `tag` (what `crane tag` / `imagetools create` do); returns the digest. */
  async putManifest(repository: string, tag: string, manifest: Manifest): Promise<string> {
    const res = await this.request("PUT", manifestPath(repository, tag), {
      scope: scopeFor(repository, "pull,push"),
      headers: { "content-type": manifest.mediaType },
      body: manifest.bytes,
      what: `tag ${repository}:${tag}`,
    });
    const digest = res.headers.get("docker-content-digest") ?? sha256Digest(manifest.bytes);
    await res.arrayBuffer().catch(() => undefined);
    if (digest !== manifest.digest) {
      throw new DeployError(
        `Registry ${this.registry} stored ${repository}:${tag} as ${digest}, expected ${manifest.digest}.`,
        { hint: "The registry rewrote the manifest; tag the image with docker push instead." },
      );
    }
    return digest;
  }

  /**
   * Compressed size (config + layers) of an image; for a multi-platform index, of every platform
   * image in it (attestations left out).
   */
  async imageSize(repository: string, manifest: Manifest): Promise<{ bytes: number; platforms: string[] }> {
    const doc = JSON.parse(new TextDecoder().decode(manifest.bytes)) as ManifestDoc;
    if (!doc.manifests) return { bytes: sizeOf(doc), platforms: [] };
    let bytes = 0;
    const platforms: string[] = [];
    for (const m of doc.manifests) {
      if (m.annotations?.["vnd.docker.reference.type"] === "attestation-manifest") continue;
      if (m.platform?.os === "unknown") continue;
      const child = await this.getManifest(repository, m.digest);
      if (!child) continue;
      bytes += sizeOf(JSON.parse(new TextDecoder().decode(child.bytes)) as ManifestDoc);
      if (m.platform)
        platforms.push(
          [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join("/"),
        );
    }
    return { bytes, platforms };
  }

  private basicHeader(): string {
    return `Basic ${basicToken(this.credentials!)}`;
  }

  private async request(
    method: "GET" | "HEAD" | "PUT",
    path: string,
    opts: {
      scope: string;
      what: string;
      headers?: Record<string, string>;
      body?: Uint8Array;
      allow404?: boolean;
    },
  ): Promise<Response> {
    let authorization = this.basic ? this.basicHeader() : this.tokens.get(opts.scope);
    for (let attempt = 0; ; attempt++) {
      const res = await this.send(method, path, opts, authorization);
      if (res.status === 401 && attempt === 0) {
        const challenge = res.headers.get("www-authenticate") ?? "";
        await res.arrayBuffer().catch(() => undefined);
        authorization = await this.authorize(challenge, opts.scope);
        continue;
      }
      if (res.ok || (opts.allow404 && res.status === 404)) return res;
      const body = method === "HEAD" ? "" : await res.text().catch(() => "");
      throw this.failure(res.status, opts.what, body, this.credentials !== undefined);
    }
  }

  private async send(
    method: string,
    path: string,
    opts: { headers?: Record<string, string>; body?: Uint8Array; what: string },
    authorization: string | undefined,
  ): Promise<Response> {
    const url = `${this.base}${path}`;
    try {
      return await this.fetch(url, {
        method,
        headers: { ...opts.headers, ...(authorization ? { authorization } : {}) },
        body: opts.body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw this.unreachable(url, e);
    }
  }

  /** Answer a 401 challenge: Basic with the credentials, or fetch a Bearer token for the scope. */
  private async authorize(challenge: string, scope: string): Promise<string> {
    const scheme = challenge.split(" ")[0]?.toLowerCase();
    if (scheme === "basic") {
      if (!this.credentials) throw this.needsCredentials();
      this.basic = true;
      return this.basicHeader();
    }
    if (scheme !== "bearer") {
      throw new DeployError(
        `Registry ${this.registry} asked for an authentication scheme deploy-kit does not speak: "${challenge || "(none)"}".`,
        {
          hint: "Use a registry with Basic or Bearer token auth (distribution, GHCR, Docker Hub, ECR, GAR).",
        },
      );
    }
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (!params.realm)
      throw new DeployError(`Registry ${this.registry} sent a Bearer challenge without a realm.`);
    const realm = new URL(params.realm);
    if (realm.protocol !== "https:" && !this.clearTextAllowed(realm.host)) {
      throw new DeployError(
        `Registry ${this.registry} wants credentials sent to ${realm.origin} in clear text.`,
        {
          hint: "deploy-kit only sends credentials over HTTPS, except to loopback or (with insecure-registry) private addresses.",
        },
      );
    }
    if (params.service) realm.searchParams.set("service", params.service);
    if (scope) realm.searchParams.set("scope", scope);
    let res: Response;
    try {
      res = await this.fetch(realm, {
        headers: this.credentials ? { authorization: this.basicHeader() } : {},
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw this.unreachable(realm.origin, e);
    }
    if (!res.ok)
      throw this.failure(res.status, "get a token", await res.text().catch(() => ""), !!this.credentials);
    const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token)
      throw new DeployError(`Registry ${this.registry}'s token endpoint ${realm.origin} returned no token.`);
    registerSecret(token);
    const header = `Bearer ${token}`;
    this.tokens.set(scope, header);
    return header;
  }

  private clearTextAllowed(host: string): boolean {
    return isLoopback(host) || (this.insecure && isPrivateAddress(host));
  }

  private needsCredentials(): ConfigError {
    return new ConfigError(`Registry ${this.registry} requires a login and no credentials were given.`, {
      hint: "Set the registry-username and registry-password inputs (for ghcr.io the defaults are the workflow actor and github-token).",
    });
  }

  private failure(status: number, what: string, body: string, withCredentials: boolean): Error {
    const detail = registryMessage(body);
    const at = `Registry ${this.registry} refused to ${what} (HTTP ${status}${detail ? `: ${detail}` : ""}).`;
    if (status === 401) {
      if (!withCredentials) return this.needsCredentials();
      const user = this.credentials ? ` for user "${this.credentials.username}"` : "";
      return new ConfigError(`Registry ${this.registry} rejected the credentials${user} (HTTP 401).`, {
        hint: "Check registry-username and registry-password. For ghcr.io the token needs the packages:write permission (`permissions: { packages: write }` on the job).",
      });
    }
    if (status === 403) {
      return new ConfigError(at, {
        hint: "The credentials are valid but may not push to this repository: for ghcr.io give the job `permissions: { packages: write }` and the package access to this repository; elsewhere grant push rights.",
      });
    }
    if (status === 404) {
      return new ConfigError(at, {
        hint: "Check image.name in deploy-kit.yml: the repository does not exist or is not visible to these credentials.",
      });
    }
    if (status === 429)
      return new DeployError(at, {
        hint: "The registry is rate limiting: retry later or log in to get a higher limit.",
      });
    return new DeployError(at, {
      hint: "The registry failed; retry, and check its status if it keeps failing.",
    });
  }

  private unreachable(url: string, e: unknown): DeployError {
    const cause = e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e);
    const tls = /SSL|TLS|EPROTO|wrong version number|certificate/i.test(cause);
    return new DeployError(`Cannot reach registry ${this.registry} at ${url}: ${cause}`, {
      cause: e,
      hint: tls
        ? "The registry does not speak HTTPS. If it is a plain-HTTP registry on a private address, set insecure-registry: true."
        : "Check the registry part of image.name and that the registry is up and reachable from the runner.",
    });
  }
}

interface ManifestDoc {
  config?: { size?: number };
  layers?: { size?: number }[];
  manifests?: {
    digest: string;
    platform?: { os: string; architecture: string; variant?: string };
    annotations?: Record<string, string>;
  }[];
}

function basicToken(c: Credentials): string {
  return Buffer.from(`${c.username}:${c.password}`).toString("base64");
}

function sizeOf(doc: ManifestDoc): number {
  return (doc.config?.size ?? 0) + (doc.layers ?? []).reduce((n, l) => n + (l.size ?? 0), 0);
}

function mediaTypeOf(bytes: Uint8Array): string | undefined {
  try {
    return (JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: string }).mediaType;
  } catch {
    return undefined;
  }
}

/** The registry's own error text: {"errors":[{"code":"DENIED","message":"..."}]}. */
function registryMessage(body: string): string {
  try {
    const doc = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
    return (doc.errors ?? [])
      .map((e) => [e.code, e.message].filter(Boolean).join(" "))
      .join("; ")
      .slice(0, 300);
  } catch {
    return body.trim().slice(0, 200);
  }
}

function manifestPath(repository: string, ref: string): string {
  return `/v2/${repository}/manifests/${ref}`;
}

function scopeFor(repository: string, access: Access): string {
  return `repository:${repository}:${access}`;
}

/**
 * The digest `name:tag` points at in its registry, or undefined when the tag does not exist.
 * Promotion uses it: production deploys the digest staging's `sha-<sha>` tag resolved to.
 */
export async function resolveTag(
  name: string,
  tag: string,
  opts: Omit<RegistryOptions, "registry" | "apiHost"> = {},
): Promise<string | undefined> {
  const ref = parseImageName(name);
  return RegistryClient.forImage(name, opts).resolveTag(ref.repository, tag);
}

/**
 * One multi-platform index over single-platform images already in the same repository (what
 * `docker buildx imagetools create` makes, built here so it works with every registry the client
 * can reach). A docker manifest list over docker manifests, else an OCI index.
 */
export function imageIndex(children: { platform: string; manifest: Manifest }[]): Manifest {
  const docker = children.every((c) => c.manifest.mediaType === MANIFEST_TYPES[3]);
  const doc = {
    schemaVersion: 2,
    mediaType: docker ? MANIFEST_TYPES[1] : MANIFEST_TYPES[0],
    manifests: children.map(({ platform, manifest }) => {
      const [os, architecture, variant] = platform.split("/");
      return {
        mediaType: manifest.mediaType,
        digest: manifest.digest,
        size: manifest.bytes.byteLength,
        platform: { architecture, os, ...(variant ? { variant } : {}) },
      };
    }),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(doc, null, 2));
  return { digest: sha256Digest(bytes), mediaType: doc.mediaType, bytes };
}
