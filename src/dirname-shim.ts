// ssh2's bundled code reads __dirname, which ESM lacks. This module is imported first by the
// bundle entry so the globals exist before ssh2 initialises (ESM evaluates imports in order).
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const g = globalThis as { __dirname?: string; __filename?: string };
g.__filename ??= fileURLToPath(import.meta.url);
g.__dirname ??= dirname(g.__filename);
