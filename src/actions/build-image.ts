import { rm } from "node:fs/promises";
import { basename } from "node:path";
import * as core from "@actions/core";
import { z } from "zod";
import { buildImage, defaultBuildDeps } from "../build/build-image.js";
import { createTempDockerConfig } from "../build/docker-config.js";
import { buildSummarySections } from "../build/summary.js";
import { loadConfig } from "../config/load.js";
import { ConfigError } from "../core/errors.js";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { workspacePath } from "../core/workspace.js";
import type { Credentials } from "../registry/client.js";
import { parseImageName } from "../registry/reference.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  push: input.bool(true),
  "allow-build": input.bool(true),
  "reuse-existing": input.bool(true),
  tags: input.list(),
  version: input.optional(),
  "registry-username": input.optional(),
  "registry-password": input.optional(),
  "github-token": input.optional(),
  "git-sha": input.optional(),
  cache: input
    .string("auto")
    .pipe(z.enum(["auto", "none", "gha", "registry"], { message: "expected auto, none, gha or registry" })),
  "insecure-registry": input.bool(false),
};

const TEMP_STATE = "docker-config";

/**
 * Credentials for the registry: the inputs, or for ghcr.io the workflow's actor and token.
 * The token is never sent to any other registry.
 */
export function registryCredentials(
  registry: string,
  i: { username?: string; password?: string; githubToken?: string; actor?: string },
): Credentials | undefined {
  if (i.password) {
    const username = i.username ?? (registry === "ghcr.io" ? i.actor : undefined);
    if (!username) {
      throw new ConfigError(`registry-password is set but registry-username is not (registry ${registry}).`, {
        hint: "Set registry-username to the account the password belongs to.",
      });
    }
    return { username, password: i.password };
  }
  if (i.username && registry !== "ghcr.io") {
    throw new ConfigError(`registry-username is set but registry-password is empty (registry ${registry}).`, {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a workflow expression for the user to copy
      hint: "Pass the password or token from a secret: registry-password: ${{ secrets.REGISTRY_PASSWORD }}.",
    });
  }
  if (registry === "ghcr.io" && i.githubToken) {
    const username = i.username ?? i.actor;
    if (username) return { username, password: i.githubToken };
  }
  return undefined;
}

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  const { config } = await loadConfig(workspacePath(i.config));
  const env = process.env;
  const sha = i["git-sha"] ?? env.GITHUB_SHA;
  if (!sha) {
    throw new ConfigError("No git SHA to build: the git-sha input is empty and GITHUB_SHA is not set.", {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a workflow expression for the user to copy
      hint: "Set git-sha: ${{ github.sha }} (or the commit you checked out).",
    });
  }
  const registry = parseImageName(config.image.name).registry;
  const credentials = registryCredentials(registry, {
    username: i["registry-username"],
    password: i["registry-password"],
    githubToken: i["github-token"],
    actor: env.GITHUB_ACTOR,
  });
  const deps = defaultBuildDeps();
  deps.tempDockerConfig = async () => {
    const temp = await createTempDockerConfig();
    // The post step deletes it if this step is cancelled before its own cleanup runs.
    core.saveState(TEMP_STATE, temp.dir);
    return temp;
  };
  const result = await buildImage(
    {
      image: config.image,
      workspace: workspacePath("."),
      sha,
      ref: env.GITHUB_REF,
      version: i.version,
      extraTags: i.tags,
      push: i.push,
      allowBuild: i["allow-build"],
      reuseExisting: i["reuse-existing"],
      credentials,
      insecureRegistry: i["insecure-registry"],
      cache: i.cache,
      githubCache: env.GITHUB_ACTIONS === "true" && !!env.ACTIONS_RUNTIME_TOKEN,
      sourceUrl:
        env.GITHUB_REPOSITORY && `${env.GITHUB_SERVER_URL || "https://github.com"}/${env.GITHUB_REPOSITORY}`,
    },
    log,
    deps,
  );
  setOutputs({
    "image-ref": result.imageRef,
    digest: result.digest,
    tags: result.tags.join("\n"),
    skipped: result.skipped,
    "image-id": result.imageId,
    version: result.version,
  });
  await writeSummary(
    result.skipped ? "deploy-kit: image promoted" : "deploy-kit: image built",
    buildSummarySections(result),
  );
}

async function post(log: Log): Promise<void> {
  const dir = core.getState(TEMP_STATE);
  // Only ever delete the directory this action created.
  if (!dir || !basename(dir).startsWith("dk-docker-config-")) return;
  await rm(dir, { recursive: true, force: true });
  log.debug(`removed ${dir}`);
}

export default { main, post } satisfies ActionSpec;
