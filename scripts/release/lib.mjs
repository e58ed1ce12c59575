// The pure half of a deploy-kit release: versions, the CHANGELOG, the release notes and the GHES
// variant of the reusable workflows. No git, no files: scripts/release.mjs and the release
// workflow do the I/O, and tests/contract/release.test.ts drives both.
import { parse } from "yaml";

/** The reusable workflows (GitHub resolves them only in .github/workflows/). */
export const REUSABLE = ["deploy-staging.yml", "deploy-production.yml", "rollback.yml"];

/** "1.2.0" or "v1.2.0" -> { major, minor, patch, version: "1.2.0", tag: "v1.2.0" }; else null. */
export function parseVersion(text) {
  const m = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/.exec(String(text ?? "").trim());
  if (!m) return null;
  const [major, minor, patch] = m.slice(1).map(Number);
  const version = `${major}.${minor}.${patch}`;
  return {
    major,
    minor,
    patch,
    version,
    tag: `v${version}`,
    majorTag: `v${major}`,
    minorTag: `v${major}.${minor}`,
  };
}

export function compareVersions(a, b) {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

export const CHANGELOG_HEAD = `# Changelog

Every user-visible change of deploy-kit: the actions, the reusable workflows, the CLI
(\`@deploy-kit/cli\`) and the config file. The format is [Keep a Changelog](https://keepachangelog.com/en/1.1.0/),
and versions follow [Semantic Versioning](https://semver.org/spec/v2.0.0.html): a caller pinned to
\`@v1\` only ever gets changes that keep its workflows and \`deploy-kit.yml\` working.
\`npm run release -- X.Y.Z\` moves the Unreleased section under the new version.
`;

const UNRELEASED = /^## \[Unreleased\][^\n]*\n/m;
const NEXT_VERSION = /^## \[/m;
const LINKS = /^\[[^\]]+\]: \S+$/gm;

/** The text under `## [Unreleased]`, up to the next version (link references excluded). */
export function unreleasedSection(changelog) {
  const m = UNRELEASED.exec(changelog);
  if (!m) return null;
  const rest = changelog.slice(m.index + m[0].length);
  const end = NEXT_VERSION.exec(rest);
  return (end ? rest.slice(0, end.index) : rest).replace(LINKS, "").trim();
}

/** The text of one released version's section. */
export function versionSection(changelog, version) {
  const head = new RegExp(`^## \\[${version.replace(/\./g, "\\.")}\\][^\\n]*\\n`, "m").exec(changelog);
  if (!head) return null;
  const rest = changelog.slice(head.index + head[0].length);
  const end = NEXT_VERSION.exec(rest);
  return (end ? rest.slice(0, end.index) : rest).replace(LINKS, "").trim();
}

/**
 * Move Unreleased under `## [version] - date`, leave an empty Unreleased, and keep the compare
 * links at the bottom current. Throws when Unreleased says nothing: a release must say what changed.
 */
export function releaseChangelog(changelog, { version, date, repository, previousTag }) {
  const notes = unreleasedSection(changelog);
  if (notes === null) throw new Error("CHANGELOG.md has no `## [Unreleased]` section.");
  if (!notes)
    throw new Error("CHANGELOG.md's Unreleased section is empty: say what changed before releasing.");
  if (versionSection(changelog, version) !== null) throw new Error(`CHANGELOG.md already has ${version}.`);
  const m = UNRELEASED.exec(changelog);
  const rest = changelog.slice(m.index + m[0].length);
  const end = NEXT_VERSION.exec(rest);
  const older = end ? rest.slice(end.index) : "";
  const before = changelog.slice(0, m.index);
  const links = [...changelog.matchAll(LINKS)].map((l) => l[0]).filter((l) => !/^\[Unreleased\]:/.test(l));
  const base = `https://github.com/${repository}`;
  const body = `${before}## [Unreleased]\n\n## [${version}] - ${date}\n\n${notes}\n\n${older.replace(LINKS, "").trimEnd()}`;
  return `${body.trimEnd()}\n\n${[
    `[Unreleased]: ${base}/compare/v${version}...HEAD`,
    previousTag
      ? `[${version}]: ${base}/compare/${previousTag}...v${version}`
      : `[${version}]: ${base}/releases/tag/v${version}`,
    ...links,
  ].join("\n")}\n`;
}

/** The workflow_call interface of a reusable workflow: what a caller writes against. */
export function workflowInterface(text) {
  const call = parse(text)?.on?.workflow_call ?? {};
  const pick = (o) =>
    Object.fromEntries(
      Object.entries(o ?? {}).map(([k, v]) => [
        k,
        { required: !!v?.required, hasDefault: v?.default !== undefined },
      ]),
    );
  return { inputs: pick(call.inputs), secrets: pick(call.secrets), outputs: Object.keys(call.outputs ?? {}) };
}

