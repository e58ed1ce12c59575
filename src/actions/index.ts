import type { ActionSpec } from "../core/run-action.js";
import approvalGate from "./approval-gate.js";
import buildImage from "./build-image.js";
import deploy from "./deploy.js";
import deploySsh from "./deploy-ssh.js";
import migrate from "./migrate.js";
import promote from "./promote.js";
import rollback from "./rollback.js";
import smokeTest from "./smoke-test.js";
import validateConfig from "./validate-config.js";

/** Every action the bundle can run, by the directory name under actions/. */
export const ACTIONS: Record<string, ActionSpec> = {
  "validate-config": validateConfig,
  "build-image": buildImage,
  "deploy-ssh": deploySsh,
  rollback,
  migrate,
  "smoke-test": smokeTest,
  promote,
  "approval-gate": approvalGate,
  deploy,
};
