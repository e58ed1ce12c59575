import { loadConfig } from "../config/load.js";
import { ConfigError } from "../core/errors.js";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { workspacePath } from "../core/workspace.js";
import { checkRemote, remoteSections } from "../validate/remote.js";
import { configSections, hostLabel } from "../validate/summary.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  environment: input.optional(),
  "check-remote": input.bool(false),
  "ssh-key": input.string(),
  "known-hosts": input.string(),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  const { config } = await log.group("Validate config", async () => {
    const loaded = await loadConfig(workspacePath(i.config), {
      environment: i.environment,
      displayName: i.config,
    });
    log.info(`${i.config}: valid (${Object.keys(loaded.config.environments).length} environment(s))`);
    return loaded;
  });
  const names = i.environment ? [i.environment] : Object.keys(config.environments);
  const hosts = names.flatMap((n) =>
    config.environments[n]!.hosts.map((h) => ({ environment: n, alias: h.alias, address: hostLabel(h) })),
  );
  setOutputs({
    environments: JSON.stringify(Object.keys(config.environments)),
    hosts: JSON.stringify(hosts),
    "image-name": config.image.name,
    "foreign-platforms": foreignPlatforms(config.image.platforms ?? [], process.arch).join(","),
  });
  if (!i["check-remote"]) {
    await writeSummary("deploy-kit: config valid", configSections(config, i.environment));
    return;
  }
  if (!i["ssh-key"] || !i["known-hosts"].trim()) {
    throw new ConfigError("check-remote: true needs the ssh-key and known-hosts inputs.", {
      hint: "Pass the deploy key and the pinned known_hosts lines, as for deploy-ssh.",
    });
  }
  const results = await checkRemote({
    config,
    file: i.config,
    environments: names,
    sshKey: i["ssh-key"],
    knownHosts: i["known-hosts"],
    log,
  });
  await writeSummary("deploy-kit: config and hosts valid", [
    ...configSections(config, i.environment),
    ...remoteSections(results),
  ]);
}

/** Platforms this runner's CPU cannot run natively: building them needs QEMU for RUN steps. */
export function foreignPlatforms(platforms: string[], arch: string): string[] {
  const native: Record<string, string[]> = {
    x64: ["linux/amd64", "linux/386"],
    arm64: ["linux/arm64", "linux/arm/v7", "linux/arm/v6"],
  };
  return platforms.filter((p) => !(native[arch] ?? []).some((n) => p === n || p.startsWith(`${n}/`)));
}

export default { main } satisfies ActionSpec;
