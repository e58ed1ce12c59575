import { z } from "zod";
import { parseDuration } from "../config/duration.js";
import { loadConfig, selectEnvironment } from "../config/load.js";
import { ConfigError } from "../core/errors.js";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { writeSummary } from "../core/summary.js";
import { workspacePath } from "../core/workspace.js";
import { planPromotion, promotionSections } from "../pipeline/promote.js";

export const inputs = {
  config: input.string("deploy-kit.yml"),
  from: input.string("staging"),
  environment: input.string("production"),
  release: input.optional(),
  "min-soak": input
    .string("0")
    .transform((v) => parseDuration(v))
    .pipe(z.number({ message: 'expected a duration such as "24h", "90m" or a number of seconds' })),
  "github-token": input.string(),
  "unsafe-deploy-without-approval": input.bool(false),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  if (!i["github-token"]) {
    throw new ConfigError("github-token is required: promotion reads the environments' records on GitHub.", {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a workflow expression for the user to copy
      hint: "Pass github-token: ${{ github.token }} with `permissions: deployments: read, actions: read, contents: read`.",
    });
  }
  const file = workspacePath(i.config);
  const { config } = await loadConfig(file, { environment: i.environment });
  const env = selectEnvironment(config, i.environment);
  const plan = await planPromotion(
    {
      github: { token: i["github-token"], baseUrl: process.env.GITHUB_API_URL },
      from: i.from,
      to: i.environment,
      select: i.release,
      minSoakMs: i["min-soak"],
      unsafeWithoutApproval: i["unsafe-deploy-without-approval"],
      watchFiles: [env.compose.file, i.config],
    },
    log,
  );
  const r = plan.promotion.record;
  setOutputs({
    "image-ref": r["image-ref"],
    digest: r.digest,
    "git-sha": r["git-sha"] ?? "",
    "release-id": r["release-id"],
    "passed-at": plan.promotion.passedSince,
  });
  await writeSummary(
    `deploy-kit: promote ${r.digest.slice(0, 19)}… from ${plan.from} to ${plan.to}`,
    promotionSections(plan),
  );
}

export default { main } satisfies ActionSpec;
