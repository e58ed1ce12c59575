import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { ConfigError } from "../../src/core/errors.js";
import { MemoryLog } from "../../src/core/log.js";
import { FakeRemote } from "../support/fake-remote.js";

// The hosts the pipeline would connect to: one recording fake, so "nothing ran" is provable.
const opened: FakeRemote[] = [];
vi.mock("../../src/deploy/hosts.js", () => ({
  openHosts: async () => {
    const remote = new FakeRemote();
    opened.push(remote);
    return { remotes: [remote], close: async () => {} };
  },
}));

const { runPipeline } = await import("../../src/pipeline/deploy.js");

let ws: string;
const saved = process.env.GITHUB_WORKSPACE;
beforeAll(() => {
  ws = mkdtempSync(join(tmpdir(), "dk-pipeline-"));
  process.env.GITHUB_WORKSPACE = ws;
  writeFileSync(join(ws, "compose.yml"), "services:\n  api: { image: app }\n  db: { image: postgres:16 }\n");
  writeFileSync(
    join(ws, "deploy-kit.yml"),
    `version: 1
app: shop
image: { name: registry.example.com/shop }
environments:
  production:
    hosts: [{ host: 192.0.2.10, alias: web-1 }]
    path: /srv/shop
    compose: { file: compose.yml, service: api }
    lock: { wait: 1s }
    migrate:
      command: alembic upgrade head
      backup: { required: true, service: db, database-env: DATABASE_URL }
`,
  );
});
afterAll(() => {
  if (saved === undefined) delete process.env.GITHUB_WORKSPACE;
  else process.env.GITHUB_WORKSPACE = saved;
});

const request = (over: { imageRef: string; registry?: { username: string; password: string } }) => ({
  configFile: join(ws, "deploy-kit.yml"),
  environment: "production",
  secrets: { sshKey: "unused", knownHosts: "unused" },
  requireBackup: true,
  actor: "ci",
  log: new MemoryLog(),
  ...over,
});

describe("the all-in-one deploy checks its inputs before any host is touched", () => {
  test.each([
    ["a tag with a space", "registry.example.com/shop:v1 --privileged"],
    ["an upper-case repository", "Registry.example.com/Shop@sha256:abc"],
    ["a shell word", "$(reboot)"],
  ])("a bad image-ref (%s) fails before the migration, with no remote command run", async (_, imageRef) => {
    opened.length = 0;
    const r = await runPipeline(request({ imageRef }));
    expect(r.error).toBeInstanceOf(ConfigError);
    expect(r.error!.message).toContain(`image-ref "${imageRef}" is not an image reference`);
    expect(r.phases).toEqual([]);
    expect(opened.flatMap((h) => [...h.commands, ...h.uploads])).toEqual([]);
  });

  test("half the registry credentials fail before the migration, with no remote command run", async () => {
    opened.length = 0;
    const r = await runPipeline(
      request({
        imageRef: `registry.example.com/shop@sha256:${"a".repeat(64)}`,
        registry: { username: "ci", password: "" },
      }),
    );
    expect(r.error).toBeInstanceOf(ConfigError);
    expect(r.error!.message).toContain("registry-username and registry-password go together");
    expect(opened.flatMap((h) => [...h.commands, ...h.uploads])).toEqual([]);
  });
});
