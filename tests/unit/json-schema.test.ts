import { describe, expect, it } from "vitest";
import { configJsonSchema } from "../../src/config/json-schema.js";

describe("JSON Schema for editors", () => {
  const schema = configJsonSchema() as Record<string, any>;
  const env = schema.properties.environments.additionalProperties;

  it("describes the keys users write", () => {
    expect(schema.properties.app.description).toContain("compose project");
    expect(env.properties.path.description).toContain("Deploy directory");
    expect(env.properties.lock.description).toContain("lease");
  });

  it("shows the real keys of a host mapping", () => {
    const mapping = env.properties.hosts.items.anyOf[1];
    expect(Object.keys(mapping.properties).sort()).toEqual([
      "alias",
      "host",
      "host-env",
      "port",
      "port-env",
      "user",
      "user-env",
    ]);
    expect(mapping.properties["host-env"].description).toMatch(/^NAME of an environment variable/);
    expect(mapping.additionalProperties).toBe(false);
  });
});
