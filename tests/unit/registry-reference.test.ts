import { describe, expect, it, test } from "vitest";
import { ConfigError } from "../../src/core/errors.js";
import { isPrivateAddress, parseImageName, registryScheme } from "../../src/registry/reference.js";

describe("parseImageName", () => {
  test.each([
    ["ghcr.io/acme/app", "ghcr.io", "ghcr.io", "acme/app", "ghcr.io/acme/app"],
    ["GHCR.io/Acme/App", "ghcr.io", "ghcr.io", "acme/app", "ghcr.io/acme/app"],
    [
      "10.200.0.1:5001/t4-example",
      "10.200.0.1:5001",
      "10.200.0.1:5001",
      "t4-example",
      "10.200.0.1:5001/t4-example",
    ],
    ["localhost/app", "localhost", "localhost", "app", "localhost/app"],
    ["nginx", "docker.io", "registry-1.docker.io", "library/nginx", "nginx"],
    ["acme/app", "docker.io", "registry-1.docker.io", "acme/app", "acme/app"],
    ["docker.io/acme/app", "docker.io", "registry-1.docker.io", "acme/app", "docker.io/acme/app"],
  ])("%s", (input, registry, apiHost, repository, name) => {
    expect(parseImageName(input)).toEqual({ registry, apiHost, repository, name });
  });

  test.each(["ghcr.io/acme/app:1.0", "app@sha256:abc", "", "a b"])("refuses %j", (input) => {
    expect(() => parseImageName(input)).toThrow(ConfigError);
  });
});

describe("registryScheme: plain HTTP only where credentials cannot cross the internet", () => {
  test.each([
    ["127.0.0.1:5000", false, "http"],
    ["localhost:5000", false, "http"],
    ["[::1]:5000", false, "http"],
    ["10.200.0.1:5001", false, "https"],
    ["10.200.0.1:5001", true, "http"],
    ["192.168.1.10:5000", true, "http"],
    ["172.20.0.5", true, "http"],
    ["ghcr.io", false, "https"],
  ] as const)("%s insecure=%s -> %s", (registry, insecure, scheme) => {
    expect(registryScheme(registry, insecure)).toBe(scheme);
  });

  test.each(["ghcr.io", "8.8.8.8:5000", "172.32.0.1", "registry.internal"])(
    "insecure-registry refused for %s",
    (registry) => {
      expect(() => registryScheme(registry, true)).toThrow(/not on a private address/);
    },
  );

  it("knows private ranges", () => {
    expect(isPrivateAddress("10.0.0.1")).toBe(true);
    expect(isPrivateAddress("11.0.0.1")).toBe(false);
  });
});
