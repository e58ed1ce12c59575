import { isIP } from "node:net";
import { ConfigError } from "../core/errors.js";

/** Where an image repository lives, as the registry HTTP API and `docker login` need it. */
export interface ImageRepository {
  /** The registry as the user wrote it (and as `docker login` takes it): ghcr.io, 10.200.0.1:5001. */
  registry: string;
  /** The host[:port] that serves the /v2/ API (Docker Hub's differs from its name). */
  apiHost: string;
  /** The repository path inside the registry: acme/app, library/nginx. */
  repository: string;
  /** The full name to tag with: registry/repository (docker.io names keep their short form). */
  name: string;
}

const DOCKER_HUB = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

/**
 * Split an image name (without tag) the way docker does: the first component is a registry
 * when it has a dot, a port or is "localhost"; otherwise the image is on Docker Hub.
 * Names are lower-cased because registries refuse upper-case repository names.
 */
export function parseImageName(input: string): ImageRepository {
  const name = input.trim().toLowerCase();
  if (!name || /[@\s]/.test(name) || /:[^/]*$/.test(name.replace(/^[^/]+:\d+\//, ""))) {
    throw new ConfigError(`"${input}" is not an image name without tag or digest.`, {
      hint: "Set image.name in deploy-kit.yml to a repository like ghcr.io/acme/app (no :tag, no @digest).",
    });
  }
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  const hasRegistry = first !== "" && (first.includes(".") || first.includes(":") || first === "localhost");
  if (!hasRegistry || DOCKER_HUB.has(first)) {
    const path = hasRegistry ? name.slice(slash + 1) : name;
    const repository = path.includes("/") ? path : `library/${path}`;
    return { registry: "docker.io", apiHost: "registry-1.docker.io", repository, name };
  }
  return { registry: first, apiHost: first, repository: name.slice(slash + 1), name };
}

/** The host part of "host:port" / "[v6]:port". */
export function hostOf(registry: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(registry);
  if (v6) return v6[1]!;
  return registry.replace(/:\d+$/, "");
}

/** Loopback registries are plain HTTP by default, as the docker daemon treats them. */
export function isLoopback(registry: string): boolean {
  const host = hostOf(registry);
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** RFC 1918 / unique-local addresses: the only places a plain-HTTP registry may be opted into. */
export function isPrivateAddress(registry: string): boolean {
  const host = hostOf(registry);
  if (isLoopback(registry)) return true;
  if (isIP(host) === 4) {
    const [a, b] = host.split(".").map(Number) as [number, number];
    return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
  }
  if (isIP(host) === 6) return /^f[cd]/i.test(host);
  return false;
}

/**
 * The scheme for a registry. HTTPS always, except loopback and, when the user opts in with
 * `insecure-registry: true`, registries on private addresses: credentials never cross the
 * internet in clear text, whatever the input says.
 */
export function registryScheme(registry: string, insecure: boolean): "http" | "https" {
  if (isLoopback(registry)) return "http";
  if (!insecure) return "https";
  if (!isPrivateAddress(registry)) {
    throw new ConfigError(`insecure-registry is set, but ${registry} is not on a private address.`, {
      hint: "Plain HTTP is only allowed for registries on loopback or private (10/8, 172.16/12, 192.168/16) addresses; serve this registry over HTTPS.",
    });
  }
  return "http";
}

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export function isDigest(ref: string): boolean {
  return /^sha256:[0-9a-f]{64}$/.test(ref);
}
