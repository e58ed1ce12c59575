import { posix } from "node:path";
import { z } from "zod";
import { parseDuration } from "./duration.js";

// Names that end up in remote commands, file names and compose project names are validated
// here, on top of the quoting every command applies: a config can never inject a command.
const NAME = /^[a-z][a-z0-9-]*$/;
const SERVICE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const HOSTNAME =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(?:\d{1,3}\.){3}\d{1,3}$/;
const IPV6 = /^\[?[0-9A-Fa-f:]+\]?$/;
const USER = /^[a-z_][a-z0-9_.-]{0,31}$/;
const ALIAS = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SAFE_PATH = /^\/[A-Za-z0-9._/-]*$/;
const PG_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const PG_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter, digit or '_'";
const IMAGE_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/**
 * A duration with an upper bound: a typo like `health.timeout: 60h` (or a number of ms taken
 * for seconds) would otherwise hold a deploy, and the lock, for days.
 */
export const duration = (fallback: string | undefined, max: string) => {
  const maxMs = parseDuration(max)!;
  const base = z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({
          code: "custom",
          message: `"${v}" is not a duration: use e.g. 30s, 5m, 800ms or a number of seconds`,
        });
        return z.NEVER;
      }
      if (ms > maxMs) {
        ctx.addIssue({ code: "custom", message: `"${v}" is too long: at most ${max}` });
        return z.NEVER;
      }
      return ms;
    })
    .meta({ description: `a duration: 30s, 5m, 800ms, 1h, or a number of seconds; at most ${max}` });
  // prefault, not default: the fallback goes through the same parsing as a value the user wrote.
  return fallback === undefined ? base : base.prefault(fallback);
};

// An omitted section is parsed as {} so each key's own default applies.
const EMPTY = {} as never;

// A host, user and port are validated the same way whether written here or read at run time
// from an environment variable (src/deploy/hosts.ts resolveHost).
export const hostValue = z
  .string()
  .refine((h) => HOSTNAME.test(h) || IPV4.test(h) || IPV6.test(h), "not a host name or IP address");
export const userValue = z.string().regex(USER, "not a valid user name");
export const portValue = z.number().int().min(1).max(65535);
const envVarName = (what: string) =>
  z
    .string()
    .regex(ENV_KEY, "the NAME of an environment variable (letters, digits, '_')")
    .meta({ description: `NAME of an environment variable holding the ${what}, read at run time (masked)` })
    .optional();

export const hostObject = z
  .strictObject({
    host: hostValue.optional(),
    port: portValue.default(22),
    user: userValue.default("deploy"),
    alias: z.string().regex(ALIAS, "aliases use letters, digits, '.', '_' and '-'").optional(),
    "host-env": envVarName('host (or "user@host:port")'),
    "user-env": envVarName("user"),
    "port-env": envVarName("port"),
  })
  .superRefine((h, ctx) => {
    if (!h.host === !h["host-env"])
      ctx.addIssue({
        code: "custom",
        message: h.host
          ? "give host or host-env, not both"
          : "needs host (or host-env: the NAME of a variable)",
      });
  });

export type HostInput = z.input<typeof hostObject>;

/** "user@host:port", "host:port", "host" -> the host object. */
export function parseHostString(s: string): HostInput | undefined {
  const m = /^(?:([^@\s]+)@)?(\[[0-9A-Fa-f:]+\]|[^:@\s]+)(?::(\d+))?$/.exec(s.trim());
  if (!m) return undefined;
  return {
    host: m[2]!.replace(/^\[|\]$/g, ""),
    ...(m[1] ? { user: m[1] } : {}),
    ...(m[3] ? { port: Number(m[3]) } : {}),
  };
}

const hostString = z.string().transform((s, ctx) => {
  const parsed = parseHostString(s);
  if (!parsed) {
    ctx.addIssue({ code: "custom", message: `"${s}" is not "user@host:port"` });
    return z.NEVER;
  }
  return parsed;
});

