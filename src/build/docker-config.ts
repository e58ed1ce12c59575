import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { registerSecret } from "../core/secrets.js";
import type { Credentials } from "../registry/client.js";

/** The docker client's config directory the user has (DOCKER_CONFIG or ~/.docker). */
export function userDockerConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_CONFIG || join(homedir(), ".docker");
}

export interface TempDockerConfig {
  dir: string;
  /** Deletes the directory, and with it every credential `docker login` wrote there. */
  dispose(): Promise<void>;
}

/**
 * A private DOCKER_CONFIG for the docker calls that log in, so credentials never land in the
 * user's ~/.docker. Plugins (buildx), builder instances and contexts are linked from the user's
 * directory: setup-buildx-action's builder and a buildx installed under ~/.docker keep working.
 */
export async function createTempDockerConfig(
  opts: { parent?: string; userDir?: string } = {},
): Promise<TempDockerConfig> {
  const parent = opts.parent ?? (process.env.RUNNER_TEMP || tmpdir());
  const userDir = opts.userDir ?? userDockerConfigDir();
  const dir = await mkdtemp(join(parent, "dk-docker-config-"));
  await chmod(dir, 0o700);
  for (const sub of ["cli-plugins", "buildx", "contexts"]) {
    if (existsSync(join(userDir, sub))) await symlink(join(userDir, sub), join(dir, sub));
  }
  const config: { auths: Record<string, never>; currentContext?: string } = { auths: {} };
  const current = (await readUserConfig(userDir))?.currentContext;
  if (typeof current === "string") config.currentContext = current;
  await writeFile(join(dir, "config.json"), `${JSON.stringify(config)}\n`, { mode: 0o600 });
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  currentContext?: unknown;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

async function readUserConfig(dir: string): Promise<DockerConfigFile | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as DockerConfigFile;
  } catch {
    return undefined;
  }
}

/**
 * Credentials an earlier step (docker/login-action, `docker login`) left in the user's docker
 * config, so the registry API can be read with the same identity docker pushes with. Only the
 * plain `auths` form; credential helpers are not run.
 */
export async function credentialsFromDockerConfig(
  registry: string,
  userDir = userDockerConfigDir(),
): Promise<Credentials | undefined> {
  const auths = (await readUserConfig(userDir))?.auths ?? {};
  const keys =
    registry === "docker.io"
      ? ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
      : [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`];
  for (const k of keys) {
    const entry = auths[k];
    if (!entry) continue;
    let username = entry.username;
    let password = entry.password;
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) {
        username = decoded.slice(0, colon);
        password = decoded.slice(colon + 1);
      }
    }
    if (username && password) {
      registerSecret(password);
      return { username, password };
    }
  }
  return undefined;
}
