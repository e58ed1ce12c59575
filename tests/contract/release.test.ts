import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
// @ts-expect-error: a plain .mjs module of the release tooling, without type declarations
import * as lib from "../../scripts/release/lib.mjs";
import { REPO } from "../support/runner.js";

const SCRIPT = join(REPO, "scripts/release.mjs");
const tmp = mkdtempSync(join(tmpdir(), "dk-release-"));
const remote = join(tmp, "remote.git");
const clone = join(tmp, "clone");

const git = (...args: string[]) =>
  execFileSync("git", args, { cwd: clone, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
const commitOf = (ref: string, cwd = clone) =>
  execFileSync("git", ["rev-parse", `${ref}^{commit}`], { cwd, encoding: "utf8" }).trim();
const release = (...args: string[]) =>
  spawnSync(process.execPath, [SCRIPT, ...args], { cwd: clone, encoding: "utf8" });
const read = (p: string) => readFileSync(join(clone, p), "utf8");

/** The project's checks, made instant (or failing) in the scratch clone: the script's own logic is under test. */
function setChecks(checks: Record<string, string>, message: string) {
  const pkg = JSON.parse(read("package.json"));
  Object.assign(pkg.scripts, checks);
  writeFileSync(join(clone, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
  git("commit", "--quiet", "-am", message);
}
const PASS = { "check:dist": "node -e 0", lint: "node -e 0", "test:unit": "node -e 0" };

function addUnreleased(lines: string) {
  const text = read("CHANGELOG.md").replace("## [Unreleased]\n", `## [Unreleased]\n\n${lines}\n`);
  writeFileSync(join(clone, "CHANGELOG.md"), text);
  git("commit", "--quiet", "-am", "changelog");
}

beforeAll(() => {
  execFileSync("git", ["init", "--quiet", "--bare", remote]);
  // The committed tree of this checkout (uncommitted edits are not part of a release).
  execFileSync("git", ["clone", "--quiet", "--no-hardlinks", REPO, clone]);
  git("config", "user.email", "release-test@example.com");
  git("config", "user.name", "release test");
  git("remote", "set-url", "origin", remote);
  git("checkout", "--quiet", "-B", "main");
  git("push", "--quiet", "origin", "main");
  setChecks(PASS, "instant checks");
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("npm run release -- X.Y.Z, in a scratch clone with a local bare remote", () => {
  it("refuses a version that is not MAJOR.MINOR.PATCH (exit 2), changing nothing", () => {
    for (const bad of ["1.2", "v1.2.0-rc.1", "latest", "01.2.0"]) {
      const r = release(bad);
      expect(r.status, bad).toBe(2);
      expect(r.stderr).toContain("is not a version");
    }
    expect(git("tag", "--list")).toBe("");
  });

  it("refuses a dirty tree", () => {
    writeFileSync(join(clone, "README.md"), `${read("README.md")}\nlocal edit\n`);
    const r = release("0.2.0", "--skip-tests");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("refused: the working tree is not clean");
    git("checkout", "README.md");
  });

  it("refuses a failing check, before touching anything", () => {
    const head = commitOf("HEAD");
    setChecks({ lint: "node -e process.exit(1)" }, "a failing lint");
    const r = release("0.2.0", "--skip-tests");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("refused: npm run lint failed");
    expect(git("status", "--porcelain")).toBe("");
    expect(git("tag", "--list")).toBe("");
    git("reset", "--quiet", "--hard", head);
  });

  it("runs the test suite unless --skip-tests", () => {
    const head = commitOf("HEAD");
    setChecks({ "test:unit": "node -e process.exit(1)" }, "a failing test suite");
    expect(release("0.2.0").stderr).toContain("refused: npm run test:unit failed");
    git("reset", "--quiet", "--hard", head);
  });

  it("v0.2.0: CHANGELOG, version, ghes/, the tag, v0 and v0.2 moved, notes and tarball, pushed", () => {
    const out = join(tmp, "out-0.2.0");
    const r = release("0.2.0", "--push", "--out", out);
    expect(r.status, r.stderr).toBe(0);
    const tagged = commitOf("v0.2.0");
    expect(commitOf("HEAD")).toBe(tagged);
    expect(commitOf("v0")).toBe(tagged);
    expect(commitOf("v0.2")).toBe(tagged);
    expect(git("log", "-1", "--format=%s")).toBe("release v0.2.0");
    expect(git("status", "--porcelain")).toBe("");

    // The remote has the branch and all three tags at the release commit.
    for (const ref of ["main", "v0.2.0", "v0", "v0.2"]) expect(commitOf(ref, remote), ref).toBe(tagged);

    const changelog = read("CHANGELOG.md");
    expect(changelog).toMatch(/## \[Unreleased\]\n\n## \[0\.2\.0\] - \d{4}-\d{2}-\d{2}\n\n### Added/);
    expect(lib.unreleasedSection(changelog)).toBe("");
    expect(changelog).toContain(
      "[Unreleased]: https://github.com/deploy-kit/deploy-kit/compare/v0.2.0...HEAD\n[0.2.0]: https://github.com/deploy-kit/deploy-kit/releases/tag/v0.2.0",
    );
    expect(JSON.parse(read("package.json")).version).toBe("0.2.0");
    const lock = JSON.parse(read("package-lock.json"));
    expect([lock.version, lock.packages[""].version]).toEqual(["0.2.0", "0.2.0"]);

    const ghes = read("ghes/deploy-staging.yml");
    expect(ghes).toContain("uses: deploy-kit/deploy-kit/actions/build-image@v0.2.0");
    expect(ghes).toContain("uses: deploy-kit/deploy-kit/deploy@v0.2.0");
    expect(ghes).not.toMatch(/uses:\s*\$\//);

    const notes = readFileSync(join(out, "notes-v0.2.0.md"), "utf8");
    expect(notes).toContain("## What changed\n\n### Added");
    expect(notes).toContain("Callers pinned to `@v0` (or `@v0.2`) get this release");
    expect(notes).toContain("`deploy-staging.yml`: new in this release.");
    expect(notes).toContain("npm install --global @deploy-kit/cli@0.2.0");
    expect(notes).toContain(
      "raw.githubusercontent.com/deploy-kit/deploy-kit/v0.2.0/schema/deploy-kit.schema.json",
    );
    expect(readdirSync(out).sort()).toEqual([
      "deploy-kit-cli-0.2.0.tgz",
      "deploy-kit-ghes-workflows.tar.gz",
      "notes-v0.2.0.md",
    ]);
    // The notes the workflow publishes for the pushed tag are the same.
    const fromTag = spawnSync(process.execPath, [SCRIPT, "notes", "0.2.0"], { cwd: clone, encoding: "utf8" });
    expect(fromTag.stdout).toBe(notes);
  });

  it("refuses a release the tag already names, and an empty Unreleased section", () => {
    expect(release("0.2.0", "--skip-tests").stderr).toContain("refused: tag v0.2.0 already exists");
    expect(release("0.2.1", "--skip-tests").stderr).toContain("Unreleased section is empty");
  });

  it("v0.2.1 moves v0 and v0.2 on; v0.2.0 stays; the notes compare with v0.2.0", () => {
    const first = commitOf("v0.2.0");
    addUnreleased("### Fixed\n\n- the rollback message names its target.");
    // A new optional input on one reusable workflow, and a removed output on another.
    const staging = read(".github/workflows/deploy-staging.yml").replace(
      "    inputs:\n",
      '    inputs:\n      extra:\n        description: An optional knob.\n        type: string\n        default: ""\n',
    );
    writeFileSync(join(clone, ".github/workflows/deploy-staging.yml"), staging);
    git("commit", "--quiet", "-am", "staging: an optional input");
    const out = join(tmp, "out-0.2.1");
    const r = release("0.2.1", "--push", "--out", out);
    expect(r.status, r.stderr).toBe(0);
    const second = commitOf("v0.2.1");
    expect(second).not.toBe(first);
    expect(commitOf("v0.2.0")).toBe(first);
    for (const ref of ["v0", "v0.2"]) {
      expect(commitOf(ref), ref).toBe(second);
      expect(commitOf(ref, remote), `${ref} on the remote`).toBe(second);
    }
    const notes = readFileSync(join(out, "notes-v0.2.1.md"), "utf8");
    expect(notes).toContain(
      "## What changed since v0.2.0\n\n### Fixed\n\n- the rollback message names its target.",
    );
    expect(notes).not.toContain("### Added");
    expect(notes).toContain("- `deploy-staging.yml`: new optional input `extra`.");
    expect(notes).toContain("- `rollback.yml`: inputs, secrets and outputs unchanged.");
    expect(read("CHANGELOG.md")).toContain(
      "[0.2.1]: https://github.com/deploy-kit/deploy-kit/compare/v0.2.0...v0.2.1",
    );
    expect(read("ghes/rollback.yml")).toContain("uses: deploy-kit/deploy-kit/actions/rollback@v0.2.1");
  });
});

describe("release notes: reusable workflow compatibility", () => {
  const wf = (call: object) => JSON.stringify({ on: { workflow_call: call } });
  it("flags removed inputs and secrets, new required ones and removed outputs as breaking", () => {
    const before = {
      "rollback.yml": wf({
        inputs: { a: { type: "string" }, b: { type: "string" } },
        secrets: { S: { required: false } },
        outputs: { x: { value: "" } },
      }),
    };
    const after = {
      "rollback.yml": wf({
        inputs: { a: { type: "string" }, c: { type: "string", required: true } },
        secrets: { S: { required: true } },
        outputs: {},
      }),
    };
    const r = lib.workflowCompatibility(before, after);
    expect(r.breaking).toBe(true);
    expect(r.lines).toEqual([
      "- `rollback.yml`: removed input `b` (**breaking**: callers passing it fail); new required input `c` (**breaking**); secret `S` is now required (**breaking**); removed output `x` (**breaking**).",
    ]);
    expect(lib.workflowCompatibility(before, before)).toEqual({
      lines: ["- `rollback.yml`: inputs, secrets and outputs unchanged."],
      breaking: false,
    });
  });
});

describe("the GHES variant of the reusable workflows", () => {
  it.each(lib.REUSABLE as string[])(
    "%s: every $/ reference becomes owner/repo/<path>@tag, nothing else changes",
    (name) => {
      const text = readFileSync(join(REPO, ".github/workflows", name), "utf8");
      const ghes = lib.ghesWorkflow(text, { name, repository: "acme/deploy-kit", tag: "v1.2.3" });
      const a = parse(text);
      const b = parse(ghes);
      const steps = (w: { jobs: Record<string, { steps?: { uses?: string }[] }> }) =>
        Object.values(w.jobs).flatMap((j) => (j.steps ?? []).map((s) => s.uses ?? ""));
      const expected = steps(a).map((u) => (u.startsWith("$/") ? `acme/deploy-kit/${u.slice(2)}@v1.2.3` : u));
      expect(steps(b)).toEqual(expected);
      expect(expected.some((u) => u.startsWith("acme/deploy-kit/"))).toBe(true);
      // Apart from the uses: lines, the workflow is the same document.
      const strip = (w: unknown) => JSON.stringify(w).replace(/"uses":"[^"]*"/g, "");
      expect(strip(b)).toBe(strip(a));
    },
  );

  it("refuses a file with nothing to rewrite (a check that can fail)", () => {
    expect(() => lib.ghesWorkflow("jobs: {}\n", { name: "x.yml", repository: "a/b", tag: "v1.0.0" })).toThrow(
      /no \$\/ reference/,
    );
  });

  it("committed ghes/ files, when present, reference an existing action at a release tag", () => {
    const dir = join(REPO, "ghes");
    if (!existsSync(dir)) return;
    for (const f of readdirSync(dir).filter((x) => x.endsWith(".yml"))) {
      for (const [, path, tag] of readFileSync(join(dir, f), "utf8").matchAll(
        /uses:\s*deploy-kit\/deploy-kit\/(\S+)@(\S+)/g,
      )) {
        expect(existsSync(join(REPO, path!, "action.yml")), `${f}: ${path}`).toBe(true);
        expect(lib.parseVersion(tag), `${f}: ${tag}`).toBeTruthy();
      }
    }
  });
});
