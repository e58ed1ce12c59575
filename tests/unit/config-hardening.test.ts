import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig, selectEnvironment } from "../../src/config/load.js";
import { ConfigError } from "../../src/core/errors.js";
import { parseComposeSource } from "../../src/deploy/compose-file.js";

const REPO = join(import.meta.dirname, "../..");

/** A valid file; `extra` is spliced into the staging environment, `image` into image:. */
function file(extra = "", image = "") {
  return `version: 1
app: shop
image:
  name: ghcr.io/acme/shop
${image}
environments:
  staging:
    hosts: [deploy@203.0.113.10]
    path: /opt/shop
    compose: { file: compose.yml, service: api }
${extra}`;
}

function problems(text: string, opts: { environment?: string } = {}) {
  try {
    parseConfig(text, "deploy-kit.yml", opts);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("environment names resolve to own entries only", () => {
  it.each([["constructor"], ["toString"], ["__proto__"], ["hasOwnProperty"]])("%s", (name) => {
    const config = parseConfig(file());
    expect(() => selectEnvironment(config, name)).toThrow(`No environment "${name}"`);
    expect(problems(file(), { environment: name })[0]?.message).toContain(`no environment "${name}"`);
  });
});

describe("bad input refused at load time, with path and line", () => {
  it.each([
    [
      "an invalid smoke headers regex",
      "    smoke:\n      checks:\n        - path: /health\n          headers: { content-type: 'application/(json' }",
      "",
      "environments.staging.smoke.checks[0].headers.content-type",
      "not a valid regular expression",
      14,
    ],
    [
      "compose.file named .env",
      "    env-file: {}\n",
      "",
      "environments.staging.compose.file",
      "must not be named .env: it is uploaded beside the operator's env-file",
      10,
    ],
    [
      "a database name that is an option",
      "    migrate:\n      command: migrate\n      backup: { service: db, database: --schema-only }",
      "",
      "environments.staging.migrate.backup.database",
      "starting with a letter, digit or '_'",
      13,
    ],
    [
      "a database user that is an option",
      "    migrate:\n      command: migrate\n      backup: { service: db, database: app, user: -W }",
      "",
      "environments.staging.migrate.backup.user",
      "starting with a letter, digit or '_'",
      13,
    ],
    ["image.context: /", "", "  context: /", "image.context", "inside the repository", 5],
    [
      "image.context escaping the repo",
      "",
      "  context: ../other",
      "image.context",
      "inside the repository",
      5,
    ],
    [
      "image.context escaping the repo",
      "",
      "  context: a/../../b",
      "image.context",
      "inside the repository",
      5,
    ],
    [
      "an unbounded health timeout",
      "    health: { timeout: 60h }",
      "",
      "environments.staging.health.timeout",
      '"60h" is too long: at most 1h',
      11,
    ],
    [
      "an unbounded lock lease",
      "    lock: { lease: 3000000 }",
      "",
      "environments.staging.lock.lease",
      "at most 24h",
      11,
    ],
    [
      "an unbounded connect timeout",
      "    ssh: { connect-timeout: 1h }",
      "",
      "environments.staging.ssh.connect-timeout",
      "at most 5m",
      11,
    ],
  ])("%s", (_what, extra, image, path, message, line) => {
    let text = file(extra, image);
    if (_what === "compose.file named .env") text = text.replace("file: compose.yml", "file: deploy/.env");
    const p = problems(text);
    expect(p).toEqual([expect.objectContaining({ path, line })]);
    expect(p[0]!.message).toContain(message);
  });

  it("compose.file named like a custom env-file is refused too", () => {
    const text = file("    env-file: { name: app.env }").replace("file: compose.yml", "file: app.env");
    expect(problems(text)[0]?.message).toContain("must not be named app.env");
  });

  it("durations at their bound are accepted", () => {
    const c = parseConfig(file("    health: { timeout: 1h }\n    lock: { lease: 24h }"));
    expect(c.environments.staging!.health.timeout).toBe(3_600_000);
  });
});

const SECRETS: [string, string][] = [
  ["OpenAI key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"],
  ["GitHub token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"],
  ["AWS key", "AKIAIOSFODNN7EXAMPLE"],
  ["Slack token", "xoxb-123456789012-abcdefghijkl"],
  ["Stripe key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"],
  ["JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
  ["random key", "q8Vn2Lr7Tz4Kp1Xw9Bc6Hs3Jd5Fg0Ma"],
];

describe("committed secrets are refused by value and by key name, never echoed", () => {
  it.each(SECRETS)("a build-arg holding a %s", (_what, value) => {
    const p = problems(file("", `  build-args: { VERSION: "${value}" }`));
    expect(p).toEqual([expect.objectContaining({ path: "image.build-args.VERSION", line: 5 })]);
    expect(JSON.stringify(p)).not.toContain(value);
  });

  it.each([["NPM_TOKEN"], ["DB_PASSWORD"], ["SIGNING_SECRET"], ["SENTRY_API_KEY"]])(
    "a build-arg named %s with a literal value",
    (key) => {
      const p = problems(file("", `  build-args: { ${key}: hunter2 }`));
      expect(p[0]).toMatchObject({ path: `image.build-args.${key}`, line: 5 });
      expect(p[0]!.message).toContain(`${key} names a secret`);
      expect(JSON.stringify(p)).not.toContain("hunter2");
    },
  );

  it("a secret anywhere in the file, e.g. a smoke header", () => {
    const value = SECRETS[0]![1];
    const p = problems(
      file(`    smoke:\n      checks:\n        - path: /health\n          json: { api-token: "${value}" }`),
    );
    expect(p[0]).toMatchObject({ path: "environments.staging.smoke.checks.json.api-token", line: 14 });
    expect(JSON.stringify(p)).not.toContain(value);
  });

  it.each([
    ["PYTHON_VERSION", "3.12"],
    ["GIT_SHA", "0123456789abcdef0123456789abcdef01234567"],
    [
      "BASE_IMAGE",
      "ghcr.io/acme/base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ],
    ["NPM_TOKEN", ""],
    ["PUBLIC_KEY_URL", "https://example.com/keys"],
  ])("leaves build-arg %s alone", (key, value) => {
    expect(() => parseConfig(file("", `  build-args: { ${key}: "${value}" }`))).not.toThrow();
  });

  it("the repository's examples and good fixtures still validate", () => {
    parseConfig(readFileSync(join(REPO, "examples/deploy-kit.yml"), "utf8"));
    const dir = join(REPO, "tests/fixtures/config/good");
    for (const f of readdirSync(dir)) parseConfig(readFileSync(join(dir, f), "utf8"), f);
  });
});

describe("the compose file is scanned before it is uploaded", () => {
  const compose = (env: string) =>
    `services:\n  api:\n    image: app\n    env_file: .env\n    environment:\n${env}\n`;

  it.each([
    ["      DATABASE_URL: postgres://app:S3cretPw@db/app", "services.api.environment.DATABASE_URL", 6],
    ["      POSTGRES_PASSWORD: S3cretPw", "services.api.environment.POSTGRES_PASSWORD", 6],
    ["      - JWT_SECRET=S3cretPw", "services.api.environment", 6],
    [`      OPENAI: ${SECRETS[0]![1]}`, "services.api.environment.OPENAI", 6],
  ])("%s", (env, path, line) => {
    let err: unknown;
    try {
      parseComposeSource("compose.yml", compose(env), ["api"], "deploy/compose.yml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.message).toContain("deploy/compose.yml");
    expect(e.problems).toEqual([expect.objectContaining({ file: "deploy/compose.yml", path, line })]);
    expect(JSON.stringify(e.problems) + e.message).not.toMatch(/S3cretPw|sk-proj/);
  });

  // Compose interpolation: the value comes from the host's .env, not from the file.
  const ref = (inner: string) => `\${${inner}}`;
  it.each([
    [`      POSTGRES_PASSWORD: ${ref("POSTGRES_PASSWORD")}`],
    [`      - JWT_SECRET=${ref("JWT_SECRET:-")}`],
    [`      APP_ENV: ${ref("APP_ENV:-production")}`],
  ])("accepts %s", (env) => {
    expect(() => parseComposeSource("compose.yml", compose(env), ["api"])).not.toThrow();
  });

  it("the example app's compose file passes", () => {
    const text = readFileSync(join(REPO, "examples/app/compose.yml"), "utf8");
    expect(parseComposeSource("compose.yml", text, ["api"]).name).toBe("compose.yml");
  });
});
