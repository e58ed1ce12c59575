#!/usr/bin/env node
// Cut a deploy-kit release from a clean checkout (see CHANGELOG.md and workflows/README.md):
//
//   npm run release -- 1.2.0 [--skip-tests] [--push] [--remote origin] [--out DIR]
//       refuses a non-semver version, an existing tag, a dirty tree or a failing check
//       (check:dist, lint, and test:unit unless --skip-tests); then moves CHANGELOG's Unreleased
//       section under 1.2.0, bumps package.json, regenerates ghes/, commits "release v1.2.0",
//       tags v1.2.0 and moves v1 and v1.2 to it, and writes the notes, the npm tarball and the
//       GHES workflows to DIR (default .release/). Pushes the branch and the tags only with
//       --push; the pushed tag runs .github/workflows/release.yml, which publishes the GitHub Release.
//   node scripts/release.mjs notes 1.2.0       the release notes of the tag v1.2.0, on stdout
//   node scripts/release.mjs ghes 1.2.0 [--repository owner/name] [--out DIR]
//       the GHES workflows for a release (for a mirror under another name, say which)
//
// Runs in the repository of the current directory.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  CHANGELOG_HEAD,
  compareVersions,
  ghesWorkflow,
  parseVersion,
  REUSABLE,
  releaseChangelog,
  releaseNotes,
  versionSection,
  workflowCompatibility,
} from "./release/lib.mjs";

class Refusal extends Error {}

const git = (...args) =>
  execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
const root = git("rev-parse", "--show-toplevel");
const file = (...p) => join(root, ...p);
const read = (p) => readFileSync(file(p), "utf8");

function repositoryName() {
  const url = JSON.parse(read("package.json")).repository?.url ?? "";
  return /github\.com[/:]([^/]+\/[^/.]+)/.exec(url)?.[1] ?? "deploy-kit/deploy-kit";
}

/** Every vX.Y.Z tag, parsed. */
function releaseTags() {
  return git("tag", "--list", "v*.*.*").split("\n").map(parseVersion).filter(Boolean);
}

/** The newest release before `v`: the base of the changelog link and the compatibility report. */
function previousTag(v) {
  const older = releaseTags().filter((t) => compareVersions(t, v) < 0);
  return older.sort(compareVersions).at(-1)?.tag;
}

function reusableAt(ref) {
  const out = {};
  for (const name of REUSABLE) {
    try {
      out[name] = ref ? git("show", `${ref}:.github/workflows/${name}`) : read(`.github/workflows/${name}`);
    } catch {}
  }
  return out;
}

function notesFor(v, { at } = {}) {
  const changes = versionSection(read("CHANGELOG.md"), v.version);
  if (changes === null) throw new Refusal(`CHANGELOG.md has no section for ${v.version}.`);
  const prev = previousTag(v);
  return releaseNotes({
    version: v.version,
    repository: repositoryName(),
    changes,
    previousTag: prev,
    compatibility: workflowCompatibility(prev ? reusableAt(prev) : {}, reusableAt(at)),
  });
}

function writeGhes(v, { repository = repositoryName(), out = file("ghes") } = {}) {
  mkdirSync(out, { recursive: true });
  for (const name of REUSABLE) {
    const text = read(`.github/workflows/${name}`);
    writeFileSync(join(out, name), ghesWorkflow(text, { name, repository, tag: v.tag }));
  }
  return out;
}

