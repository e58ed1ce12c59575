import { describe, expect, it, test } from "vitest";
import {
  defaultVersion,
  planBuild,
  refTags,
  sanitiseTag,
  semverTags,
  shaTag,
  taggedRefs,
} from "../../src/build/plan.js";
import { ConfigError } from "../../src/core/errors.js";

const SHA = "0123456789abcdef0123456789abcdef01234567";
const image = {
  name: "ghcr.io/Acme/App",
  context: ".",
  dockerfile: "Dockerfile",
  "build-args": { PYTHON_VERSION: "3.12" },
};

describe("tags", () => {
  test.each([
    ["v1.2.3", ["1.2.3", "1.2", "1"]],
    ["1.2.3", ["1.2.3", "1.2", "1"]],
    ["v10.0.1+build.5", ["10.0.1", "10.0", "10"]],
    ["v1.2.3-rc.1", ["1.2.3-rc.1"]],
    ["release-2024", []],
    ["v1.2", []],
  ])("semverTags(%s)", (tag, expected) => {
    expect(semverTags(tag)).toEqual(expected);
  });

  test.each([
    ["refs/tags/v1.2.3", ["1.2.3", "1.2", "1"]],
    ["refs/tags/release/2024", ["release-2024"]],
    ["refs/heads/main", ["main"]],
    ["refs/heads/feature/Login_Page", ["feature-Login_Page"]],
    ["refs/heads/-weird--", ["weird"]],
    ["refs/pull/42/merge", ["pr-42"]],
    [undefined, []],
  ])("refTags(%s)", (ref, expected) => {
    expect(refTags(ref)).toEqual(expected);
  });

  it("sanitises to at most 128 characters", () => {
    expect(sanitiseTag("a".repeat(200))).toHaveLength(128);
    expect(sanitiseTag("föö bar")).toBe("f-bar");
  });

  it("sha tag is sha- and 12 hex digits; SHAs are checked", () => {
    expect(shaTag(SHA.toUpperCase())).toBe("sha-0123456789ab");
    expect(() => shaTag("abc")).toThrow(ConfigError);
    expect(() => shaTag("z".repeat(40))).toThrow(/not a git commit SHA/);
  });

  test.each([
    ["refs/tags/v2.0.0", "2.0.0"],
    ["refs/tags/v2.0.0-beta.2", "2.0.0-beta.2"],
    ["refs/heads/main", "0123456789ab"],
    [undefined, "0123456789ab"],
  ])("defaultVersion for %s is %s", (ref, version) => {
    expect(defaultVersion(SHA, ref)).toBe(version);
  });
});

describe("planBuild", () => {
  it("computes tags, stamps, labels and lower-cases the name", () => {
    const plan = planBuild({
      image,
      sha: SHA,
      ref: "refs/tags/v1.4.0",
      extraTags: ["latest", "1.4"],
      sourceUrl: "https://github.com/acme/app",
      now: new Date("2026-03-01T10:20:30.456Z"),
    });
    expect(plan.tags).toEqual(["sha-0123456789ab", "1.4.0", "1.4", "1", "latest"]);
    expect(taggedRefs(plan)[0]).toBe("ghcr.io/acme/app:sha-0123456789ab");
    expect(plan.buildArgs).toEqual({
      PYTHON_VERSION: "3.12",
      GIT_SHA: SHA,
      BUILD_DATE: "2026-03-01T10:20:30Z",
      APP_VERSION: "1.4.0",
    });
    expect(plan.labels).toEqual({
      "org.opencontainers.image.revision": SHA,
      "org.opencontainers.image.created": "2026-03-01T10:20:30Z",
      "org.opencontainers.image.version": "1.4.0",
      "org.opencontainers.image.source": "https://github.com/acme/app",
    });
    expect(plan.overridden).toEqual([]);
  });

  it("the version input wins; config build-args cannot replace the stamps", () => {
    const plan = planBuild({
      image: { ...image, "build-args": { GIT_SHA: "fake", APP_VERSION: "x" } },
      sha: SHA,
      version: "2026.3.1",
      now: new Date(0),
    });
    expect(plan.buildArgs.GIT_SHA).toBe(SHA);
    expect(plan.buildArgs.APP_VERSION).toBe("2026.3.1");
    expect(plan.overridden).toEqual(["GIT_SHA", "APP_VERSION"]);
    expect(plan.labels["org.opencontainers.image.source"]).toBeUndefined();
  });

  it("refuses extra tags that are not tags, naming them", () => {
    expect(() => planBuild({ image, sha: SHA, extraTags: ["ok", "ghcr.io/x:y", "-bad"] })).toThrow(
      'Not valid docker tags: "ghcr.io/x:y", "-bad".',
    );
  });
});
