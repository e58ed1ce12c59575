import { z } from "zod";
import { configSchema } from "./schema.js";

/** The JSON Schema editors use to check deploy-kit.yml as it is typed (what users write). */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, {
    io: "input",
    unrepresentable: "any",
    target: "draft-2020-12",
  });
  return {
    ...schema,
    $id: "https://github.com/deploy-kit/deploy-kit/schema/deploy-kit.schema.json",
    title: "deploy-kit.yml",
    description: "Configuration of deploy-kit: the app, its image and the environments it deploys to.",
  };
}
