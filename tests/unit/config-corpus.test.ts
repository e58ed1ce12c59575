import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError, describeError } from "../../src/core/errors.js";
import { REPO } from "../support/runner.js";

const dir = join(REPO, "tests/fixtures/config/bad");
const fixtures = readdirSync(dir)
  .filter((f) => f.endsWith(".yml"))
  .sort()
  .map((name) => {
    const text = readFileSync(join(dir, name), "utf8");
    const header = (key: string) => new RegExp(`^# expect-${key}: ?(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
    const line = header("line");
    return {
      name,
      text,
      path: header("path"),
      message: header("message"),
      line: line === "none" ? undefined : Number(line),
    };
  });

describe("bad config corpus", () => {
  it("has at least 40 cases", () => expect(fixtures.length).toBeGreaterThanOrEqual(40));

  it.each(fixtures)(
    "$name: a ConfigError naming the path and line",
    ({ name, text, path, message, line }) => {
      let error: unknown;
      try {
        parseConfig(text, name);
      } catch (e) {
        error = e;
      }
      expect(error, "expected the config to be refused").toBeInstanceOf(ConfigError);
      const problems = (error as ConfigError).problems;
      expect(problems.length).toBeGreaterThan(0);
      const match = problems.find((p) => p.path === path && p.message.includes(message));
      expect(
        match,
        `no problem at ${path} containing "${message}" in ${JSON.stringify(problems)}`,
      ).toBeDefined();
      if (line !== undefined) expect(match!.line).toBe(line);
      expect(match!.file).toBe(name);
      // What a person reads: message and location, never a stack trace.
      const text2 = describeError(error);
      expect(text2).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
      expect(text2).toContain(name);
    },
  );

  it.each([
    ["65-build-arg-secret.yml", "sk_live_51Hq8xQ2eZvKYlo2C0aBcDeFgHiJkLmN"],
    ["66-openai-key.yml", "sk-proj-Xq3Lm9Tz8Vb2Nc4Rd6Fe1Gh5Jk7Pw0Ys"],
  ])("%s: the refusal names the key, never the value", (name, value) => {
    const text = readFileSync(join(dir, name), "utf8");
    let error: unknown;
    try {
      parseConfig(text, name);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const said = `${describeError(error)}\n${JSON.stringify((error as ConfigError).problems)}`;
    for (let i = 0; i + 8 <= value.length; i++) expect(said).not.toContain(value.slice(i, i + 8));
  });

  it("never echoes a secret value it refuses", () => {
    const text = `version: 1\napp: a\nimage: { name: x/y }\nenvironments:\n  s:\n    url: https://admin:hunter2@s.example.com\n    hosts: [h]\n    path: /srv/a\n    compose: { service: api }\n`;
    let error: unknown;
    try {
      parseConfig(text);
    } catch (e) {
      error = e;
    }
    expect(describeError(error)).not.toContain("hunter2");
  });

  it("accepts the full example config", () => {
    const good = readFileSync(join(REPO, "tests/fixtures/config/good/full.yml"), "utf8");
    expect(parseConfig(good).environments.staging?.migrate?.backup?.keep).toBe(7);
  });
});
