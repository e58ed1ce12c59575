import { script, sh } from "./shell.js";

/**
 * strategy: blue-green. Builders for the reverse proxy in front of the app (nginx) and for the
 * two colors: pure, no I/O. Every value reaching a shell goes through `sh`; the user's own test
 * and reload commands run through `sh -euc`, like migrate.command.
 */
export type Color = "blue" | "green";

export const otherColor = (c: Color): Color => (c === "blue" ? "green" : "blue");

/** The compose project a color runs as: its own containers and network beside the other color. */
export const colorProject = (app: string, color: Color) => `${app}-${color}`;

/** The marker line the upstream file starts with: which color and release the proxy serves. */
const MARKER = /^# deploy-kit: app=([a-z][a-z0-9-]*) color=(blue|green) release=(\S+) port=(\d+)$/m;

export interface UpstreamTarget {
  app: string;
  color: Color;
  release: string;
  address: string;
  port: number;
}

/**
 * The nginx upstream include: one block naming the live color's address. Values are validated
 * by the config schema (IPv4, port numbers, names); nothing here can become nginx syntax.
 */
export function nginxUpstream(name: string, t: UpstreamTarget): string {
  return [
    `# deploy-kit: app=${t.app} color=${t.color} release=${t.release} port=${t.port}`,
    "# Written by deploy-kit on every blue-green switch; edits here are overwritten.",
    `upstream ${name} {`,
    `    server ${t.address}:${t.port};`,
    "}",
    "",
  ].join("\n");
}

/** Which color (and release) an upstream file serves, if deploy-kit wrote it for `app`. */
export function parseUpstream(
  text: string,
  app: string,
): { color: Color; release: string; port: number } | undefined {
  const m = MARKER.exec(text);
  if (!m || m[1] !== app) return undefined;
  return { color: m[2] as Color, release: m[3]!, port: Number(m[4]) };
}

export function readUpstreamScript(file: string): string {
  return script(sh`if [ -f ${file} ]; then cat ${file}; fi`);
}

/** switch: file. The marker whose existence makes nginx send requests to green. */
export const greenMarker = (file: string) => `${file}.green`;

/** The nginx variable the include sets: $<upstream-name>_upstream ('-' is not allowed there). */
export const upstreamVariable = (name: string) => `${name.replaceAll("-", "_")}_upstream`;

/**
 * switch: file. The include (in the user's `location`, before `proxy_pass http://$<variable>;`)
 * names both colours; which one serves is read per request from the marker file, so switching is
 * creating or removing it: no reload, no connection closed. It changes only with the ports.
 */
export function nginxColorSwitch(o: {
  app: string;
  name: string;
  file: string;
  address: string;
  ports: Record<Color, number>;
}): string {
  const v = upstreamVariable(o.name);
  return [
    `# deploy-kit: app=${o.app} switch=file blue=${o.address}:${o.ports.blue} green=${o.address}:${o.ports.green}`,
    `# Include in the proxied location, then: proxy_pass http://$${v};`,
    `# Green serves while ${greenMarker(o.file)} exists; deploy-kit switches by creating or removing it.`,
    `set $${v} ${o.address}:${o.ports.blue};`,
    `if (-f ${greenMarker(o.file)}) {`,
    `    set $${v} ${o.address}:${o.ports.green};`,
    "}",
    "",
  ].join("\n");
}

/**
 * switch: file. Write the include when its content changed (then test and reload once, the
 * previous file put back on failure, as switchUpstreamScript), then point the marker at `color`
 * atomically. Prints `reloaded` when it had to reload.
 */
export function switchMarkerScript(o: {
  file: string;
  content: string;
  color: Color;
  reloadCommand: string;
  testCommand?: string;
  timeoutS: number;
}): string {
  const marker = greenMarker(o.file);
  return script(
    sh`if ! [ -f ${o.file} ] || [ "$(cat ${o.file})" != ${o.content.trimEnd()} ]; then`,
    // Not indented: the content is a quoted multi-line word.
    switchUpstreamScript(o),
    "echo reloaded",
    "fi",
    o.color === "green" ? sh`: > ${`${marker}.dk-new`}` : sh`rm -f ${marker}`,
    o.color === "green" ? sh`mv -f ${`${marker}.dk-new`} ${marker}` : undefined,
  );
}

/** switch: file. Prints the colour the marker selects, or nothing when the include is not there. */
export function readMarkerScript(file: string): string {
  return script(
    sh`if [ -f ${file} ]; then if [ -f ${greenMarker(file)} ]; then echo green; else echo blue; fi; fi`,
  );
}

/** switchUpstreamScript's exit status when the proxy may serve either file: both colours must stay. */
export const SWITCH_UNCERTAIN = 125;

