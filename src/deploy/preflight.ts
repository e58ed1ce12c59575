import type { ComposeBin } from "../commands/compose.js";
import { hostFactsScript, parseHostFacts } from "../commands/docker.js";
import type { Environment } from "../config/schema.js";
import type { Remote } from "../ssh/types.js";

export interface HostCheck {
  alias: string;
  compose?: ComposeBin;
  /** Deploying would fail or do harm: refuse before changing anything. */
  problems: string[];
  /** Worth fixing, not worth refusing a deploy for (validate-config check-remote fails on them). */
  warnings: string[];
  notes: string[];
}

/**
 * What must hold on a host before deploy-kit changes anything there: docker and compose answer,
 * the deploy path is a writable directory (or can be created), the env-file exists with mode 600
 * and names every required key. The env-file is read for key NAMES only, never values.
 */
export async function checkHost(
  remote: Remote,
  env: Environment,
  opts: { requirePath?: boolean } = {},
): Promise<HostCheck> {
  const envFile = env["env-file"];
  const res = await remote.run({
    what: "check docker, compose, the deploy path and the env-file",
    script: hostFactsScript(env.path, envFile?.name),
  });
  const f = parseHostFacts(res.stdout);
  const problems: string[] = [];
  const warnings: string[] = [];
  const notes: string[] = [];
  if (!f.docker) problems.push(`docker does not answer for this user: ${f.dockerError ?? "no output"}`);
  else notes.push(`docker ${f.docker}`);
  const compose = f.compose === "docker compose" || f.compose === "docker-compose" ? f.compose : undefined;
  if (!compose) problems.push("neither `docker compose` nor `docker-compose` is installed");
  else notes.push(compose);
  if (f.path === "missing") {
    if (opts.requirePath) problems.push(`${env.path} does not exist`);
  } else if (!f.writable) problems.push(`${env.path} is not writable by this user`);
  if (f.diskFreeKb !== undefined) {
    notes.push(`${(f.diskFreeKb / 1024 / 1024).toFixed(1)} GB free`);
    if (f.diskFreeKb < 1024 * 1024)
      problems.push(`only ${Math.round(f.diskFreeKb / 1024)} MB free under ${env.path}`);
  }
  if (envFile) {
    const file = `${env.path.replace(/\/+$/, "")}/${envFile.name}`;
    if (f.env === "missing")
      problems.push(`${file} does not exist (the operator creates it; deploy-kit never writes it)`);
    else if (f.env === "unreadable")
      problems.push(`${file} is not readable by this user, so compose cannot read it`);
    if (f.envMode && f.envMode !== "600" && f.envMode !== "400")
      warnings.push(`${file} has mode ${f.envMode}; it holds secrets: chmod 600 it`);
    if (f.env === "present") {
      const absent = envFile["required-keys"].filter((k) => !f.envKeys.includes(k));
      if (absent.length) problems.push(`${file} lacks required key(s): ${absent.join(", ")}`);
      else if (envFile["required-keys"].length)
        notes.push(`${envFile.name}: ${envFile["required-keys"].length} required key(s) present`);
    }
  }
  return { alias: remote.alias, compose, problems, warnings, notes };
}
