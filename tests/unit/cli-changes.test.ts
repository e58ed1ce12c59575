import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { changesArgv, changesBetween } from "../../src/cli/git.js";

test("the git commands are data", () => {
  expect(changesArgv("aaa", "bbb", ["compose.yml", "deploy-kit.yml"])).toEqual([
    ["git", "log", "--reverse", "--format=%h %s (%an)", "aaa..bbb"],
    ["git", "diff", "aaa", "bbb", "--", "compose.yml", "deploy-kit.yml"],
  ]);
});

test("commits since the live release and the compose/config diff, from a real repository", async () => {
  const repo = mkdtempSync(join(tmpdir(), "dk-changes-"));
  const git = (...a: string[]) =>
    execFileSync("git", ["-c", "user.name=Dev", "-c", "user.email=d@example.com", ...a], {
      cwd: repo,
      encoding: "utf8",
    }).trim();
  git("init", "-q");
  writeFileSync(join(repo, "compose.yml"), "services:\n  api: { image: x }\n");
  writeFileSync(join(repo, "deploy-kit.yml"), "env-file: { required-keys: [A] }\n");
  writeFileSync(join(repo, "app.py"), "print(1)\n");
  git("add", ".");
  git("commit", "-qm", "live release");
  const base = git("rev-parse", "HEAD");
  writeFileSync(join(repo, "app.py"), "print(2)\n");
  git("commit", "-qam", "change the app");
  writeFileSync(join(repo, "deploy-kit.yml"), "env-file: { required-keys: [A, NEW_SECRET] }\n");
  git("commit", "-qam", "need a new key");
  const head = git("rev-parse", "HEAD");
  const c = await changesBetween(base, head, ["compose.yml", "deploy-kit.yml"], repo);
  if ("note" in c) throw new Error(c.note);
  expect(c.commits.map((l) => l.replace(/^[0-9a-f]+ /, ""))).toEqual([
    "change the app (Dev)",
    "need a new key (Dev)",
  ]);
  expect(c.diff).toContain("+env-file: { required-keys: [A, NEW_SECRET] }");
  expect(c.diff).not.toContain("print(2)");
  const missing = await changesBetween(base, "f".repeat(40), ["compose.yml"], repo);
  expect(missing).toEqual({
    note: `this clone does not have both ${base.slice(0, 12)} and ffffffffffff (git fetch them to see the commits)`,
  });
});
