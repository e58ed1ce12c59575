import { defineConfig } from "vitest/config";

export default defineConfig({
  // Quiet vite's sourcemap chatter about packages that ship maps without sources.
  logLevel: "error",
  test: {
    include: ["tests/**/*.test.ts"],
    globalSetup: ["tests/support/tally-setup.ts", "tests/support/global-setup.ts"],
    // e2e suites share one testbed (one registry, one set of hosts): run files one at a time.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // @actions/workflow-parser imports JSON without import attributes; let vite transform it.
    server: { deps: { inline: ["@actions/workflow-parser"] } },
  },
});
