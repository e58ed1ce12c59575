import { ConfigError } from "../core/errors.js";
import { ProcessExecutor } from "../exec/local.js";

/** The commit checked out in the current directory (what `build` and `deploy` default to). */
export async function headSha(): Promise<string> {
  const r = await new ProcessExecutor().run({
    argv: ["git", "rev-parse", "--verify", "HEAD"],
    what: "git rev-parse HEAD",
    allowFailure: true,
  });
  const sha = r.stdout.trim();
  if (r.exitCode !== 0 || !/^[0-9a-f]{40}$/.test(sha)) {
    throw new ConfigError("No git commit to name the image by: `git rev-parse HEAD` failed here.", {
      hint: "Run from the repository, or pass --git-sha SHA (and --image REF to deploy a given image).",
    });
  }
  return sha;
}

/** The git ref of HEAD when a tag points at it (v1.2.3 -> semver tags, the version). */
export async function headTagRef(): Promise<string | undefined> {
  const r = await new ProcessExecutor().run({
    argv: ["git", "describe", "--tags", "--exact-match", "HEAD"],
    what: "git describe",
    allowFailure: true,
  });
  const tag = r.stdout.trim();
  return r.exitCode === 0 && tag ? `refs/tags/${tag}` : undefined;
}

export interface Changes {
  base: string;
  head: string;
  /** `<short sha> <subject> (<author>)`, oldest first. */
  commits: string[];
  /** `git diff` of the watched files (the compose file, deploy-kit.yml). */
  diff: string;
}

/** git argv for what changed between two commits: the commit list and the watched files' diff. */
export function changesArgv(base: string, head: string, files: readonly string[]): string[][] {
  return [
    ["git", "log", "--reverse", "--format=%h %s (%an)", `${base}..${head}`],
    ["git", "diff", base, head, "--", ...files],
  ];
}

/**
 * What a promotion changes, from this clone: the commits since the live release and the diff of
 * `files`. A clone without one of the commits (shallow, or not fetched) says so instead.
 */
export async function changesBetween(
  base: string,
  head: string,
  files: readonly string[],
  cwd?: string,
): Promise<Changes | { note: string }> {
  const exec = new ProcessExecutor();
  const [log, diff] = changesArgv(base, head, files);
  const l = await exec.run({ argv: log!, what: "git log", allowFailure: true, cwd });
  if (l.exitCode !== 0)
    return {
      note: `this clone does not have both ${base.slice(0, 12)} and ${head.slice(0, 12)} (git fetch them to see the commits)`,
    };
  const d = await exec.run({ argv: diff!, what: "git diff", allowFailure: true, cwd });
  return {
    base,
    head,
    commits: l.stdout.split("\n").filter(Boolean),
    diff: d.exitCode === 0 ? d.stdout.trimEnd() : "",
  };
}
