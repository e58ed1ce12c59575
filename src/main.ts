import "./dirname-shim.js";
import { ACTIONS } from "./actions/index.js";
import { runAction } from "./core/run-action.js";

/** The bundle's one entry: dist/<action>/index.js calls run("<action>"). */
export async function run(name: string): Promise<void> {
  const spec = ACTIONS[name];
  if (!spec) throw new Error(`deploy-kit: no action named ${name}`);
  await runAction(spec);
}

export { cli } from "./cli/index.js";
export { configJsonSchema } from "./config/json-schema.js";
