import { loadConfig, selectEnvironment } from "../config/load.js";
import { ConfigError, DeployError } from "../core/errors.js";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { workspacePath } from "../core/workspace.js";
import { type OpenHosts, openHosts } from "../deploy/hosts.js";
import { runSmokeTests, smokeOptions } from "../smoke/run.js";
import { smokeFailureMessage, smokeSections } from "../smoke/summary.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  environment: input.string(),
  "expect-version": input.optional(),
  "base-url": input.optional(),
  "ssh-key": input.optional(),
  "known-hosts": input.optional(),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  if (!i.environment)
    throw new ConfigError("The environment input is required.", {
      hint: "Set `environment: staging` (a name from deploy-kit.yml).",
    });
  const { config } = await loadConfig(workspacePath(i.config), { environment: i.environment });
  const env = selectEnvironment(config, i.environment);
  const from = env.smoke?.from ?? "runner";
  let hosts: OpenHosts | undefined;
  if (from === "host") {
    if (!i["ssh-key"] || !i["known-hosts"]) {
      throw new ConfigError(
        "smoke.from is host, so the checks run on the server: ssh-key and known-hosts are required.",
        {
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a workflow expression for the user to copy
          hint: "Pass ssh-key: ${{ secrets.DEPLOY_SSH_KEY }} and known-hosts: ${{ secrets.KNOWN_HOSTS }} to this step.",
        },
      );
    }
    const first = env.hosts[0]!;
    hosts = await openHosts(env, { sshKey: i["ssh-key"], knownHosts: i["known-hosts"] }, log, {
      only: [first.alias],
    });
  }
  try {
    const expectVersion = i["expect-version"] ?? process.env.GITHUB_SHA;
    const opts = smokeOptions(env, { baseUrl: i["base-url"], expectVersion, remote: hosts?.remotes[0] });
    const outcome = await runSmokeTests(opts, log);
    setOutputs({ passed: outcome.passed, results: JSON.stringify(outcome.results) });
    await writeSummary(
      `deploy-kit: smoke ${outcome.passed ? "passed" : "FAILED"} on ${i.environment}`,
      smokeSections(outcome, {
        expectVersion,
        from: from === "host" ? `host ${hosts!.remotes[0]!.alias}` : "runner",
      }),
    );
    if (!outcome.passed) {
      throw new DeployError(smokeFailureMessage(outcome), {
        hint: "Look at the reasons above: a version mismatch means another release is answering (the deploy did not switch, or a proxy/cache serves the old one); a refused connection or timeout means the app is not up at that URL.",
      });
    }
  } finally {
    await hosts?.close();
  }
}

export default { main } satisfies ActionSpec;
