import * as core from "@actions/core";
import type { Annotation, Log } from "./log.js";
import { redact, setMaskSink } from "./secrets.js";

function props(where?: Annotation): core.AnnotationProperties | undefined {
  if (!where) return undefined;
  return { file: where.file, startLine: where.line, startColumn: where.col, title: where.title };
}

/**
 * The runner obeys workflow commands (`::set-output`, `::add-mask::`, `::stop-commands::`, the
 * older `##[...]`) in any line of a step's stdout. Text from a host or a container must stay
 * text: a line that would be a command gets a zero-width space after its first colon.
 */
export function neutralizeWorkflowCommands(text: string): string {
  return text.replace(/^(\s*):(?=:)/gm, "$1:\u200b").replace(/##\[/g, "#\u200b#[");
}

/** Log for the GitHub runner: groups fold in the UI, warnings/errors become annotations. */
export class ActionLog implements Log {
  private depth = 0;
  constructor() {
    // From now on every registered secret is also masked by the runner itself.
    setMaskSink((s) => core.setSecret(s));
  }
  info(m: string) {
    core.info(neutralizeWorkflowCommands(redact(m)));
  }
  warn(m: string, where?: Annotation) {
    core.warning(redact(m), props(where));
  }
  error(m: string, where?: Annotation) {
    core.error(redact(m), props(where));
  }
  debug(m: string) {
    core.debug(redact(m));
  }
  async group<T>(title: string, fn: () => Promise<T>): Promise<T> {
    // The runner does not nest groups: inner ones become plain headings.
    if (this.depth > 0) {
      core.info(neutralizeWorkflowCommands(`── ${redact(title)}`));
      return fn();
    }
    this.depth++;
    try {
      return await core.group(redact(title), fn);
    } finally {
      this.depth--;
    }
  }
}
