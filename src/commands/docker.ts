import { quote, script, sh } from "./shell.js";

/** The registry an image reference is pulled from (docker's own rule for the first component). */
export function registryOf(imageRef: string): string {
  const first = imageRef.split("/")[0]!;
  const hasRegistry =
    imageRef.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  return hasRegistry ? first : "docker.io";
}

/** The repository part of a reference: no tag, no digest. */
export function repositoryOf(imageRef: string): string {
  const noDigest = imageRef.split("@")[0]!;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

/**
 * Pull on the host. With credentials, log in with the password on stdin into a temporary
 * DOCKER_CONFIG that exists only for this pull, so no credential stays on the server.
 */
export function pullImageScript(
  imageRef: string,
  login?: { username: string },
  /** Deadline of the pull on the host, shorter than the SSH one: the script ends (and cleans up) on its own. */
  timeoutSecs?: number,
): string {
  const secs = timeoutSecs && Math.max(1, Math.ceil(timeoutSecs));
  const pull = secs
    ? sh`if command -v timeout >/dev/null 2>&1; then timeout ${secs} docker pull --quiet ${imageRef}; else docker pull --quiet ${imageRef}; fi`
    : sh`docker pull --quiet ${imageRef}`;
  if (!login) return script(pull);
  return script(
    "DOCKER_CONFIG=$(mktemp -d)",
    "export DOCKER_CONFIG",
    `trap 'rm -rf "$DOCKER_CONFIG"' EXIT`,
    // A signal (the session closing, a TERM) must still run the EXIT trap: sh skips it otherwise.
    "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM",
    sh`docker login --username ${login.username} --password-stdin ${registryOf(imageRef)} >/dev/null`,
    // In the background and waited for, so a signal runs the trap now, not after the pull ends.
    `${pull} &`,
    `wait $!`,
  );
}

/** One line: the image ID, then every repo digest the engine knows for it. */
export function imageInfoScript(imageRef: string): string {
  return script(
    sh`docker image inspect --format ${"{{.Id}}{{range .RepoDigests}} {{.}}{{end}}"} ${imageRef}`,
  );
}

export function parseImageInfo(stdout: string): { id: string; repoDigests: string[] } {
  const [id = "", ...repoDigests] = stdout.trim().split(/\s+/);
  return { id, repoDigests };
}

const INSPECT_FORMAT = [
  "{{.Id}}",
  "{{.Image}}",
  "{{.State.Status}}",
  "{{.State.Restarting}}",
  "{{.RestartCount}}",
  "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
  "{{.State.ExitCode}}",
  "{{.State.StartedAt}}",
  "{{.Name}}",
].join("|");

/**
 * The state of the service containers of a compose project, found by compose's own labels
 * (container names differ between compose v1 and v2). One-off `compose run` containers are
 * excluded. First line: `now|<epoch seconds>` on the host's clock.
 */
export function serviceContainersScript(project: string, services: readonly string[]): string {
  return script(
    `echo "now|$(date +%s)"`,
    ...services.map((s) =>
      [
        sh`for id in $(docker ps -aq --no-trunc --filter ${`label=com.docker.compose.project=${project}`} --filter ${`label=com.docker.compose.service=${s}`} --filter label=com.docker.compose.oneoff=False); do`,
        // A container can vanish between ps and inspect (compose replacing it): skip it.
        sh`  docker inspect --format ${`${s}|${INSPECT_FORMAT}`} "$id" 2>/dev/null || true`,
        "done",
      ].join("\n"),
    ),
  );
}

/** The last lines a container printed, to show why it is not healthy. */
export function containerLogsScript(containerId: string, lines = 20): string {
  return script(sh`docker logs --tail ${lines} ${containerId} 2>&1`);
}

/** The last health check output of a container (empty without a healthcheck). */
export function healthLogScript(containerId: string): string {
  return script(
    sh`docker inspect --format ${"{{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}{{end}}{{end}}"} ${containerId}`,
  );
}

/**
 * Remove images of `repository` except those that `keepRefs` resolve to. An image still used by
 * a container is refused by docker and stays; a reference missing on the host is skipped.
 * Prints `removed <ref>` per removal.
 */
export function pruneImagesScript(repository: string, keepRefs: readonly string[]): string {
  // With nothing to keep every image of the app would go: refuse to build that script.
  if (keepRefs.length === 0) throw new Error("pruneImagesScript: keepRefs must not be empty");
  return script(
    'keep=" "',
    sh`for r in ${keepRefs}; do`,
    `  if id=$(docker image inspect --format '{{.Id}}' "$r" 2>/dev/null); then keep="$keep$id "; fi`,
    "done",
    sh`docker image ls --digests --no-trunc --format ${"{{.ID}} {{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}"} ${repository} |`,
    "while read -r id tagref digestref; do",
    `  case "$keep" in *" $id "*) continue ;; esac`,
    "  for ref in $tagref $digestref; do",
    `    case "$ref" in *'<none>') continue ;; esac`,
    `    if docker image rm "$ref" >/dev/null 2>&1; then echo "removed $ref"; fi`,
    "  done",
    "done",
  );
}

/** Facts about a host for preflight and validate-config check-remote: `key=value` lines. */
export function hostFactsScript(path: string, envFile?: string): string {
  const lines = [
    `if v=$(docker version --format '{{.Server.Version}}' 2>&1); then echo "docker=$v"; else echo "docker-error=$(echo "$v" | tail -n 1)"; fi`,
    "if docker compose version >/dev/null 2>&1; then echo 'compose=docker compose'",
    "elif command -v docker-compose >/dev/null 2>&1; then echo compose=docker-compose",
    "else echo compose=none; fi",
    sh`p=${path}`,
    `if [ -d "$p" ]; then echo path=dir; else echo path=missing; fi`,
    `if [ -d "$p" ] && [ -w "$p" ]; then echo writable=yes; else echo writable=no; fi`,
    `if [ -d "$p" ]; then echo "disk-free-kb=$(df -Pk "$p" | awk 'NR==2 {print $4}')"; fi`,
  ];
  if (envFile) {
    lines.push(
      sh`f=${`${path.replace(/\/+$/, "")}/${envFile}`}`,
      `if [ ! -e "$f" ]; then echo env=missing`,
      `elif [ ! -r "$f" ]; then echo env=unreadable; echo "env-mode=$(stat -c %a "$f")"`,
      "else",
      "  echo env=present",
      `  echo "env-mode=$(stat -c %a "$f")"`,
      // Key NAMES only: the sed prints what is left of "=", never a value.
      `  sed -n 's/^[[:space:]]*\\(export[[:space:]][[:space:]]*\\)\\{0,1\\}\\([A-Za-z_][A-Za-z0-9_]*\\)[[:space:]]*=.*/env-key=\\2/p' "$f"`,
      "fi",
    );
  }
  return script(...lines);
}

export interface HostFacts {
  docker?: string;
  dockerError?: string;
  compose?: string;
  path: "dir" | "missing";
  writable: boolean;
  diskFreeKb?: number;
  env?: "missing" | "unreadable" | "present";
  envMode?: string;
  envKeys: string[];
}

export function parseHostFacts(stdout: string): HostFacts {
  const facts: HostFacts = { path: "missing", writable: false, envKeys: [] };
  for (const line of stdout.split("\n")) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1).trim();
    if (k === "docker") facts.docker = v;
    else if (k === "docker-error") facts.dockerError = v;
    else if (k === "compose") facts.compose = v;
    else if (k === "path") facts.path = v === "dir" ? "dir" : "missing";
    else if (k === "writable") facts.writable = v === "yes";
    else if (k === "disk-free-kb") facts.diskFreeKb = Number(v) || undefined;
    else if (k === "env") facts.env = v as HostFacts["env"];
    else if (k === "env-mode") facts.envMode = v;
    else if (k === "env-key") facts.envKeys.push(v);
  }
  return facts;
}

