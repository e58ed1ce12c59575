import { z } from "zod";
import { configSchema, hostObject } from "./schema.js";

type Node = Record<string, unknown> & {
  properties?: Record<string, Node>;
  additionalProperties?: Node | boolean;
};

// What each key means, shown by editors on hover. Paths: "*" is any environment name.
const DESCRIPTIONS: Record<string, string> = {
  version: "Config format version: 1.",
  app: "The app's name: names the compose project, the lock and the ledger on the hosts.",
  image: "The image deploy-kit builds and deploys.",
  "image.name": "Repository without tag, e.g. ghcr.io/acme/app. Releases are pinned by digest.",
  "image.context": "Build context, relative to the repository root.",
  "image.dockerfile":
    "Dockerfile, relative to the repository root (like build-push-action's `file`). Default: <context>/Dockerfile, as docker build and Compose do.",
  "image.build-args": "Extra build args; GIT_SHA, BUILD_DATE and APP_VERSION are always passed.",
  "image.platforms": "Platforms for docker buildx, e.g. [linux/amd64, linux/arm64].",
  environments: "Deploy targets by name (staging, production, ...).",
  "*.url": "The environment's URL: GitHub Deployment link, summaries, default smoke base URL.",
  "*.hosts":
    'Servers: "user@host:port" or {host, port, user, alias}; or host-env/user-env/port-env naming environment variables read at run time (masked; alias required). Aliases name hosts in logs.',
  "*.ssh": "SSH settings: jump host, connect timeout, keepalive.",
  "*.ssh.jump": "A bastion every host is reached through (its key must be in known-hosts too).",
  "*.path":
    "Deploy directory on the host; the compose file is uploaded here, the operator's .env lives here.",
  "*.compose": "The compose file (in the repository) and the service(s) whose image deploy-kit sets.",
  "*.env-file":
    "The operator's env file on the host: checked (mode, key names), never read for values, never written.",
  "*.strategy":
    "recreate (compose up in place) or blue-green (a second color behind a proxy, zero downtime).",
  "*.blue-green": "Blue-green settings: ports per color, the proxy's upstream file and reload command.",
  "*.blue-green.proxy.switch":
    "reload (default): rewrite the upstream file and reload nginx on every switch (a reload closes idle keep-alive connections). file: the include names both colours and nginx reads the live one per request from <upstream-file>.green; a switch needs no reload and drops no connection. Include the file in the proxied location and proxy_pass http://$<upstream-name>_upstream;",
  "*.parallel": 'Hosts deployed at once: a number or a percentage like "50%". Fail-fast.',
  "*.health": "Health gate: the new containers must be running and healthy within timeout.",
  "*.lock":
    "Deploy lock on the hosts: wait = how long a second deploy waits; lease = when a lock counts as stale.",
  "*.migrate": "Migrations: run once per environment, in the NEW image, before the switch.",
  "*.migrate.command": "The migration command, run as compose run --rm --no-deps <service> <command>.",
  "*.migrate.plan-command": "Prints what would run, for dry-run (e.g. alembic upgrade head --sql).",
  "*.migrate.backup":
    "pg_dump -Fc inside this compose service before migrating, verified before the migration may depend on it.",
  "*.migrate.backup.verify":
    "How a dump is proven good. list: pg_restore --list reads its table of contents. restore: a trial restore into a scratch database (dk_trial_*, created and dropped by deploy-kit inside the db service; the database user needs CREATEDB), its size and duration reported. Default: restore when required is true, list otherwise.",
  "*.migrate.backup.verify-timeout":
    "Deadline of the trial restore (verify: restore); past it the backup counts as failed. Default 10m.",
  "*.smoke": "Smoke checks after the deploy; version-field proves the new release answers.",
  "*.smoke.from":
    "runner (requests from the CI machine) or host (over SSH, for endpoints only the server reaches).",
  "*.smoke.watch":
    "After the smoke test passes, keep probing the checks for duration (every interval; per host with from: host) and roll back when a target's failure ratio exceeds max-failure-ratio or its p95 latency exceeds max-latency, once it has min-probes probes.",
  "*.smoke.bearer-token-env": "NAME of an env var whose value is sent as Authorization: Bearer (masked).",
  "*.rollback": "on-failure: put the previous release back when the health gate or smoke test fails.",
  notify: "Notifications per deploy outcome. Values are NAMES of env vars / secrets, never URLs.",
};

function at(root: Node, path: string): Node | undefined {
  let node: Node | undefined = root;
  for (const key of path.split(".")) {
    if (!node) return undefined;
    if (key === "*") node = node.additionalProperties as Node | undefined;
    else node = node.properties?.[key];
  }
  return node;
}

/** The JSON Schema editors use to check deploy-kit.yml as it is typed (what users write). */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, {
    io: "input",
    unrepresentable: "any",
    target: "draft-2020-12",
  }) as Node;
  // Hosts are parsed from "user@host:port" or a mapping; show editors the mapping's real keys.
  const host = z.toJSONSchema(hostObject, { io: "input", target: "draft-2020-12" }) as Node;
  delete host.$schema;
  const hostOrString = { anyOf: [{ type: "string", description: "user@host:port" }, host] };
  const env = at(schema, "environments.*");
  const hosts = env?.properties?.hosts as Node | undefined;
  if (hosts) hosts.items = hostOrString;
  const ssh = env?.properties?.ssh as Node | undefined;
  if (ssh?.properties?.jump) ssh.properties.jump = hostOrString as Node;
  for (const [path, description] of Object.entries(DESCRIPTIONS)) {
    const node = path.startsWith("*") ? at(schema, `environments.${path}`) : at(schema, path);
    if (!node) throw new Error(`json-schema: no key at ${path}`);
    node.description = description;
  }
  return {
    ...schema,
    $id: "https://github.com/deploy-kit/deploy-kit/schema/deploy-kit.schema.json",
    title: "deploy-kit.yml",
    description: "Configuration of deploy-kit: the app, its image and the environments it deploys to.",
  };
}
