import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { registryCredentials } from "../../src/actions/build-image.js";
import { createTempDockerConfig, credentialsFromDockerConfig } from "../../src/build/docker-config.js";
import { ConfigError } from "../../src/core/errors.js";
import { forgetSecrets, redact } from "../../src/core/secrets.js";

afterEach(() => forgetSecrets());

function userConfig(config: unknown, subdirs: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), "dk-user-docker-"));
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  for (const s of subdirs) mkdirSync(join(dir, s));
  return dir;
}

describe("temporary DOCKER_CONFIG", () => {
  it("links plugins and builders, keeps the context, copies no credentials, and is deleted", async () => {
    const user = userConfig(
      {
        auths: { "ghcr.io": { auth: Buffer.from("me:their-token").toString("base64") } },
        currentContext: "remote",
      },
      ["cli-plugins", "buildx"],
    );
    const parent = mkdtempSync(join(tmpdir(), "dk-parent-"));
    const t = await createTempDockerConfig({ parent, userDir: user });
    expect(readlinkSync(join(t.dir, "cli-plugins"))).toBe(join(user, "cli-plugins"));
    expect(readlinkSync(join(t.dir, "buildx"))).toBe(join(user, "buildx"));
    expect(existsSync(join(t.dir, "contexts"))).toBe(false);
    expect(JSON.parse(readFileSync(join(t.dir, "config.json"), "utf8"))).toEqual({
      auths: {},
      currentContext: "remote",
    });
    await t.dispose();
    expect(existsSync(t.dir)).toBe(false);
    // The user's directory is untouched.
    expect(JSON.parse(readFileSync(join(user, "config.json"), "utf8")).auths["ghcr.io"]).toBeDefined();
  });

  it("reads what an earlier docker login saved, and masks it", async () => {
    const user = userConfig({
      auths: {
        "10.200.0.1:5001": { auth: Buffer.from("dk:saved-pass:with-colon").toString("base64") },
        "https://index.docker.io/v1/": { auth: Buffer.from("hubuser:hub-token").toString("base64") },
      },
    });
    expect(await credentialsFromDockerConfig("10.200.0.1:5001", user)).toEqual({
      username: "dk",
      password: "saved-pass:with-colon",
    });
    expect(await credentialsFromDockerConfig("docker.io", user)).toEqual({
      username: "hubuser",
      password: "hub-token",
    });
    expect(await credentialsFromDockerConfig("ghcr.io", user)).toBeUndefined();
    expect(redact("x saved-pass:with-colon y")).toBe("x *** y");
  });
});

describe("registryCredentials (action inputs)", () => {
  it.each([
    ["ghcr.io", {}, undefined],
    ["ghcr.io", { githubToken: "ghs_x", actor: "octo" }, { username: "octo", password: "ghs_x" }],
    ["ghcr.io", { password: "pat", actor: "octo" }, { username: "octo", password: "pat" }],
    [
      "ghcr.io",
      { username: "bot", githubToken: "ghs_x", actor: "octo" },
      { username: "bot", password: "ghs_x" },
    ],
    ["10.200.0.1:5001", { username: "dk", password: "pw" }, { username: "dk", password: "pw" }],
    // The GitHub token is never offered to another registry.
    ["docker.io", { githubToken: "ghs_x", actor: "octo" }, undefined],
  ])("%s %j", (registry, i, expected) => {
    expect(registryCredentials(registry, i)).toEqual(expected);
  });

  it.each([
    ["docker.io", { password: "pw" }, "registry-password is set but registry-username is not"],
    ["10.200.0.1:5001", { username: "dk" }, "registry-username is set but registry-password is empty"],
  ])("refuses half credentials for %s", (registry, i, message) => {
    expect(() => registryCredentials(registry, i)).toThrow(ConfigError);
    expect(() => registryCredentials(registry, i)).toThrow(message);
  });
});
