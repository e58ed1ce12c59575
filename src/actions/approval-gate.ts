import { ConfigError } from "../core/errors.js";
import { input, readInputs, setOutputs } from "../core/inputs.js";
import type { Log } from "../core/log.js";
import type { ActionSpec } from "../core/run-action.js";
import { checkApprovalGate } from "../pipeline/promote.js";

export const inputs = {
  environment: input.string(),
  "github-token": input.string(),
  "unsafe-deploy-without-approval": input.bool(false),
};

async function main(log: Log): Promise<void> {
  const i = readInputs(inputs);
  if (!i.environment || !i["github-token"]) {
    throw new ConfigError("environment and github-token are required.", {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a workflow expression for the user to copy
      hint: "Pass the environment the gated job names, and github-token: ${{ github.token }} with `permissions: actions: read`.",
    });
  }
  const protection = await checkApprovalGate(
    {
      token: i["github-token"],
      baseUrl: process.env.GITHUB_API_URL,
      environment: i.environment,
      unsafeWithoutApproval: i["unsafe-deploy-without-approval"],
    },
    log,
  );
  setOutputs({ reviewers: protection.reviewers.join(", ") });
}

export default { main } satisfies ActionSpec;
