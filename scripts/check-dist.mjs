#!/usr/bin/env node
// Fails when the committed generated files differ from a fresh build of src/.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = mkdtempSync(join(tmpdir(), "dk-check-dist-"));
try {
  execFileSync(process.execPath, [join(repo, "scripts/build.mjs"), "--root", tmp], { stdio: "inherit" });
  const files = (dir) =>
    existsSync(dir)
      ? readdirSync(dir, { recursive: true })
          .map((f) => join(dir, String(f)))
          .filter((f) => statSync(f).isFile())
      : [];
  const generated = new Set();
  for (const f of files(tmp)) generated.add(relative(tmp, f));
  // Files in the committed dist/ that a build no longer makes are stale too.
  for (const f of files(join(repo, "dist"))) generated.add(relative(repo, f));
  const differ = [];
  for (const rel of [...generated].sort()) {
    const a = join(repo, rel);
    const b = join(tmp, rel);
    if (!existsSync(a)) differ.push(`missing in the repo: ${rel}`);
    else if (!existsSync(b)) differ.push(`not made by the build (stale): ${rel}`);
    else if (!readFileSync(a).equals(readFileSync(b))) differ.push(`differs: ${rel}`);
  }
  if (differ.length) {
    console.error(
      `check:dist: the committed generated files are not the build of src/:\n  ${differ.join("\n  ")}`,
    );
    console.error("Run `npm run build` and commit the result.");
    for (const d of differ
      .filter((x) => x.startsWith("differs") && !x.endsWith(".map") && !x.includes("dist/kit/index.js"))
      .slice(0, 3)) {
      const rel = d.slice("differs: ".length);
      try {
        execFileSync("git", ["diff", "--no-index", "--stat", join(repo, rel), join(tmp, rel)], {
          stdio: "inherit",
        });
      } catch {}
    }
    process.exit(1);
  }
  console.log(`check:dist: ${generated.size} generated files match a fresh build`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
