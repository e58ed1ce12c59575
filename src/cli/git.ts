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
