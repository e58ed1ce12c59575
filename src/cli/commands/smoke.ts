import { selectEnvironment } from "../../config/load.js";
import { runSmokeTests, smokeOptions } from "../../smoke/run.js";
import { smokeFailureMessage, smokeSections } from "../../smoke/summary.js";
import { renderSections } from "../format.js";
import { SSH_FLAGS, withHosts } from "../remote.js";
import { type Command, EXIT } from "../types.js";

export const smokeCommand: Command = {
  summary: "Run the environment's smoke checks against what is live now",
  usage: "deploy-kit smoke --env E [--expect-version SHA] [--base-url URL]",
  details: [
    "Each check of smoke.checks, retried as configured. --expect-version makes every",
    "version-field check compare with that commit. With `from: host` the requests run on the",
    "first host over SSH (for endpoints only reachable there). Changes nothing.",
  ],
  options: {
    "expect-version": {
      type: "string",
      value: "SHA",
      description: "commit the version-field checks must report",
    },
    "base-url": { type: "string", value: "URL", description: "override smoke.base-url / url" },
    ...SSH_FLAGS,
  },
  async run(ctx) {
    const environment = ctx.environment();
    const { config } = await ctx.config();
    const env = selectEnvironment(config, environment);
    const overrides = { baseUrl: ctx.string("base-url"), expectVersion: ctx.string("expect-version") };
    const outcome =
      env.smoke?.from === "host"
        ? await withHosts(
            ctx,
            ({ remotes }) =>
              runSmokeTests(smokeOptions(env, { ...overrides, remote: remotes[0] }, ctx.io.env), ctx.log),
            { only: [env.hosts[0]!.alias] },
          )
        : await runSmokeTests(smokeOptions(env, overrides, ctx.io.env), ctx.log);
    const from = env.smoke?.from === "host" ? `host ${env.hosts[0]!.alias}` : "this machine";
    if (!outcome.passed) ctx.log.error(smokeFailureMessage(outcome));
    ctx.emit({ ok: outcome.passed, environment, passed: outcome.passed, results: outcome.results }, () =>
      ctx.print(
        renderSections(
          `smoke test on ${environment}: ${outcome.passed ? "passed" : "FAILED"}`,
          smokeSections(outcome, { from, expectVersion: overrides.expectVersion }),
        ),
      ),
    );
    return outcome.passed ? EXIT.ok : EXIT.failed;
  },
};
