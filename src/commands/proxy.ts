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

/**
 * Point the proxy at a color: write the upstream file beside the old one and rename it into place
 * (nginx never reads half a file), test the config when a test command is given, reload. If the
 * test or the reload fails the previous file is put back, so the file always matches what the
 * proxy serves, and the script fails with the command's exit status.
 */
export function switchUpstreamScript(o: {
  file: string;
  content: string;
  reloadCommand: string;
  testCommand?: string;
}): string {
  const prev = `${o.file}.dk-prev`;
  const next = `${o.file}.dk-new`;
  return script(
    sh`f=${o.file}`,
    sh`mkdir -p "$(dirname "$f")"`,
    sh`printf '%s' ${o.content} > ${next}`,
    sh`if [ -f "$f" ]; then cp -p "$f" ${prev}; else rm -f ${prev}; fi`,
    sh`mv -f ${next} "$f"`,
    "restore() {",
    sh`  if [ -f ${prev} ]; then mv -f ${prev} "$f"; else rm -f "$f"; fi`,
    `  echo "$1 failed (exit $2); the previous upstream file is back in place" >&2`,
    `  exit "$2"`,
    "}",
    "rc=0",
    o.testCommand
      ? sh`sh -euc ${o.testCommand} || rc=$?; [ "$rc" -eq 0 ] || restore 'the proxy test-command' "$rc"`
      : undefined,
    sh`sh -euc ${o.reloadCommand} || rc=$?; [ "$rc" -eq 0 ] || restore 'the proxy reload-command' "$rc"`,
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
 * Stop a color's service containers (found by compose's labels, so no compose file is needed).
 * Prints `stopped <n>`. `docker stop` honours each container's own stop timeout.
 */
export function stopColorScript(project: string): string {
  return script(
    sh`ids=$(docker ps -q --filter ${`label=com.docker.compose.project=${project}`} --filter label=com.docker.compose.oneoff=False)`,
    `if [ -n "$ids" ]; then docker stop $ids >/dev/null; fi`,
    `set -- $ids`,
    `echo "stopped $#"`,
  );
}
