import { raw, script, sh } from "./shell.js";

/** The compose front end found on the host: v2 plugin or the v1 Python program. */
export type ComposeBin = "docker compose" | "docker-compose";

/**
 * How every compose command of a release is spelled: the project name is the app name, the
 * directory is the deploy path (so compose reads the operator's .env there for interpolation),
 * and the files are the user's compose file plus deploy-kit's image override.
 */
export interface ComposeProject {
  bin: ComposeBin;
  project: string;
  dir: string;
  /** Relative to `dir`. */
  files: string[];
  /**
   * Where compose reads .env and resolves relative paths when the first file lives elsewhere
   * (migrate stages the new compose file under .deploy-kit/). Both v1 and v2 know the flag.
   */
  projectDirectory?: string;
}

/** Prints "docker compose", "docker-compose" or "none". Only flags both versions know are used later. */
export function detectComposeScript(): string {
  return script(
    "if docker compose version >/dev/null 2>&1; then echo 'docker compose'",
    "elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose",
    "else echo none; fi",
  );
}

export function parseComposeBin(stdout: string): ComposeBin | undefined {
  const v = stdout.trim().split("\n").pop()?.trim();
  return v === "docker compose" || v === "docker-compose" ? v : undefined;
}

/** `cd <dir> && <compose> -p <project> -f a -f b <args>`: one shell line. */
export function composeLine(p: ComposeProject, args: readonly string[]): string {
  const files = p.files.flatMap((f) => ["-f", f]);
  const projectDir = p.projectDirectory ? ["--project-directory", p.projectDirectory] : [];
  return `${sh`cd ${p.dir}`} && ${raw(p.bin).text} ${sh`-p ${p.project} ${[...projectDir, ...files]} ${args}`}`;
}

/**
 * Start the release: never builds on the server, and removes containers of services the compose
 * file no longer has. No --wait: compose v1 ignores it and deploys nothing, so health is polled.
 */
export function composeUpScript(p: ComposeProject, only?: readonly string[]): string {
  // `only`: these services and not their dependencies (blue-green's shared services run elsewhere).
  const services = only ? ["--no-deps", ...only] : [];
  return script(composeLine(p, ["up", "-d", "--no-build", "--remove-orphans", ...services]));
}

/**
 * The override that pins the configured services to one image by digest, so the user's compose
 * file stays theirs. JSON is YAML, and JSON.stringify cannot produce a YAML injection.
 * `version` repeats the user's file's version key: compose v1 refuses to merge files whose
 * versions differ.
 */
export function imageOverride(services: readonly string[], imageRef: string, version?: string): string {
  const doc: Record<string, unknown> = {};
  if (version !== undefined) doc.version = version;
  doc.services = Object.fromEntries(services.map((s) => [s, { image: imageRef }]));
  return `${JSON.stringify(doc, null, 2)}\n`;
}
