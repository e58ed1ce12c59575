import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/core/errors.js";

const good = `version: 1
app: clicknback
image:
  name: ghcr.io/acme/clicknback
environments:
  staging:
    url: https://staging.example.com
    hosts:
      - { host: 203.0.113.10, port: 22, user: deploy, alias: staging-1 }
      - deploy@203.0.113.11:2222
    path: /opt/clicknback
    compose:
      file: compose.yml
      service: api
    health: { timeout: 90s }
`;

function problems(text: string) {
  try {
    parseConfig(text, "deploy-kit.yml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("config", () => {
  it("parses a good file with defaults", () => {
    const c = parseConfig(good);
    const env = c.environments.staging!;
    expect(env.hosts[1]).toEqual({ host: "203.0.113.11", port: 2222, user: "deploy", alias: "203.0.113.11" });
    expect(env.health.timeout).toBe(90_000);
    expect(env.ssh["connect-timeout"]).toBe(20_000);
    expect(env.compose.service).toEqual(["api"]);
    expect(env.rollback["keep-releases"]).toBe(5);
    expect(env.lock.wait).toBe(120_000);
  });
  it("names path and line for an unknown key with a suggestion", () => {
    const p = problems(good.replace("    path:", "    pth: /x\n    path:"));
    expect(p[0]).toMatchObject({ path: "environments.staging.pth", line: 11, col: 5 });
    expect(p[0]!.message).toContain('did you mean "path"');
  });
});
