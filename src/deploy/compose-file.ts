import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { LineCounter, parseDocument } from "yaml";
import type { Environment } from "../config/schema.js";
import { findCommittedSecrets } from "../config/secret-scan.js";
import { ConfigError } from "../core/errors.js";
import { workspacePath } from "../core/workspace.js";
import { checkColorCompose } from "./blue-green.js";

/** The user's compose file, read from the repository, ready to upload. */
export interface ComposeSource {
  /** File name on the host, beside the operator's .env. */
  name: string;
  content: string;
  /** The file's `version:` key, repeated in the override (compose v1 merges only equal versions). */
  version?: string;
}

export function parseComposeSource(
  name: string,
  content: string,
  services: readonly string[],
  where = name,
): ComposeSource {
  const lc = new LineCounter();
  const parsed = parseDocument(content, { lineCounter: lc });
  let doc: unknown;
  try {
    if (parsed.errors.length) throw parsed.errors[0];
    doc = parsed.toJS({ maxAliasCount: 50 });
  } catch (e) {
    throw new ConfigError(`${where} is not valid YAML: ${(e as Error).message.split("\n")[0]}`, {
      hint: "Fix the compose file; `docker compose config` checks it locally.",
    });
  }
  // This file is copied to every server: a secret in it would sit in the repository and on each host.
  const secrets = findCommittedSecrets(
    parsed,
    lc,
    where,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's interpolation syntax, shown to the user
    "The compose file is committed and uploaded to the servers: put the value in the operator's .env on the host and refer to it (env_file: .env, or ${NAME})",
  );
  if (secrets.length) {
    throw new ConfigError(`${where} holds what looks like a secret; it was not uploaded.`, {
      problems: secrets,
      hint: "Move secrets to the .env file on each host (deploy-kit never reads or writes it) or to your secret store.",
    });
  }
  const defined = Object.keys(((doc as { services?: Record<string, unknown> })?.services ?? {}) as object);
  const missing = services.filter((s) => !defined.includes(s));
  if (missing.length) {
    throw new ConfigError(`compose.service names ${missing.join(", ")}, which ${where} does not define.`, {
      hint: `Services in ${where}: ${defined.join(", ") || "(none)"}.`,
    });
  }
  const v = (doc as { version?: unknown }).version;
  return { name, content, version: v === undefined || v === null ? undefined : String(v) };
}

export async function loadComposeSource(env: Environment): Promise<ComposeSource> {
  const file = workspacePath(env.compose.file);
  let content: string;
  try {
    content = await readFile(file, "utf8");
  } catch {
    throw new ConfigError(
      `The compose file ${env.compose.file} (compose.file) was not found in the repository.`,
      {
        hint: "Check out the repository before this step, or fix compose.file in deploy-kit.yml.",
      },
    );
  }
  const source = parseComposeSource(basename(file), content, env.compose.service, env.compose.file);
  // Before any host is touched: what blue-green cannot run safely is refused here.
  if (env.strategy === "blue-green") checkColorCompose(source, env);
  return source;
}
