import type { Config } from "../config/schema.js";
import { ConfigError, type Problem } from "../core/errors.js";
import type { Log } from "../core/log.js";
import type { SummarySection } from "../core/summary.js";
import { openHosts } from "../deploy/hosts.js";
import { checkHost, type HostCheck } from "../deploy/preflight.js";

export interface RemoteCheckResult {
  environment: string;
  hosts: HostCheck[];
}

/**
 * validate-config's `check-remote`: connect to every host of the environments (pinned host keys,
 * one connection each) and check docker, compose, the deploy path, disk, and the env-file's mode
 * and key NAMES (never a value). Every finding on every host is reported; any problem fails with
 * one ConfigError listing them all.
 */
export async function checkRemote(opts: {
  config: Config;
  file: string;
  environments: string[];
  sshKey: string;
  knownHosts: string;
  log: Log;
}): Promise<RemoteCheckResult[]> {
  const results: RemoteCheckResult[] = [];
  const problems: Problem[] = [];
  for (const name of opts.environments) {
    const env = opts.config.environments[name]!;
    await opts.log.group(`Check hosts of ${name}`, async () => {
      const hosts = await openHosts(env, { sshKey: opts.sshKey, knownHosts: opts.knownHosts }, opts.log);
      try {
        const checks = await Promise.all(hosts.remotes.map((r) => checkHost(r, env, { requirePath: true })));
        for (const c of checks) {
          const bad = [...c.problems, ...c.warnings];
          if (bad.length === 0) opts.log.info(`${c.alias}: ok (${c.notes.join(", ")})`);
          for (const m of bad) {
            opts.log.error(`${name}/${c.alias}: ${m}`);
            problems.push({ path: `environments.${name} host ${c.alias}`, message: m, file: opts.file });
          }
        }
        results.push({ environment: name, hosts: checks });
      } finally {
        await hosts.close();
      }
    });
  }
  if (problems.length) {
    throw new ConfigError(`${problems.length} problem${problems.length === 1 ? "" : "s"} on the hosts.`, {
      problems,
      hint: "Prepare each host as listed (the env-file is the operator's: create it with `install -m 600 /dev/null <path>/.env` and add the keys).",
    });
  }
  return results;
}

export function remoteSections(results: RemoteCheckResult[]): SummarySection[] {
  return [
    {
      heading: "Hosts",
      table: {
        headers: ["environment", "host", "result", "details"],
        rows: results.flatMap((r) =>
          r.hosts.map((h) => [
            r.environment,
            h.alias,
            h.problems.length + h.warnings.length ? "❌" : "✅",
            [...h.problems, ...h.warnings, ...h.notes].join("; "),
          ]),
        ),
      },
    },
  ];
}
