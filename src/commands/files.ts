import { posix } from "node:path";
import { quote, raw, script, sh } from "./shell.js";

/**
 * Write stdin to `path` atomically: into `tmp` beside it, then rename over the old file, but only
 * once the bytes that arrived are the bytes that were sent (size, then sha256): a channel cut
 * mid-upload must leave the old file, not part of a new one. The hash tool is whichever the host
 * has (sha256sum in coreutils and busybox, shasum, openssl).
 */
export function uploadScript(o: { path: string; tmp: string; mode: number; bytes: number; sha256: string }) {
  // `why` is shell text (it expands $got/$sum); everything else is quoted.
  const refuse = (why: string) =>
    `echo ${quote(`upload to ${o.path}: `)}${why}${quote(`; the file there was not replaced`)} >&2; exit 1`;
  return script(
    "umask 077",
    sh`mkdir -p ${posix.dirname(o.path)}`,
    sh`trap ${`rm -f ${quote(o.tmp)}`} EXIT`,
    sh`cat > ${o.tmp}`,
    sh`got=$(wc -c < ${o.tmp} | tr -d ' ')`,
    sh`if [ "$got" != ${o.bytes} ]; then ${raw(refuse(`"only $got of ${o.bytes} bytes arrived"`))}; fi`,
    sha256Into("sum", o.tmp, refuse(quote("the host has no sha256sum, shasum or openssl to check it"))),
    sh`if [ "$sum" != ${o.sha256} ]; then ${raw(refuse(`"its sha256 is $sum, not the ${o.sha256} sent"`))}; fi`,
    sh`chmod ${o.mode.toString(8)} ${o.tmp}`,
    sh`mv -f ${o.tmp} ${o.path}`,
  );
}

/**
 * Sets `variable` to the sha256 of `file` with whichever tool the host has (sha256sum in coreutils
 * and busybox, shasum, openssl), else runs `otherwise`.
 */
function sha256Into(variable: string, file: string, otherwise: string): string {
  const tool = (name: string, cmd: string) =>
    `if command -v ${name} >/dev/null 2>&1; then ${variable}=$(${cmd} < ${quote(file)})`;
  return [
    tool("sha256sum", "sha256sum"),
    `el${tool("shasum", "shasum -a 256")}`,
    `el${tool("openssl", "openssl dgst -sha256 -r")}`,
    `else ${otherwise}; fi`,
    // The hash is the first word of the tool's output (openssl -r adds " *stdin").
    `${variable}="\${${variable}%% *}"`,
  ].join("\n");
}

/** Prints `<bytes> <sha256>` of a file on the host: what a copy of it must match. */
export function fileDigestScript(file: string): string {
  return script(
    sh`[ -f ${file} ] || { echo ${`${file} is not there`} >&2; exit 1; }`,
    sh`bytes=$(wc -c < ${file} | tr -d ' ')`,
    sha256Into("sum", file, `echo 'the host has no sha256sum, shasum or openssl' >&2; exit 1`),
    'echo "$bytes $sum"',
  );
}
