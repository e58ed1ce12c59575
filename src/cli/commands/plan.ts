import {
  type ComposeBin,
  type ComposeProject,
  composeUpScript,
  imageOverride,
} from "../../commands/compose.js";
import { pullImageScript } from "../../commands/docker.js";
import { backupStamp } from "../../commands/postgres.js";
import { activateReleaseScript, statePaths } from "../../commands/release.js";
import { selectEnvironment } from "../../config/load.js";
import type { Config, Environment } from "../../config/schema.js";
import { describeError } from "../../core/errors.js";
import { type ComposeSource, loadComposeSource } from "../../deploy/compose-file.js";
import { checkHost } from "../../deploy/preflight.js";
import { migrateOnFirstHost } from "../../migrate/action-flow.js";
import { migrateStage, oneOffScript } from "../../migrate/commands.js";
import { migrateService } from "../../migrate/run.js";
import { newReleaseId } from "../../release/ids.js";
import { lastGoodRelease, liveRelease, readLedger } from "../../release/ledger.js";
import { checkUrl } from "../../smoke/run.js";
import { hostLabel } from "../../validate/summary.js";
import { table } from "../format.js";
import { type Changes, changesBetween } from "../git.js";
import { type ChosenImage, chooseImage, IMAGE_FLAGS, promotionFlags } from "../image.js";
import { actor, REGISTRY_FLAGS, registryCredentials, SSH_FLAGS, withHosts } from "../remote.js";
import { type Command, EXIT } from "../types.js";
import { lockStatusScript, parseLockStatus } from "./lock.js";

export interface PlannedHost {
  alias: string;
  address: string;
  /** Read over SSH; absent with --offline. */
  live?: string | null;
  liveImage?: string | null;
  /** The commit of the live release, from the ledger. */
  liveSha?: string | null;
  rollbackTo?: string | null;
  lock?: string;
  compose?: ComposeBin;
  problems?: string[];
  warnings?: string[];
}

export interface PlannedStep {
  host: string;
  step: string;
  /** The exact script deploy-kit sends, or what it uploads. */
  script: string;
}

export interface Plan {
  environment: string;
  app: string;
  image: ChosenImage;
  releaseId: string;
  strategy: string;
  parallel: number | string;
  offline: boolean;
  hosts: PlannedHost[];
  override: string;
  migration: {
    host: string;
    service: string;
    command: string;
    backup: string | null;
    plan?: string;
    planError?: string;
  } | null;
  steps: PlannedStep[];
  smoke: { url: string; expect: string }[];
  /** What changes against the first host's live release: commits and compose/config diff. */
  changes?: Changes | { note: string };
}

/**
 * The remote steps of a deploy of `imageRef` as release `releaseId`, built by the same builders
 * the deploy runs (no I/O). `bin` is what the host has (docker compose when not known offline).
 */
export function plannedSteps(
  config: Config,
  env: Environment,
  compose: ComposeSource,
  imageRef: string,
  releaseId: string,
  hosts: { alias: string; compose?: ComposeBin }[],
  login?: { username: string },
): PlannedStep[] {
  const paths = statePaths(env.path);
  const steps: PlannedStep[] = [];
  const first = hosts[0]!;
  const m = env.migrate;
  if (m) {
    const stage = migrateStage(env.path, compose.name);
    const project: ComposeProject = {
      bin: first.compose ?? "docker compose",
      project: config.app,
      dir: env.path,
      files: [stage.composeFile, stage.override],
      projectDirectory: env.path,
    };
    steps.push({ host: first.alias, step: `upload ${stage.composeFile} and ${stage.override}`, script: "" });
    steps.push({ host: first.alias, step: "pull the new image", script: pullImageScript(imageRef, login) });
    if (m.backup)
      steps.push({
        host: first.alias,
        step: `back up the database (pg_dump -Fc in service ${m.backup.service}, verified with pg_restore --list) to ${env.path}/.deploy-kit/backups/`,
        script: "",
      });
    steps.push({
      host: first.alias,
      step: "run the migration in a one-off container of the NEW image",
      script: oneOffScript(project, {
        service: migrateService(env),
        command: m.command,
        name: `${config.app}-migrate-${backupStamp(new Date()).toLowerCase()}`,
        timeoutMs: m.timeout,
      }),
    });
  }
  for (const h of hosts) {
    const project: ComposeProject = {
      bin: h.compose ?? "docker compose",
      project: config.app,
      dir: env.path,
      files: [compose.name, ".deploy-kit/override.yml"],
    };
    const dir = paths.release(releaseId);
    steps.push(
      {
        host: h.alias,
        step: "pull the image unless the host has it",
        script: pullImageScript(imageRef, login),
      },
      {
        host: h.alias,
        step: `upload ${dir}/${compose.name} (${env.compose.file}) and ${dir}/override.yml`,
        script: "",
      },
      {
        host: h.alias,
        step: "switch to the new release files",
        script: activateReleaseScript(env.path, releaseId, compose.name),
      },
      { host: h.alias, step: "docker compose up", script: composeUpScript(project) },
      {
        host: h.alias,
        step: `wait until ${env.compose.service.join(", ")} run the new image and are healthy (up to ${env.health.timeout / 1000} s); else roll back`,
        script: "",
      },
      {
        host: h.alias,
        step: `record ${releaseId} in ${paths.ledger}; prune images beyond keep-releases ${env.rollback["keep-releases"]}`,
        script: "",
      },
    );
  }
  return steps;
}

