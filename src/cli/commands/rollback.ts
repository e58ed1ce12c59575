import { describeError } from "../../core/errors.js";
import { announce, rollbackFacts } from "../../deploy/announce.js";
import { withLockedEnvironment } from "../../deploy/operation.js";
import { rollbackRelease } from "../../deploy/release.js";
import { hostSections } from "../../deploy/summary.js";
import { renderSections } from "../format.js";
import { withInterruptRelease } from "../interrupt.js";
import { actor, REGISTRY_FLAGS, registryCredentials, SSH_FLAGS, sshSecrets } from "../remote.js";
import { type Command, EXIT } from "../types.js";

export const rollbackCommand: Command = {
  summary: "Put an earlier release back (default: the previous good one)",
  usage: "deploy-kit rollback --env E [--to ID|REF] [--restore-backup --confirm-restore DB@FILE]",
  details: [
    "Under the deploy lock, on every host: the target release's stored compose file and image",
    "become live again as a new ledger entry (<time>-rollback), held to the same health gate.",
    "Refuses, changing nothing, when a host's ledger has no such release. Images rolled back",
    "from are skipped by the default target, so repeated rollbacks walk back through history.",
    "--restore-backup also restores the database backup taken before the first migration",
    "after the target (destroys data written since; refused when the ledger names no backup),",
    "after a safety dump of the current database; --confirm-restore must name the database",
    "and the backup file (<database>@<file>): without it nothing changes and the value is printed.",
  ],
  options: {
    to: { type: "string", value: "ID|REF", description: "release id or image reference from the ledger" },
    "restore-backup": {
      type: "boolean",
      description: "also restore the database backup (data loss: opt-in)",
    },
    "confirm-restore": {
      type: "string",
      value: "DB@FILE",
      description: "with --restore-backup: the database and the backup file name",
    },
    ...SSH_FLAGS,
    ...REGISTRY_FLAGS,
  },
  async run(ctx) {
    const environment = ctx.environment();
    await ctx.config();
    const secrets = sshSecrets(ctx);
    const configFile = ctx.configFile();
    const registry = registryCredentials(ctx);
    const who = actor();
    const { config, env, result } = await withInterruptRelease(
      ctx,
      { configFile, environment, secrets },
      (state) =>
        withLockedEnvironment(
          { configFile, environment, secrets, log: ctx.log, state },
          async ({ config, env, compose, remotes }) => ({
            config,
            env,
            result: await rollbackRelease(remotes, {
              config,
              env,
              compose,
              registry,
              actor: who,
              log: ctx.log,
              to: ctx.string("to"),
              restoreBackup: ctx.bool("restore-backup"),
              confirmRestore: ctx.string("confirm-restore"),
            }),
          }),
        ),
    );
    await announce(config, ctx.log, rollbackFacts({ env, actor: who }, environment, result));
    if (result.error) ctx.log.error(describeError(result.error));
    ctx.emit(
      {
        ok: !result.error,
        environment,
        releaseId: result.releaseId,
        target: result.targetReleaseId,
        imageRef: result.imageRef,
        hosts: result.hosts,
        error: result.error?.message ?? null,
      },
      () =>
        ctx.print(
          renderSections(
            result.error
              ? `rollback on ${environment} FAILED`
              : `${environment} rolled back to ${result.targetReleaseId}`,
            hostSections(result.hosts, [`Image ${result.imageRef}, ledger entry ${result.releaseId}`]),
          ),
        ),
    );
    return result.error ? EXIT.failed : EXIT.ok;
  },
};
