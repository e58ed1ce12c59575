import { isAbsolute, resolve } from "node:path";

/** Paths in inputs and config are relative to the checked-out repository. */
export function workspacePath(p: string): string {
  return isAbsolute(p) ? p : resolve(process.env.GITHUB_WORKSPACE || process.cwd(), p);
}

/** Who is deploying: the run URL on GitHub, user@machine elsewhere. */
export function runUrl(): string | undefined {
  const { GITHUB_SERVER_URL, GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT } = process.env;
  if (!GITHUB_REPOSITORY || !GITHUB_RUN_ID) return undefined;
  const attempt = GITHUB_RUN_ATTEMPT ? `/attempts/${GITHUB_RUN_ATTEMPT}` : "";
  return `${GITHUB_SERVER_URL || "https://github.com"}/${GITHUB_REPOSITORY}/actions/runs/${GITHUB_RUN_ID}${attempt}`;
}