/** A host as a mapping or as "user@host:port"; the result has every field. */
const host = z
  .union([hostString, z.record(z.string(), z.unknown())])
  .pipe(hostObject)
  .superRefine((h, ctx) => {
    // The value may be a secret: it is masked, so logs and summaries need a name for the host.
    if (h["host-env"] && !h.alias)
      ctx.addIssue({
        code: "custom",
        message: "a host from host-env needs an alias: it names the host in logs",
      });
  })
  .transform((h) => ({ ...h, alias: h.alias ?? h.host! }));

const serviceName = z.string().regex(SERVICE, "service names use letters, digits, '.', '_' and '-'");

const regex = z.string().refine((r) => {
  try {
    new RegExp(r);
    return true;
  } catch {
    return false;
  }
}, "not a valid regular expression");

const smokeCheck = z.strictObject({
  path: z.string().startsWith("/", "starts with /"),
  method: z.enum(["GET", "HEAD", "POST"]).default("GET"),
  status: z.number().int().min(100).max(599).default(200),
  body: regex.optional(),
  json: z.record(z.string(), z.unknown()).optional(),
  /** Header name -> a regex its value must match. */
  headers: z.record(z.string(), regex).optional(),
  "version-field": z.string().optional(),
  "max-latency": duration(undefined, "5m").optional(),
});

// --- strategy: blue-green (src/deploy/blue-green.ts) -------------------------------------------
// Each color is its own compose project (<app>-blue, <app>-green) publishing the proxied service on
// its own port; the proxy's upstream file is rewritten and the proxy reloaded to switch.
const noNewline = (s: string) => !/[\r\n]/.test(s);
const port = z.number().int().min(1).max(65535);
const blueGreen = z.strictObject({
  /** The service behind the proxy (default: the first of compose.service). */
  service: serviceName.optional(),
  /** The port the service listens on inside its container. */
  "container-port": port,
  ports: z
    .strictObject({ blue: port, green: port })
    .refine((p) => p.blue !== p.green, "blue and green need different ports"),
  /** Where the color's port is published on the host; the proxy connects there. */
  "bind-address": z.string().regex(IPV4, "an IPv4 address").default("127.0.0.1"),
  proxy: z.strictObject({
    type: z.literal("nginx").default("nginx"),
    "upstream-file": z
      .string()
      .regex(SAFE_PATH, "an absolute path of letters, digits, '.', '_', '-' and '/'")
      .refine((p) => !p.split("/").includes(".."), "must not contain '..'")
      .refine((p) => !p.endsWith("/"), "a file, not a directory"),
    "upstream-name": z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, '_' and '-'")
      .optional(),
    // The user's own commands (like migrate.command), run on the host in a `set -eu` script.
    "test-command": z.string().min(1).refine(noNewline, "one line").optional(),
    "reload-command": z.string().min(1).refine(noNewline, "one line").default("nginx -s reload"),
    // Each of test-command and reload-command is stopped after this long, on the host.
    "reload-timeout": duration("30s", "5m"),
    // reload: rewrite the upstream and reload nginx on every switch. file: the include names both
    // colours and nginx reads the live one from a marker file per request, so a switch needs no
    // reload, and no keep-alive connection is closed by one.
    switch: z.enum(["reload", "file"]).default("reload"),
    "verify-url": z.url({ protocol: /^https?$/ }),
    "verify-timeout": duration("10s", "10m"),
  }),
  drain: duration("5s", "1h"),
  "keep-warm": z.boolean().default(false),
  /**
   * Services of the compose file that run outside the colours (a database, a cache): deploy-kit
   * never starts them per colour and never stops them; the operator runs them once.
   */
  "shared-services": z.array(serviceName).max(50).default([]),
});