/**
 * What the service containers of a compose project run, read after the switch: one line per
 * container, `service|container id|image id|repo digests…` (space separated).
 */
export function runningImagesScript(project: string, services: readonly string[]): string {
  return script(
    ...services.map((s) =>
      [
        sh`for id in $(docker ps -q --no-trunc --filter ${`label=com.docker.compose.project=${project}`} --filter ${`label=com.docker.compose.service=${s}`} --filter label=com.docker.compose.oneoff=False); do`,
        `  img=$(docker inspect --format '{{.Image}}' "$id")`,
        `  printf '%s|%s|%s|%s\\n' ${quote(s)} "$id" "$img" "$(docker image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$img")"`,
        "done",
      ].join("\n"),
    ),
  );
}

export interface RunningImage {
  service: string;
  container: string;
  imageId: string;
  repoDigests: string[];
}

export function parseRunningImages(stdout: string): RunningImage[] {
  return stdout
    .split("\n")
    .map((l) => l.trim().split("|"))
    .filter((f) => f.length >= 4)
    .map(([service, container, imageId, digests]) => ({
      service: service!,
      container: container!,
      imageId: imageId!,
      repoDigests: digests!.split(/\s+/).filter(Boolean),
    }));
}

/**
 * Stop the running containers of the app's services in every project the app runs as
 * (recreate: <app>; blue-green: <app>-blue and <app>-green), printing each id stopped, so a
 * restore can run with no writer connected and the same containers start again afterwards.
 */
export function stopServicesScript(app: string, services: readonly string[]): string {
  const projects = [app, `${app}-blue`, `${app}-green`];
  return script(
    sh`for p in ${projects}; do for s in ${services}; do`,
    `  for c in $(docker ps -q --filter "label=com.docker.compose.project=$p" --filter "label=com.docker.compose.service=$s" --filter label=com.docker.compose.oneoff=False); do`,
    `    docker stop "$c" >/dev/null && echo "stopped $c"`,
    "  done",
    "done; done",
  );
}

/** Start again the containers stopServicesScript stopped. */
export function startContainersScript(ids: readonly string[]): string {
  for (const id of ids) if (!/^[0-9a-f]{12,64}$/.test(id)) throw new Error(`not a container id: ${id}`);
  return script(
    ids.length ? sh`docker start ${ids} >/dev/null` : "true",
    sh`echo ${`started ${ids.length} container(s)`}`,
  );
}
