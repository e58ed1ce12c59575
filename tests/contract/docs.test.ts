import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { cliDefinition, TOP_LEVEL_FLAGS } from "../../src/cli/index.js";
import { SSH_FLAGS } from "../../src/cli/remote.js";
import { REPO } from "../support/runner.js";

const read = (p: string) => readFileSync(join(REPO, p), "utf8");
const { commands, common } = cliDefinition();

/** Flags named in docs/cli.md that belong to other programs (npm, scripts/build.mjs), not to deploy-kit. */
const NOT_OURS = new Set(["--global", "--root"]);

/** `--flag` tokens in a text (not the tail of a longer word such as `a--b`). */
const flagsIn = (text: string) => new Set([...text.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]));

/** The text under each `#`-heading, keyed by the heading's text. */
function sections(md: string, level: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = md.split(new RegExp(`^${level} `, "m")).slice(1);
  for (const p of parts) {
    const nl = p.indexOf("\n");
    out.set(p.slice(0, nl).trim(), p.slice(nl + 1).split(/^#{1,3} /m)[0]!);
  }
  return out;
}

/** A command's documentation: its `### \`name\`` section and its row of the Commands table. */
function commandDoc(md: string, name: string): string {
  const section = sections(md, "###").get(`\`${name}\``) ?? "";
  const rows = md.split("\n").filter((l) => new RegExp(`^\\| \`${name}( |\`)`).test(l));
  return `${section}\n${rows.join("\n")}`;
}

/** Compare the CLI's own flag tables with a docs/cli.md text; every finding as one line. */
function cliDocProblems(md: string): string[] {
  const problems: string[] = [];
  const all = new Set<string>(TOP_LEVEL_FLAGS);
  for (const c of Object.values(commands)) for (const k of Object.keys(c.options ?? {})) all.add(`--${k}`);
  for (const k of Object.keys(common)) all.add(`--${k}`);
  for (const f of flagsIn(md))
    if (!all.has(f) && !NOT_OURS.has(f)) problems.push(`docs/cli.md names ${f}, which no command takes`);

  const h2 = sections(md, "##");
  const commonDoc = h2.get("Flags every command takes") ?? "";
  for (const [k, v] of Object.entries(common)) {
    if (!commonDoc.includes(`--${k}`))
      problems.push(`common flag --${k} is not in "Flags every command takes"`);
    if (v.short && !commonDoc.includes(`-${v.short},`))
      problems.push(`common flag -${v.short} is undocumented`);
  }
  const sshDoc = h2.get("SSH: key and host keys") ?? "";
  for (const k of Object.keys(SSH_FLAGS))
    if (!sshDoc.includes(`--${k}`)) problems.push(`--${k} is not in "SSH: key and host keys"`);
  for (const f of TOP_LEVEL_FLAGS) if (!flagsIn(md).has(f)) problems.push(`deploy-kit ${f} is undocumented`);

  for (const [name, c] of Object.entries(commands)) {
    const doc = commandDoc(md, name);
    if (!doc.trim()) {
      problems.push(`command ${name} is undocumented`);
      continue;
    }
    const own = Object.keys(c.options ?? {}).filter((k) => !(k in SSH_FLAGS));
    for (const k of own) if (!flagsIn(doc).has(`--${k}`)) problems.push(`${name} --${k} is undocumented`);
    const takes = new Set([...Object.keys(c.options ?? {}), ...Object.keys(common)].map((k) => `--${k}`));
    for (const f of flagsIn(doc))
      if (all.has(f) && !takes.has(f)) problems.push(`${name}'s docs name ${f}, which ${name} does not take`);
  }
  return problems;
}

type ActionMeta = { inputs?: Record<string, unknown>; outputs?: Record<string, unknown> };
const actions: Record<string, ActionMeta> = Object.fromEntries([
  ...readdirSync(join(REPO, "actions"), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(REPO, "actions", d.name, "action.yml")))
    .map((d) => [d.name, parse(read(`actions/${d.name}/action.yml`)) as ActionMeta]),
  ["deploy", parse(read("action.yml")) as ActionMeta],
]);

/** Steps in the docs' YAML examples that use a kit action: each `with:` key must be an input of it. */
function exampleInputProblems(md: string, file: string): string[] {
  const problems: string[] = [];
  for (const [, block] of md.matchAll(/```ya?ml\n([\s\S]*?)```/g)) {
    let doc: unknown;
    try {
      doc = parse(block!);
    } catch {
      continue;
    }
    const steps = (Array.isArray(doc) ? doc : []) as { uses?: string; with?: Record<string, unknown> }[];
    for (const s of steps) {
      const m = /deploy-kit\/(?:actions\/([a-z-]+)|(deploy))@/.exec(s.uses ?? "");
      if (!m) continue;
      const name = m[1] ?? m[2]!;
      const meta = actions[name];
      if (!meta) {
        problems.push(`${file}: ${s.uses}: no such action`);
        continue;
      }
      for (const k of Object.keys(s.with ?? {}))
        if (!(k in (meta.inputs ?? {}))) problems.push(`${file}: ${name} has no input "${k}"`);
    }
  }
  return problems;
}

/** README's "Beyond the contract" table: every input and output it names exists on every action of its row. */
function addedInputsProblems(md: string): string[] {
  const problems: string[] = [];
  const table = sections(md, "##").get("Beyond the contract: what deploy-kit adds") ?? "";
  const rows = table.split("\n").filter((l) => /^\| [a-z]/.test(l) && !l.startsWith("| action "));
  if (!rows.length) problems.push(`README.md: no "Beyond the contract" table`);
  for (const row of rows) {
    const [, who, added] = row.split("|").map((c) => c.trim());
    for (const name of who!.split(",").map((s) => s.trim())) {
      const meta = actions[name];
      if (!meta) {
        problems.push(`README.md: "${name}" is not an action`);
        continue;
      }
      for (const part of added!.split(";")) {
        const kind = /^\s*(inputs?|outputs?)\b/.exec(part)?.[1]?.startsWith("input") ? "inputs" : "outputs";
        for (const [, key] of part.matchAll(/`([a-z-]+)`/g))
          if (!(key! in (meta[kind] ?? {})))
            problems.push(`README.md: ${name} has no ${kind.slice(0, -1)} "${key}"`);
      }
    }
  }
  return problems;
}

/** workflows/README.md: each reusable workflow's input table lists exactly its workflow_call inputs. */
function workflowInputProblems(md: string): string[] {
  const problems: string[] = [];
  for (const name of ["deploy-staging.yml", "deploy-production.yml", "rollback.yml"]) {
    const wf = parse(read(`.github/workflows/${name}`));
    const declared = Object.keys(wf.on.workflow_call.inputs ?? {}).sort();
    const doc = sections(md, "###").get(`\`${name}\``) ?? "";
    const documented = [
      ...new Set(
        doc
          .split("\n")
          .filter((l) => l.startsWith("| `"))
          .flatMap((l) => [...l.split("|")[1]!.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]!)),
      ),
    ].sort();
    for (const k of declared)
      if (!documented.includes(k)) problems.push(`${name}: input ${k} is undocumented`);
    for (const k of documented)
      if (!declared.includes(k)) problems.push(`${name}: documented input ${k} does not exist`);
  }
  return problems;
}