/**
 * What a caller of each reusable workflow must know, comparing the interface at the previous tag
 * with this one: removed inputs, secrets and outputs, or a new required input/secret, break callers.
 */
export function workflowCompatibility(before, after) {
  const lines = [];
  let breaking = false;
  for (const name of REUSABLE) {
    if (!after[name]) continue;
    if (!before[name]) {
      lines.push(`- \`${name}\`: new in this release.`);
      continue;
    }
    const a = workflowInterface(before[name]);
    const b = workflowInterface(after[name]);
    const changes = [];
    for (const kind of ["inputs", "secrets"]) {
      const what = kind.slice(0, -1);
      for (const k of Object.keys(a[kind]))
        if (!(k in b[kind])) {
          changes.push(`removed ${what} \`${k}\` (**breaking**: callers passing it fail)`);
          breaking = true;
        }
      for (const [k, v] of Object.entries(b[kind])) {
        const needed = v.required && !v.hasDefault;
        if (!(k in a[kind])) {
          changes.push(
            `new ${needed ? "required" : "optional"} ${what} \`${k}\`${needed ? " (**breaking**)" : ""}`,
          );
          breaking ||= needed;
        } else if (needed && !(a[kind][k].required && !a[kind][k].hasDefault)) {
          changes.push(`${what} \`${k}\` is now required (**breaking**)`);
          breaking = true;
        }
      }
    }
    for (const k of a.outputs)
      if (!b.outputs.includes(k)) {
        changes.push(`removed output \`${k}\` (**breaking**)`);
        breaking = true;
      }
    for (const k of b.outputs) if (!a.outputs.includes(k)) changes.push(`new output \`${k}\``);
    lines.push(
      `- \`${name}\`: ${changes.length ? changes.join("; ") : "inputs, secrets and outputs unchanged"}.`,
    );
  }
  for (const name of Object.keys(before))
    if (REUSABLE.includes(name) && !after[name]) {
      lines.push(`- \`${name}\`: **removed** (breaking).`);
      breaking = true;
    }
  return { lines, breaking };
}

/** The GitHub Release body: what changed, how to upgrade, and what the reusable workflows promise. */
export function releaseNotes({ version, repository, changes, previousTag, compatibility }) {
  const v = parseVersion(version);
  const upgrade = [
    `- Callers pinned to \`@${v.majorTag}\` (or \`@${v.minorTag}\`) get this release with no change: those tags now point here.`,
    `- To pin exactly, use \`@${v.tag}\` or the commit SHA of this tag; every reusable workflow then runs the actions of that same commit (\`$/\` references).`,
    `- CLI: \`npm install --global @deploy-kit/cli@${v.version}\` (or \`npx @deploy-kit/cli@${v.version}\`); the tarball is attached below.`,
    `- JSON Schema for this release: \`https://raw.githubusercontent.com/${repository}/${v.tag}/schema/deploy-kit.schema.json\`.`,
    "- GitHub Enterprise Server: use `deploy-kit-ghes-workflows.tar.gz` (below, and `ghes/` at this tag): the reusable workflows with every kit action referenced as `" +
      `${repository}/actions/<name>@${v.tag}\`.`,
  ];
  return [
    `## What changed${previousTag ? ` since ${previousTag}` : ""}`,
    "",
    changes.trim(),
    "",
    "## Upgrading",
    "",
    ...upgrade,
    "",
    "## Reusable workflows",
    "",
    ...(compatibility.breaking
      ? [
          `**This release changes what callers must pass**; check your callers before moving to \`@${v.majorTag}\`.`,
          "",
        ]
      : []),
    ...compatibility.lines,
    "",
    "They reference the kit's own actions with GitHub's self-repository syntax (`$/actions/<name>`, github.com, runner 2.336.0 or newer), so they always run the actions of the commit the caller pinned.",
    "",
    `Full changelog: https://github.com/${repository}/blob/${v.tag}/CHANGELOG.md`,
    "",
  ].join("\n");
}

/**
 * The GHES variant of a reusable workflow: GitHub Enterprise Server has no `$/` syntax, so each
 * kit action is referenced fully qualified at the release tag. Everything else is left as written.
 */
export function ghesWorkflow(text, { name, repository, tag }) {
  let count = 0;
  const body = text.replace(/^(\s*(?:-\s+)?uses:\s*)\$\/(\S+)/gm, (_, lead, path) => {
    count++;
    return `${lead}${repository}/${path}@${tag}`;
  });
  if (!count) throw new Error(`${name}: no $/ reference to rewrite`);
  return `# Generated by scripts/release.mjs for GitHub Enterprise Server (no \`$/\` there): the kit's actions
# are referenced as ${repository}/<path>@${tag}. Do not edit; see workflows/README.md, "GHES".
${body}`;
}
