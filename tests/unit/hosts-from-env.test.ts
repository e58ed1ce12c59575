import { describe, expect, test } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/core/errors.js";
import { forgetSecrets, redact } from "../../src/core/secrets.js";
import { resolveHost } from "../../src/deploy/hosts.js";
import { hostLabel } from "../../src/validate/summary.js";

const config = (hosts: string, extra = "") =>
  parseConfig(`version: 1
app: shop
image: { name: ghcr.io/acme/shop }
environments:
  production:
    hosts: ${hosts}
    path: /srv/shop
    compose: { service: api }
${extra}`);

describe("hosts from environment variables named in deploy-kit.yml", () => {
  test("host-env, user-env and port-env are resolved at run time, validated, masked, shown by alias", () => {
    const c = config("[{ host-env: VPS_HOST, user-env: VPS_USER, port-env: VPS_PORT, alias: prod-1 }]");
    const h = c.environments.production!.hosts[0]!;
    // Parsing reads no variable: validate-config works in a job without the secrets.
    expect(h).toMatchObject({ alias: "prod-1", "host-env": "VPS_HOST", user: "deploy", port: 22 });
    expect(hostLabel(h)).toBe("$VPS_USER@$VPS_HOST:$VPS_PORT");
    try {
      const e = resolveHost(h, "hosts[0]", {
        VPS_HOST: "198.51.100.77",
        VPS_USER: "opsuser",
        VPS_PORT: "2222",
      });
      expect(e).toEqual({ host: "198.51.100.77", user: "opsuser", port: 2222, alias: "prod-1" });
      expect(redact("connected to 198.51.100.77 as opsuser")).toBe("connected to *** as ***");
    } finally {
      forgetSecrets();
    }
  });

  test('one variable may hold "user@host:port"', () => {
    const h = config("[{ host-env: VPS, alias: prod-1 }]").environments.production!.hosts[0]!;
    try {
      expect(resolveHost(h, "hosts[0]", { VPS: "ops@vps.example.com:2200" })).toEqual({
        host: "vps.example.com",
        user: "ops",
        port: 2200,
        alias: "prod-1",
      });
    } finally {
      forgetSecrets();
    }
  });

  test.each([
    [{}, "hosts[0].host-env: the environment variable VPS_HOST is empty or not set."],
    [{ VPS_HOST: "  " }, "hosts[0].host-env: the environment variable VPS_HOST is empty or not set."],
    [
      { VPS_HOST: "a host; rm -rf /" },
      "hosts[0].host-env: the value of VPS_HOST is not a host name or IP address.",
    ],
    [
      { VPS_HOST: "h.example", VPS_USER: "Root$(id)" },
      "hosts[0].user-env: the value of VPS_USER is not a valid user name.",
    ],
    [{ VPS_HOST: "h.example", VPS_PORT: "70000" }, "hosts[0].port-env: the value of VPS_PORT is"],
  ])("%j is refused like a literal would be, without printing the value", (env, message) => {
    const h = config("[{ host-env: VPS_HOST, user-env: VPS_USER, port-env: VPS_PORT, alias: prod-1 }]")
      .environments.production!.hosts[0]!;
    const withDefaults = { VPS_USER: "deploy", VPS_PORT: "22", ...env };
    try {
      let err: unknown;
      try {
        resolveHost(h, "hosts[0]", withDefaults as NodeJS.ProcessEnv);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(message);
      for (const v of Object.values(env)) if (v.trim()) expect((err as Error).message).not.toContain(v);
    } finally {
      forgetSecrets();
    }
  });

  test.each([
    ["[{ host-env: VPS_HOST }]", "a host from host-env needs an alias"],
    ["[{ host: h.example, host-env: VPS_HOST, alias: a }]", "give host or host-env, not both"],
    ["[{ alias: a }]", "needs host (or host-env"],
    ["[{ host-env: vps-host, alias: a }]", "the NAME of an environment variable"],
  ])("%s is a config error", (hosts, message) => {
    expect(() => config(hosts)).toThrow(ConfigError);
    try {
      config(hosts);
    } catch (e) {
      expect(JSON.stringify((e as ConfigError).problems)).toContain(message);
    }
  });

  test("a literal host needs no environment and is shown as written", () => {
    const h = config("[deploy@203.0.113.10:22]").environments.production!.hosts[0]!;
    expect(resolveHost(h, "hosts[0]", {})).toEqual({
      host: "203.0.113.10",
      user: "deploy",
      port: 22,
      alias: "203.0.113.10",
    });
    expect(hostLabel(h)).toBe("deploy@203.0.113.10:22");
  });
});