function check(script) {
  console.error(`release: npm run ${script}`);
  try {
    execFileSync("npm", ["run", "--silent", script], { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
  } catch {
    throw new Refusal(`npm run ${script} failed: fix it first; nothing was changed.`);
  }
}

/** `"version": "…"` rewritten in place, so the file keeps its formatting. */
function bumpVersion(path, from, to, count) {
  const text = read(path);
  let n = 0;
  const next = text.replace(/("version": ")([^"]+)(")/g, (all, a, old, b) => {
    if (n >= count || old !== from) return all;
    n++;
    return `${a}${to}${b}`;
  });
  writeFileSync(file(path), next);
}

/** Docs that name a release (the schema URL, pinned examples) name this one. */
function currentDocs(v) {
  const docs = ["README.md", "workflows/README.md", "docs/cli.md"];
  for (const doc of docs) {
    const text = read(doc);
    const next = text
      .replace(/(raw\.githubusercontent\.com\/[^/\s]+\/[^/\s]+\/)v\d+\.\d+\.\d+\//g, `$1${v.tag}/`)
      .replace(/(@deploy-kit\/cli@)\d+\.\d+\.\d+/g, `$1${v.version}`)
      .replace(/(deploy-kit\/deploy-kit\/[\w./-]+@)v\d+\.\d+\.\d+/g, `$1${v.tag}`);
    if (next !== text) writeFileSync(file(doc), next);
  }
  return docs;
}

function release(v, opts) {
  if (git("status", "--porcelain"))
    throw new Refusal("the working tree is not clean: commit or stash first.");
  if (releaseTags().some((t) => t.tag === v.tag)) throw new Refusal(`tag ${v.tag} already exists.`);
  const pkg = JSON.parse(read("package.json"));
  const current = parseVersion(pkg.version);
  if (current && compareVersions(v, current) < 0)
    throw new Refusal(`${v.version} is lower than package.json's ${pkg.version}.`);
  if (opts.push && git("ls-remote", "--tags", opts.remote, `refs/tags/${v.tag}`))
    throw new Refusal(`${opts.remote} already has the tag ${v.tag}.`);
  let changelog;
  try {
    changelog = read("CHANGELOG.md");
  } catch {
    throw new Refusal(`there is no CHANGELOG.md: start one with\n${CHANGELOG_HEAD}\n## [Unreleased]\n`);
  }
  const prev = previousTag(v);
  let next;
  try {
    next = releaseChangelog(changelog, {
      version: v.version,
      date: new Date().toISOString().slice(0, 10),
      repository: repositoryName(),
      previousTag: prev,
    });
  } catch (e) {
    throw new Refusal(e.message);
  }

  check("check:dist");
  check("lint");
  if (!opts["skip-tests"]) check("test:unit");

  writeFileSync(file("CHANGELOG.md"), next);
  bumpVersion("package.json", pkg.version, v.version, 1);
  // package-lock.json names the root package's version twice (top level and packages[""]).
  bumpVersion("package-lock.json", pkg.version, v.version, 2);
  writeGhes(v);
  const docs = currentDocs(v);
  git("add", "--", "CHANGELOG.md", "package.json", "package-lock.json", "ghes", ...docs);
  git("commit", "--quiet", "-m", `release ${v.tag}`);
  git("tag", "-a", v.tag, "-m", `deploy-kit ${v.tag}`);
  // The moving tags callers pin (@v1, @v1.2): lightweight, re-pointed at every release.
  git("tag", "--force", v.majorTag, `${v.tag}^{commit}`);
  git("tag", "--force", v.minorTag, `${v.tag}^{commit}`);

  const out = resolve(opts.out ?? file(".release"));
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `notes-${v.tag}.md`), notesFor(v));
  const tarball = execFileSync("npm", ["pack", "--silent", "--pack-destination", out], {
    cwd: root,
    encoding: "utf8",
  })
    .trim()
    .split("\n")
    .at(-1);
  execFileSync("tar", ["-czf", join(out, "deploy-kit-ghes-workflows.tar.gz"), "-C", root, "ghes"]);
  console.log(
    `release: ${v.tag} tagged; ${v.majorTag} and ${v.minorTag} moved to it${prev ? ` (previous: ${prev})` : ""}.`,
  );
  console.log(`release: notes, ${tarball} and the GHES workflows are in ${out}`);

  if (opts.push) {
    const branch = git("symbolic-ref", "--short", "HEAD");
    git("push", "--quiet", opts.remote, `HEAD:refs/heads/${branch}`);
    git("push", "--quiet", opts.remote, `refs/tags/${v.tag}`);
    git("push", "--quiet", "--force", opts.remote, `refs/tags/${v.majorTag}`, `refs/tags/${v.minorTag}`);
    console.log(`release: pushed ${branch}, ${v.tag}, ${v.majorTag} and ${v.minorTag} to ${opts.remote}.`);
  } else {
    console.log(
      `release: nothing pushed. To publish: git push ${opts.remote} HEAD ${v.tag} && git push --force ${opts.remote} ${v.majorTag} ${v.minorTag}`,
    );
  }
}

function main(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      push: { type: "boolean" },
      "skip-tests": { type: "boolean" },
      remote: { type: "string", default: "origin" },
      out: { type: "string" },
      repository: { type: "string" },
    },
  });
  const [first, second] = positionals;
  const mode = first === "notes" || first === "ghes" ? first : "release";
  const text = mode === "release" ? first : second;
  const v = parseVersion(text);
  if (!v) {
    console.error(
      `release: "${text ?? ""}" is not a version: give MAJOR.MINOR.PATCH, e.g. npm run release -- 1.2.0`,
    );
    return 2;
  }
  if (mode === "notes") process.stdout.write(notesFor(v, { at: v.tag }));
  else if (mode === "ghes")
    console.log(writeGhes(v, { repository: values.repository, out: values.out && resolve(values.out) }));
  else release(v, values);
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  if (!(e instanceof Refusal)) throw e;
  console.error(`release: refused: ${e.message}`);
  process.exitCode = 1;
}
