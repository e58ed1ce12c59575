import { ConfigError, describeError } from "../../core/errors.js";
import { pipelineSections, pipelineTitle, runPipeline } from "../../pipeline/deploy.js";
import { renderSections } from "../format.js";
import { chooseImage, IMAGE_FLAGS, promotionFlags } from "../image.js";
import { withInterruptRelease } from "../interrupt.js";
import { actor, REGISTRY_FLAGS, registryCredentials, SSH_FLAGS, sshSecrets } from "../remote.js";
import { type Command, EXIT, UsageError } from "../types.js";

export const deployCommand: Command = {
  summary: "Deploy: migrate (backup first), deploy health-gated, smoke test, roll back on failure",
  usage: "deploy-kit deploy --env E [--image REF | --git-sha SHA] [--version V] [--require-backup]",
  details: [
    "The whole pipeline of the deploy action, under one lock and one SSH connection per host:",
    "migrations (after a verified backup when configured) on the first host, the release on",
    "every host (`parallel` at a time, each held to its health gate), the smoke checks expecting",
    "the deployed commit, and the previous release put back when any of it fails.",
    "Without --image, deploys the image `deploy-kit build` pushed for the commit (default HEAD).",
    "Exit 4 when it failed and was rolled back: the hosts serve the previous release.",
  ],
  options: {
    ...IMAGE_FLAGS,
    version: { type: "string", value: "V", description: "version recorded in the ledger" },
    "require-backup": {
      type: "boolean",
      description: "refuse to migrate without a configured, verified backup (production)",
    },
    ...SSH_FLAGS,
    ...REGISTRY_FLAGS,
  },
  async run(ctx) {
    const environment = ctx.environment();
    promotionFlags(ctx);
    const { config } = await ctx.config();
    const secrets = sshSecrets(ctx);
    const image = await chooseImage(ctx, config);
    ctx.log.info(`deploying ${image.imageRef} to ${environment} (${image.source})`);
    const configFile = ctx.configFile();
    const result = await withInterruptRelease(ctx, { configFile, environment, secrets }, (lockState) =>
      runPipeline({
        configFile,
        environment,
        imageRef: image.imageRef,
        gitSha: image.gitSha,
        version: ctx.string("version"),
        secrets,
        registry: registryCredentials(ctx),
        requireBackup: ctx.bool("require-backup"),
        actor: actor(),
        lockState,
        log: ctx.log,
      }),
    );
    const code = !result.error
      ? EXIT.ok
      : result.rolledBack
        ? EXIT.rolledBack
        : result.error instanceof ConfigError
          ? EXIT.config
          : EXIT.failed;
    if (result.error) ctx.log.error(describeError(result.error));
    ctx.emit(
      {
        ok: !result.error,
        exitCode: code,
        environment,
        releaseId: result.releaseId,
        imageRef: result.imageRef,
        rolledBack: result.rolledBack,
        url: result.url,
        phases: result.phases,
        hosts: result.deploy?.hosts ?? [],
        rollback: result.rollback
          ? {
              releaseId: result.rollback.releaseId,
              target: result.rollback.targetReleaseId,
              hosts: result.rollback.hosts,
            }
          : null,
        backup: result.migrate?.outcome?.backup?.path ?? null,
        error: result.error?.message ?? null,
      },
      () =>
        ctx.print(
          renderSections(
            pipelineTitle(result, environment).replace(/^deploy-kit: /, ""),
            pipelineSections(result),
          ),
        ),
    );
    return code;
  },
};

/** `deploy --from`, by the name people look for: production gets only what passed staging. */
export const promoteCommand: Command = {
  ...deployCommand,
  summary: "Promote: deploy to --env what passed on --from (read from its hosts' ledger), never a tag",
  usage:
    "deploy-kit promote --from staging --env production [--release ID|SHA|DIGEST] [--min-soak 24h] [--require-backup]",
  details: [
    "Reads the ledger of --from's hosts: by default the image --from serves now, which must have",
    "passed its health gate, digest check and smoke test there and not have been rolled back;",
    "--release names another (release id, commit or digest), refused with what the ledger says",
    "when it did not pass. --min-soak refuses until it has been passing that long and says when.",
    "Then the whole deploy pipeline, expecting that release's commit on the smoke version field.",
    "`deploy-kit plan --env production --from staging` shows the same choice without deploying.",
  ],
  async run(ctx) {
    if (!ctx.string("from"))
      throw new UsageError("promote needs --from ENV: the environment whose ledger says what passed");
    return deployCommand.run(ctx);
  },
};