describe("docs/cli.md documents exactly the CLI's flags (from the CLI's own tables)", () => {
  const md = read("docs/cli.md");
  it("every flag of every command is documented where that command is, and every documented flag exists", () => {
    expect(cliDocProblems(md)).toEqual([]);
  });

  it("fails on an undocumented flag, a flag that does not exist, and a flag under the wrong command", () => {
    const broken = md
      .replace("| `--promote-only` |", "| `--promote-onyl` |")
      .replace("deploy-kit smoke --env staging --base-url", "deploy-kit smoke --env staging --to");
    expect(cliDocProblems(broken)).toEqual(
      expect.arrayContaining([
        "docs/cli.md names --promote-onyl, which no command takes",
        "build --promote-only is undocumented",
        "smoke's docs name --to, which smoke does not take",
        "smoke --base-url is undocumented",
      ]),
    );
  });
});

describe("README.md and workflows/README.md name only inputs that exist", () => {
  it("the actions' examples and the table of added inputs and outputs", () => {
    const readme = read("README.md");
    expect([
      ...exampleInputProblems(readme, "README.md"),
      ...exampleInputProblems(read("workflows/README.md"), "workflows/README.md"),
      ...addedInputsProblems(readme),
    ]).toEqual([]);
  });

  it("the reusable workflows' input tables", () => {
    expect(workflowInputProblems(read("workflows/README.md"))).toEqual([]);
  });

  it("the checks fail on a misspelt input, in an example, the table or a workflow's table", () => {
    const readme = read("README.md");
    expect(
      exampleInputProblems(
        readme.replace("    environment: staging   #", "    enviroment: staging   #"),
        "R",
      ),
    ).toEqual(['R: validate-config has no input "enviroment"']);
    expect(addedInputsProblems(readme.replace("inputs `allow-build`", "inputs `allow-bild`"))).toEqual([
      'README.md: build-image has no input "allow-bild"',
    ]);
    const wf = read("workflows/README.md").replace("| `min-soak` |", "| `min-soka` |");
    expect(workflowInputProblems(wf)).toEqual([
      "deploy-production.yml: input min-soak is undocumented",
      "deploy-production.yml: documented input min-soka does not exist",
    ]);
  });
});

describe("the JSON Schema's SchemaStore catalog entry", () => {
  it("matches deploy-kit.yml and deploy-kit.yaml and points at the schema of a release", () => {
    const entry = JSON.parse(read("schema/schemastore-catalog-entry.json"));
    expect(entry.fileMatch).toEqual(["deploy-kit.yml", "deploy-kit.yaml"]);
    const m =
      /^https:\/\/raw\.githubusercontent\.com\/deploy-kit\/deploy-kit\/(v\d+(?:\.\d+\.\d+)?)\/(.+)$/.exec(
        entry.url,
      );
    expect(m, entry.url).toBeTruthy();
    expect(existsSync(join(REPO, m![2]!))).toBe(true);
    expect(entry.name && entry.description).toBeTruthy();
  });

  it("the README's yaml-language-server line names the same file at a release tag", () => {
    expect(read("README.md")).toMatch(
      /# yaml-language-server: \$schema=https:\/\/raw\.githubusercontent\.com\/deploy-kit\/deploy-kit\/v\d+\.\d+\.\d+\/schema\/deploy-kit\.schema\.json/,
    );
  });
});

describe("install commands name the package that installs", () => {
  it("README.md and docs/cli.md say @deploy-kit/cli, as package.json does", () => {
    const name = JSON.parse(read("package.json")).name;
    expect(name).toBe("@deploy-kit/cli");
    for (const doc of ["README.md", "docs/cli.md"]) {
      const text = read(doc);
      expect(text, doc).toContain(`npm install --global ${name}`);
      expect(text, doc).toContain(`npx ${name}`);
      for (const [cmd] of text.matchAll(/\b(?:npx|npm install --global|npm i -g)\s+([^\s`]+)/g))
        expect(cmd, `${doc}: ${cmd}`).toMatch(new RegExp(`\\s${name.replace("/", "\\/")}(@[\\d.]+)?$`));
    }
  });
});