const environment = z.strictObject({
  url: z.url({ protocol: /^https?$/ }).optional(),
  hosts: z.array(host).min(1, "at least one host").max(200),
  ssh: z
    .strictObject({
      jump: z
        .union([hostString, z.record(z.string(), z.unknown())])
        .pipe(hostObject)
        .optional(),
      "connect-timeout": duration("20s", "5m"),
      keepalive: duration("10s", "5m"),
    })
    .prefault(EMPTY),
  path: z
    .string()
    .regex(SAFE_PATH, "an absolute path of letters, digits, '.', '_', '-' and '/'")
    .refine((p) => !p.split("/").includes(".."), "must not contain '..'")
    .refine((p) => p.replace(/\/+$/, "").length > 1, "must not be /"),
  compose: z.strictObject({
    file: z
      .string()
      .regex(/^[A-Za-z0-9._/-]+$/, "a relative path of letters, digits, '.', '_', '-' and '/'")
      .refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "must be inside the repository")
      .default("compose.yml"),
    service: z
      .union([serviceName, z.array(serviceName).min(1)])
      .transform((s) => (Array.isArray(s) ? s : [s])),
  }),
  "env-file": z
    .strictObject({
      name: z
        .string()
        .regex(/^[A-Za-z0-9._-]+$/, "a file name of letters, digits, '.', '_' and '-'")
        // "." and ".." are the deploy path itself and its parent, not a file beside compose.
        .refine((n) => n !== "." && n !== "..", "must be a file in the deploy path")
        .default(".env"),
      "required-keys": z.array(z.string().regex(ENV_KEY, "not an environment variable name")).default([]),
    })
    .optional(),
  strategy: z.enum(["recreate", "blue-green"]).default("recreate"),
  "blue-green": blueGreen.optional(),
  parallel: z
    .union([
      z.number().int().min(1),
      z.string().regex(/^(100|[1-9]?\d)%$/, 'a number or a percentage like "50%"'),
    ])
    .default(1),
  health: z.strictObject({ timeout: duration("60s", "1h"), interval: duration("1s", "1m") }).prefault(EMPTY),
  lock: z.strictObject({ wait: duration("2m", "1h"), lease: duration("30m", "24h") }).prefault(EMPTY),
  migrate: z
    .strictObject({
      command: z.string().min(1),
      "plan-command": z.string().min(1).optional(),
      service: serviceName.optional(),
      timeout: duration("10m", "24h"),
      backup: z
        .strictObject({
          required: z.boolean().default(false),
          service: serviceName,
          "database-env": z.string().regex(ENV_KEY, "not an environment variable name").optional(),
          // A leading letter, digit or '_': never read as a pg_dump option.
          database: z.string().regex(PG_NAME, PG_NAME_RULE).optional(),
          user: z.string().regex(PG_NAME, PG_NAME_RULE).optional(),
          keep: z.number().int().min(1).max(1000).default(7),
          // Default (unset): restore when required, list otherwise; see verifyMode().
          verify: z.enum(["list", "restore"]).optional(),
          "verify-timeout": duration("10m", "24h"),
          // A dump kept only on the host dies with it: copy each verified one to the runner.
          "copy-to-runner": z.boolean().default(false),
        })
        .refine((b) => b["database-env"] || b.database, {
          message: "set database-env (the env var holding the database URL) or database",
        })
        .optional(),
    })
    .optional(),
  smoke: z
    .strictObject({
      "base-url": z.url({ protocol: /^https?$/ }).optional(),
      from: z.enum(["runner", "host"]).default("runner"),
      retries: z.number().int().min(0).max(1000).default(10),
      interval: duration("3s", "5m"),
      timeout: duration("5s", "5m"),
      "bearer-token-env": z.string().regex(ENV_KEY, "not an environment variable name").optional(),
      checks: z.array(smokeCheck).min(1),
      // After the smoke test passes: keep probing for a while and roll back on a bad trend.
      watch: z
        .strictObject({
          duration: duration(undefined, "24h"),
          interval: duration("10s", "10m"),
          "max-failure-ratio": z.number().min(0).max(1).default(0.1),
          "max-latency": duration(undefined, "5m").optional(),
          "min-probes": z.number().int().min(1).max(100000).default(5),
        })
        .optional(),
    })
    .optional(),
  rollback: z
    .strictObject({
      "on-failure": z.boolean().default(true),
      "keep-releases": z.number().int().min(2).max(1000).default(5),
    })
    .prefault(EMPTY),
});

