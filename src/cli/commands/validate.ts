import { checkRemote } from "../../validate/remote.js";
import { configSections } from "../../validate/summary.js";
import { renderSections } from "../format.js";
import { SSH_FLAGS, sshSecrets } from "../remote.js";
import { type Command, EXIT } from "../types.js";

export const validateCommand: Command = {
  summary: "Check deploy-kit.yml (and, with --remote, every host) without deploying",
  usage: "deploy-kit validate [--env E] [--remote] [--ssh-key FILE] [--known-hosts FILE]",
  details: [
    "Parses and validates the config: every problem with its dotted path and line:column.",
    "--remote also connects to each host (pinned host keys) and checks docker, compose, the",
    "deploy path, disk and the env-file's mode and key NAMES (values are never read).",
    "Changes nothing anywhere.",
  ],
  options: {
    remote: { type: "boolean", description: "also connect to the hosts and check them" },
    ...SSH_FLAGS,
  },
  async run(ctx) {
    const { config, file } = await ctx.config();
    const only = ctx.string("env");
    const names = only ? [only] : Object.keys(config.environments);
    ctx.log.info(`${file}: valid (${Object.keys(config.environments).length} environment(s))`);
    if (!ctx.bool("remote")) {
      ctx.emit({ ok: true, valid: true, file, environments: Object.keys(config.environments) }, () =>
        ctx.print(renderSections(`${file}: valid`, configSections(config, only))),
      );
      return EXIT.ok;
    }
    const results = await checkRemote({
      config,
      file,
      environments: names,
      ...sshSecrets(ctx),
      log: ctx.log,
    });
    ctx.emit(
      {
        ok: true,
        valid: true,
        file,
        environments: Object.keys(config.environments),
        hosts: results.flatMap((r) =>
          r.hosts.map((h) => ({ environment: r.environment, alias: h.alias, notes: h.notes })),
        ),
      },
      () => {
        ctx.print(renderSections(`${file}: valid`, configSections(config, only)));
        ctx.print("");
        for (const r of results)
          for (const h of r.hosts) ctx.print(`${r.environment}/${h.alias}: ok (${h.notes.join(", ")})`);
      },
    );
    return EXIT.ok;
  },
};