/**
 * Point the proxy at a color: write the upstream file beside the old one and rename it into place
 * (nginx never reads half a file), test the config when a test command is given, reload. If the
 * test or the reload fails the previous file is put back, so the file always matches what the
 * proxy serves, and the script fails with the command's exit status. Each command is stopped after
 * `timeoutS` seconds by the host itself (exit 124), so the SSH step's own deadline never cuts the
 * script between writing the file and putting it back. A reload stopped that way may already have
 * made nginx read the new file: it is reloaded again with the previous one, and if that fails too
 * the script exits SWITCH_UNCERTAIN: nginx may serve either colour.
 */
export function switchUpstreamScript(o: {
  file: string;
  content: string;
  reloadCommand: string;
  testCommand?: string;
  timeoutS: number;
}): string {
  const prev = `${o.file}.dk-prev`;
  const next = `${o.file}.dk-new`;
  const out = `${o.file}.dk-out`;
  const late = `${o.file}.dk-late`;
  return script(
    sh`f=${o.file}`,
    sh`mkdir -p "$(dirname "$f")"`,
    sh`printf '%s' ${o.content} > ${next}`,
    sh`if [ -f "$f" ]; then cp -p "$f" ${prev}; else rm -f ${prev}; fi`,
    sh`mv -f ${next} "$f"`,
    // bounded <command>: runs it under the deadline; its output goes to a file, so a child it
    // leaves behind cannot hold the SSH channel open.
    "bounded() {",
    sh`  rm -f ${late}`,
    sh`  sh -euc "$1" > ${out} 2>&1 &`,
    "  dk_pid=$!",
    sh`  ( sleep ${o.timeoutS}; : > ${late}; kill -TERM "$dk_pid"; sleep 2; kill -KILL "$dk_pid" ) >/dev/null 2>&1 &`,
    "  dk_timer=$!",
    `  dk_rc=0; wait "$dk_pid" || dk_rc=$?`,
    `  kill "$dk_timer" 2>/dev/null || true`,
    sh`  cat ${out} >&2; rm -f ${out}`,
    sh`  if [ -f ${late} ]; then rm -f ${late}; return 124; fi`,
    `  return "$dk_rc"`,
    "}",
    "restore() {",
    sh`  if [ -f ${prev} ]; then mv -f ${prev} "$f"; else rm -f "$f"; fi`,
    `  if [ "$2" -ne 124 ]; then echo "$1 failed (exit $2); the previous upstream file is back in place" >&2; exit "$2"; fi`,
    sh`  echo "$1 ran past its ${o.timeoutS} s deadline (reload-timeout) and was stopped; the previous upstream file is back in place" >&2`,
    `  [ "$3" = reload ] || exit 124`,
    // The stopped reload may have got as far as making nginx read the new file.
    `  dk_again=0; bounded "$4" || dk_again=$?`,
    `  if [ "$dk_again" -eq 0 ]; then echo "the proxy was reloaded with the previous file" >&2; exit 124; fi`,
    `  echo "reloading the proxy with the previous file failed too (exit $dk_again): it may serve either colour" >&2`,
    `  exit ${SWITCH_UNCERTAIN}`,
    "}",
    "rc=0",
    o.testCommand
      ? sh`bounded ${o.testCommand} || rc=$?; [ "$rc" -eq 0 ] || restore 'the proxy test-command' "$rc" test`
      : undefined,
    sh`bounded ${o.reloadCommand} || rc=$?; [ "$rc" -eq 0 ] || restore 'the proxy reload-command' "$rc" reload ${o.reloadCommand}`,
    sh`rm -f ${prev}`,
  );
}

/**
 * The override that publishes the proxied service on the color's port (bound to `address`, by
 * default loopback, so only the proxy reaches it). Merged after the user's file and the image
 * override: the user's compose file stays as written, but must not publish that port itself
 * (compose concatenates `ports` of merged files; see checkColorCompose).
 */
export function colorOverride(o: {
  service: string;
  address: string;
  port: number;
  containerPort: number;
  version?: string;
}): string {
  const doc: Record<string, unknown> = {};
  if (o.version !== undefined) doc.version = o.version;
  doc.services = { [o.service]: { ports: [`${o.address}:${o.port}:${o.containerPort}`] } };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Stop a color's service containers (found by compose's labels, so no compose file is needed),
 * except those of the services in `keep` (blue-green.shared-services, which run outside the
 * colours). Prints `stopped <n>`. `docker stop` honours each container's own stop timeout.
 */
export function stopColorScript(project: string, keep: readonly string[] = []): string {
  return script(
    sh`ids=$(docker ps --filter ${`label=com.docker.compose.project=${project}`} --filter label=com.docker.compose.oneoff=False --format '{{.ID}} {{.Label "com.docker.compose.service"}}' | while read -r id svc; do case ${` ${keep.join(" ")} `} in *" $svc "*) ;; *) echo "$id" ;; esac; done)`,
    `if [ -n "$ids" ]; then docker stop $ids >/dev/null; fi`,
    `set -- $ids`,
    `echo "stopped $#"`,
  );
}