// blue-green: the strategy and its section go together.
const checkedEnvironment = environment.superRefine((e, ctx) => {
  if (e.strategy === "blue-green" && !e["blue-green"])
    ctx.addIssue({
      code: "custom",
      path: ["blue-green"],
      message: "strategy: blue-green needs a blue-green section (proxy, ports, container-port)",
    });
  if (e.strategy !== "blue-green" && e["blue-green"])
    ctx.addIssue({
      code: "custom",
      path: ["strategy"],
      message: "a blue-green section is set but strategy is recreate: set strategy: blue-green",
    });
  const envFile = e["env-file"]?.name ?? ".env";
  if (e.compose.file.split("/").pop() === envFile)
    ctx.addIssue({
      code: "custom",
      path: ["compose", "file"],
      message: `must not be named ${envFile}: it is uploaded beside the operator's env-file and would overwrite it`,
    });
  const bg = e["blue-green"];
  if (bg?.service && !e.compose.service.includes(bg.service))
    ctx.addIssue({
      code: "custom",
      path: ["blue-green", "service"],
      message: `must be one of compose.service (${e.compose.service.join(", ")})`,
    });
  // switch: file names an nginx variable after it, and `$1...` would be a regex capture there.
  if (bg?.proxy.switch === "file" && /^[0-9]/.test(bg.proxy["upstream-name"] ?? ""))
    ctx.addIssue({
      code: "custom",
      path: ["blue-green", "proxy", "upstream-name"],
      message:
        "with switch: file it names the nginx variable $<upstream-name>_upstream: start it with a letter",
    });
  for (const [i, name] of (bg?.["shared-services"] ?? []).entries())
    if (e.compose.service.includes(name))
      ctx.addIssue({
        code: "custom",
        path: ["blue-green", "shared-services", i],
        message: `${name} is deployed per colour (compose.service): a shared service runs outside the colours`,
      });
});

export const configSchema = z.strictObject({
  version: z.literal(1, { message: "version must be 1" }),
  app: z.string().regex(NAME, "lower-case letters, digits and '-', starting with a letter").max(50),
  image: z.strictObject({
    name: z
      .string()
      .regex(IMAGE_NAME, "a lower-case repository name without tag, like ghcr.io/acme/app")
      .refine(
        (n) => !/@|:[^/]*$/.test(n.replace(/^[^/]+:\d+\//, "")),
        "give the name without a tag or digest",
      ),
    context: z
      .string()
      .refine(
        (c) => !c.startsWith("/") && !/^[A-Za-z]:/.test(c) && !posix.normalize(c).split("/").includes(".."),
        "a directory inside the repository (relative, without '..')",
      )
      .default("."),
    dockerfile: z.string().optional(),
    "build-args": z
      .record(
        z.string().regex(ENV_KEY, "not an environment variable name"),
        z.union([z.string(), z.number(), z.boolean()]).transform(String),
      )
      .default({}),
    platforms: z
      .array(z.string().regex(/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/, "like linux/amd64"))
      .optional(),
  }),
  environments: z
    .record(
      z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, "lower-case letters, digits, '_' and '-'"),
      checkedEnvironment,
    )
    .refine((e) => Object.keys(e).length > 0, "define at least one environment"),
  notify: z
    .strictObject({
      "slack-webhook-env": z.string().regex(ENV_KEY, "not an environment variable name").optional(),
      "discord-webhook-env": z.string().regex(ENV_KEY, "not an environment variable name").optional(),
      "webhook-env": z.string().regex(ENV_KEY, "not an environment variable name").optional(),
    })
    .optional(),
});

export type Config = z.output<typeof configSchema>;
export type Environment = Config["environments"][string];
export type Host = Environment["hosts"][number];
export type SmokeCheck = NonNullable<Environment["smoke"]>["checks"][number];
