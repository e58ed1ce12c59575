import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { foreignPlatforms } from "../../src/actions/validate-config.js";
import { REPO, runBundled } from "../support/runner.js";

const configs = ["examples/deploy-kit.yml", "tests/fixtures/config/good/full.yml"].filter((f) =>
  existsSync(join(REPO, f)),
);

describe("dist/validate-config run as the runner runs it", () => {
  it.each(configs)("passes on %s and sets the outputs", async (config) => {
    const r = await runBundled("validate-config", { inputs: { config } });
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    const envs = JSON.parse(r.outputs.environments!);
    expect(envs.length).toBeGreaterThan(0);
    const hosts = JSON.parse(r.outputs.hosts!);
    expect(hosts[0]).toHaveProperty("alias");
    expect(r.outputs["image-name"]).toMatch(/^[a-z0-9.:/_-]+$/);
    expect(r.summary).toContain("| environment | host |");
  });

  it("fails on a bad config with one annotation per problem, on its line", async () => {
    const config = "tests/fixtures/config/bad/13-port-too-big.yml";
    const r = await runBundled("validate-config", { inputs: { config } });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(
      /::error title=deploy-kit config,file=tests\/fixtures\/config\/bad\/13-port-too-big\.yml,line=13,col=\d+::environments\.staging\.hosts\[0\]\.port: /,
    );
    expect(r.stdout).not.toMatch(/\s+at .+:\d+:\d+\)/);
  });

  it("names an environment that does not exist, with a suggestion", async () => {
    const r = await runBundled("validate-config", {
      inputs: { config: "tests/fixtures/config/good/full.yml", environment: "stagin" },
    });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain('did you mean "staging"');
  });

  it("says where to put the file when it is missing", async () => {
    const r = await runBundled("validate-config", { inputs: { config: "nope/deploy-kit.yml" } });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain("Config file not found");
    expect(r.stdout).toContain("What to do:");
  });

  it.each<[string[], string, string[]]>([
    [["linux/amd64", "linux/arm64"], "x64", ["linux/arm64"]],
    [["linux/amd64", "linux/arm64"], "arm64", ["linux/amd64"]],
    [["linux/arm/v7", "linux/386"], "x64", ["linux/arm/v7"]],
    [["linux/amd64"], "x64", []],
    [[], "x64", []],
  ])("foreign platforms of %j on an %s runner: %j (what needs QEMU)", (platforms, arch, expected) => {
    expect(foreignPlatforms(platforms, arch)).toEqual(expected);
  });
});
