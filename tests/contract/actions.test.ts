import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { NoOperationTraceWriter } from "@actions/workflow-parser";
import { convertActionTemplate, parseAction } from "@actions/workflow-parser/actions/index";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { REPO } from "../support/runner.js";

/** Every action metadata file users can reference, with the src/actions module that implements it. */
const metadata = [
  ...readdirSync(join(REPO, "actions"), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(REPO, "actions", d.name, "action.yml")))
    .map((d) => ({ file: `actions/${d.name}/action.yml`, module: d.name })),
  ...(existsSync(join(REPO, "action.yml"))
    ? [
        { file: "action.yml", module: "deploy" },
        { file: "deploy/action.yml", module: "deploy" },
      ]
    : []),
];

const EXPECTED = [
  "validate-config",
  "build-image",
  "migrate",
  "deploy-ssh",
  "smoke-test",
  "rollback",
  "promote",
  "approval-gate",
];

describe("action metadata contract", () => {
  it("lists the actions users were promised", () => {
    // The six of the contract, promote and approval-gate, plus the deploy action at both paths users write.
    expect(metadata.map((m) => m.module).sort()).toEqual([...EXPECTED, "deploy", "deploy"].sort());
  });

  describe.each(metadata)("$file", ({ file, module }) => {
    const text = readFileSync(join(REPO, file), "utf8");
    const meta = parse(text);

    it("parses and validates with @actions/workflow-parser's action schema", () => {
      const result = parseAction({ name: file, content: text }, new NoOperationTraceWriter());
      const errors = result.context.errors.getErrors().map((e) => e.message);
      expect(errors).toEqual([]);
      const template = convertActionTemplate(result.context, result.value!);
      expect(template.runs.using).toBe("node24");
    });

    it("points main (and post) at files that exist in dist", () => {
      for (const key of ["main", "post"] as const) {
        if (!meta.runs[key]) continue;
        const target = resolve(REPO, dirname(file), meta.runs[key]);
        expect(target.startsWith(join(REPO, "dist"))).toBe(true);
        expect(existsSync(target), `${file} runs.${key} -> ${target}`).toBe(true);
      }
    });

    it("declares exactly the inputs its zod schema reads", async () => {
      const mod = await import(`../../src/actions/${module}.ts`);
      expect(Object.keys(meta.inputs ?? {}).sort()).toEqual(Object.keys(mod.inputs).sort());
      for (const [name, def] of Object.entries<{ description?: string }>(meta.inputs ?? {})) {
        expect(def.description, `${file} input ${name} needs a description`).toBeTruthy();
      }
    });

    it("has a generated README that matches", () => {
      const readme = join(REPO, dirname(file) === "." ? "deploy" : dirname(file), "README.md");
      expect(existsSync(readme)).toBe(true);
      for (const name of Object.keys(meta.inputs ?? {}))
        expect(readFileSync(readme, "utf8")).toContain(`\`${name}\``);
    });
  });

  it("deploy/action.yml is the root action.yml with paths one level deeper", () => {
    if (!existsSync(join(REPO, "action.yml"))) return;
    const root = parse(readFileSync(join(REPO, "action.yml"), "utf8"));
    const sub = parse(readFileSync(join(REPO, "deploy/action.yml"), "utf8"));
    expect(sub.inputs).toEqual(root.inputs);
    expect(sub.outputs).toEqual(root.outputs);
    expect(sub.runs.main).toBe(`../${root.runs.main}`);
  });
});