export const planCommand: Command = {
  summary:
    "Show what a deploy would do (hosts, image, override, remote commands, migrations); changes nothing",
  usage: "deploy-kit plan --env E [--image REF | --git-sha SHA] [--offline] [--skip-migration-plan]",
  details: [
    "Prints the hosts with their live release, lock and readiness, the image (resolved to its",
    "digest), the compose override, every remote script the deploy would run (built by the same",
    "code), the migration plan and the smoke checks. Reads the hosts over SSH; the live release,",
    "the ledger and the database stay as they are. The migration plan runs migrate.plan-command",
    "in a one-off container of the new image on the first host (which pulls the image there and",
    "holds the deploy lock for that moment); --skip-migration-plan leaves it out.",
    "--offline: no network at all (no registry, no SSH): what the config and the repository say.",
  ],
  options: {
    ...IMAGE_FLAGS,
    offline: { type: "boolean", description: "do not contact the registry or the hosts" },
    "skip-migration-plan": {
      type: "boolean",
      description: "do not run migrate.plan-command on the first host",
    },
    ...SSH_FLAGS,
    ...REGISTRY_FLAGS,
  },
  async run(ctx) {
    const environment = ctx.environment();
    promotionFlags(ctx);
    const { config } = await ctx.config();
    const env = selectEnvironment(config, environment);
    const compose = await loadComposeSource(env);
    const offline = ctx.bool("offline");
    const image = await chooseImage(ctx, config, { offline });
    const registry = registryCredentials(ctx);
    const login = registry ? { username: registry.username } : undefined;
    const m = env.migrate;
    const plan: Plan = {
      environment,
      app: config.app,
      image,
      releaseId: "",
      strategy: env.strategy,
      parallel: env.parallel,
      offline,
      hosts: env.hosts.map((h) => ({ alias: h.alias, address: hostLabel(h) })),
      override: imageOverride(env.compose.service, image.imageRef, compose.version),
      migration: m
        ? {
            host: env.hosts[0]!.alias,
            service: migrateService(env),
            command: m.command,
            backup: m.backup ? `${m.backup.service}${m.backup.required ? " (required)" : ""}` : null,
          }
        : null,
      steps: [],
      smoke: (env.smoke?.checks ?? []).map((c) => ({
        url: checkUrl(env.smoke?.["base-url"] ?? env.url ?? "<no base url>", c.path),
        expect: [
          `status ${c.status ?? 200}`,
          c["version-field"] ? `${c["version-field"]} = ${image.gitSha ?? "(no --git-sha)"}` : "",
          c.body ? `body ~ /${c.body}/` : "",
        ]
          .filter(Boolean)
          .join(", "),
      })),
    };
    let taken: string[] = [];
    if (!offline) {
      await withHosts(ctx, async ({ remotes }) => {
        await Promise.all(
          remotes.map(async (r, i) => {
            const [check, ledger, lock] = await Promise.all([
              checkHost(r, env),
              readLedger(r, env.path, ctx.log),
              r.run({ what: "read the deploy lock", script: lockStatusScript(env.path) }),
            ]);
            const l = parseLockStatus(r.alias, lock.stdout);
            const live = liveRelease(ledger);
            taken = taken.concat(ledger.map((e) => e.id));
            Object.assign(plan.hosts[i]!, {
              live: live ? `${live.id} (${live.status})` : null,
              liveImage: live?.["image-ref"] ?? null,
              liveSha: live?.["git-sha"] ?? null,
              rollbackTo: lastGoodRelease(ledger)?.id ?? null,
              lock: l.held
                ? `held by ${l.owner ?? "?"} until ${l.leaseUntil ?? "?"}${l.expired ? " (expired)" : ""}`
                : "free",
              compose: check.compose,
              problems: check.problems,
              warnings: check.warnings,
            } satisfies Partial<PlannedHost>);
          }),
        );
        if (m?.["plan-command"] && !ctx.bool("skip-migration-plan") && plan.migration) {
          const report = await migrateOnFirstHost(
            {
              config,
              environment,
              env,
              remote: remotes[0]!,
              compose,
              imageRef: image.imageRef,
              login: registry,
              dryRun: true,
              gitSha: image.gitSha,
              actor: actor(),
            },
            ctx.log,
          );
          if (report.error) plan.migration.planError = describeError(report.error);
          else plan.migration.plan = report.outcome?.plan ?? "";
        }
      });
    }
    const liveSha = plan.hosts[0]?.liveSha;
    if (liveSha && image.gitSha && liveSha !== image.gitSha)
      plan.changes = await changesBetween(liveSha, image.gitSha, [env.compose.file, ctx.configFile()]);
    plan.releaseId = newReleaseId({ gitSha: image.gitSha, taken });
    plan.steps = plannedSteps(config, env, compose, image.imageRef, plan.releaseId, plan.hosts, login);
    const blocked = plan.hosts.some((h) => h.problems?.length);
    ctx.emit({ ok: !blocked, ...plan }, () => ctx.print(renderPlan(plan, env)));
    return blocked ? EXIT.config : EXIT.ok;
  },
};

function renderPlan(p: Plan, env: Environment): string {
  const out: string[] = [];
  out.push(
    `plan: deploy ${p.app} to ${p.environment}${p.offline ? " (offline: hosts not contacted)" : ""}`,
    "",
  );
  out.push(`image    ${p.image.imageRef}`, `         ${p.image.source}`);
  out.push(`release  ${p.releaseId} (id as of now)`);
  out.push(
    `strategy ${p.strategy}, ${p.parallel} host(s) at a time, health timeout ${env.health.timeout / 1000} s, rollback on failure: ${env.rollback["on-failure"] ? "yes" : "no"}`,
    "",
  );
  out.push(
    table(
      ["host", "address", "live release", "lock", "ready"],
      p.hosts.map((h) => [
        h.alias,
        h.address,
        h.live === undefined ? "?" : (h.live ?? "none (first release)"),
        h.lock ?? "?",
        h.problems === undefined
          ? "?"
          : h.problems.length
            ? `NO: ${h.problems.join("; ")}`
            : h.warnings?.length
              ? `yes (${h.warnings.join("; ")})`
              : "yes",
      ]),
    ),
    "",
  );
  if (p.changes) {
    const live = p.hosts[0]?.live ?? "the live release";
    if ("note" in p.changes) out.push(`changes since ${live}: ${p.changes.note}`, "");
    else {
      out.push(
        `commits since ${live} (${p.changes.commits.length}):`,
        ...indent(p.changes.commits.join("\n") || "(none)"),
      );
      out.push(
        `compose and deploy-kit.yml changes (env-file.required-keys live in deploy-kit.yml):`,
        ...indent(p.changes.diff || "(no change)"),
        "",
      );
    }
  }
  out.push(`compose override (${env.path}/.deploy-kit/override.yml):`, ...indent(p.override.trimEnd()), "");
  if (p.migration) {
    out.push(
      `migrations on ${p.migration.host}: \`${p.migration.command}\` in service ${p.migration.service}; backup: ${p.migration.backup ?? "none configured"}`,
    );
    if (p.migration.plan !== undefined)
      out.push("migration plan (dry-run):", ...indent(p.migration.plan || "(nothing printed)"));
    else if (p.migration.planError) out.push("migration plan FAILED:", ...indent(p.migration.planError));
    else
      out.push(
        `migration plan: ${env.migrate?.["plan-command"] ? "not run" : "no migrate.plan-command configured"}`,
      );
    out.push("");
  } else out.push("migrations: none configured", "");
  out.push("remote steps, in order:");
  p.steps.forEach((s, i) => {
    out.push(`${String(i + 1).padStart(3)}. [${s.host}] ${s.step}`);
    if (s.script) out.push(...indent(s.script, 7));
  });
  out.push("");
  if (p.smoke.length) {
    out.push("smoke checks after the deploy:");
    for (const s of p.smoke) out.push(`  GET ${s.url}: ${s.expect}`);
  } else out.push("smoke checks: none configured");
  const back = p.hosts.map((h) => h.rollbackTo).filter(Boolean);
  if (back.length) out.push("", `if anything fails: back to ${[...new Set(back)].join(", ")}`);
  return out.join("\n");
}

function indent(text: string, n = 4): string[] {
  return text.split("\n").map((l) => `${" ".repeat(n)}${l}`);
}
