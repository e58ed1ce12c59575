import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runBundled } from "../support/runner.js";
import { HOSTS_COMPOSE } from "../support/testbed.js";
import { type BedHost, ledgerOf, type T3Bed, t3Bed } from "./t3-support.js";

// Shared-testbed isolation: app t3-rollback, path /srv/t3-rollback, port 18320, host h1 only.
const APP = "t3-rollback";
const PORT = 18320;

let bed: T3Bed;
let h1: BedHost;
let images: Record<"v1" | "v2" | "v3" | "v4", string>;

const CONFIG = () => `version: 1
app: ${APP}
image:
  name: ${bed.registry}/t3/app
environments:
  e2e:
    hosts: ["deploy@${h1.address}:22"]
    path: /srv/${APP}
    compose: { file: compose.yml, service: [api] }
    health: { timeout: 15s, interval: 500ms }
    lock: { wait: 5s }
    rollback: { on-failure: true, keep-releases: 2 }
`;

const COMPOSE = `version: "3.8"
services:
  api:
    image: placeholder
    init: true
    ports: ["\${T3_PORT}:8080"]
    healthcheck:
      test: ["CMD", "/app/bin/healthcheck"]
      interval: 1s
      timeout: 2s
      retries: 2
`;

const secrets = () => ({
  "ssh-key": bed.sshKey,
  "known-hosts": bed.knownHosts,
  "registry-username": bed.registryUser,
  "registry-password": bed.registryPassword,
});

const deploy = (imageRef: string) =>
  runBundled("deploy-ssh", {
    cwd: bed.workspace,
    inputs: { environment: "e2e", "image-ref": imageRef, ...secrets() },
    timeoutMs: 120_000,
  });

const rollback = (inputs: Record<string, string> = {}) =>
  runBundled("rollback", {
    cwd: bed.workspace,
    inputs: { environment: "e2e", ...secrets(), ...inputs },
    timeoutMs: 120_000,
  });

const serves = async () => (await bed.health(h1, PORT)).version;
const ledger = () => ledgerOf(h1, APP);

beforeAll(async () => {
  bed = await t3Bed();
  h1 = bed.hosts[0]!;
  bed.workspace = mkdtempSync(join(tmpdir(), "t3-rb-"));
  writeFileSync(join(bed.workspace, "deploy-kit.yml"), CONFIG());
  writeFileSync(join(bed.workspace, "compose.yml"), COMPOSE);
  await bed.resetApp(h1, APP);
  await bed.writeEnv(h1, APP, `T3_PORT=${PORT}\n`);
  images = {
    v1: await bed.buildImage("v1", "ok"),
    v2: await bed.buildImage("v2", "ok"),
    v3: await bed.buildImage("v3", "unhealthy"),
    v4: await bed.buildImage("v4", "ok"),
  };
}, 600_000);

afterAll(async () => {
  if (bed) await bed.resetApp(h1, APP);
});

describe(`rollback on the testbed (compose ${HOSTS_COMPOSE}, compose file with a version key)`, () => {
  test("v1, v2, then an unhealthy v3 is rolled back by the health gate", async () => {
    for (const v of ["v1", "v2"] as const) {
      const r = await deploy(images[v]);
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    }
    expect(await serves()).toBe("v2");
    const r = await deploy(images.v3);
    expect(r.exitCode).toBe(1);
    expect(r.outputs["rolled-back"]).toBe("true");
    expect(r.stdout).toContain("is unhealthy (its healthcheck fails)");
    expect(await serves()).toBe("v2");
  });

  test("rollback (default): the previous release, v1, is served again and recorded", async () => {
    const v1Id = ledger()[0]!.id;
    const r = await rollback();
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(await serves()).toBe("v1");
    expect(r.outputs["target-release-id"]).toBe(v1Id);
    expect(r.outputs["image-ref"]).toBe(images.v1);
    const last = ledger().at(-1)!;
    expect(last).toMatchObject({
      id: r.outputs["release-id"],
      kind: "rollback",
      target: v1Id,
      status: "succeeded",
    });
    expect(r.summary).toContain(`rolled back to ${v1Id}`);
  });

  test("keep-releases prunes old images but never the live one or the rollback target", async () => {
    const r = await deploy(images.v4);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(await serves()).toBe("v4");
    const refs = await bed.imageRefsOnHost(h1);
    // Live v4 and its rollback target v1 stay; v2 and the broken v3 go (keep-releases: 2).
    expect(refs).toContain(images.v4);
    expect(refs).toContain(images.v1);
    expect(refs).not.toContain(images.v2);
    expect(refs).not.toContain(images.v3);
  });

  test("rollback to: a release id whose image was pruned pulls it again (private registry)", async () => {
    const v2Id = ledger().find((e) => e["image-ref"] === images.v2 && e.kind === "deploy")!.id;
    const r = await rollback({ to: v2Id });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`pulled ${images.v2}`);
    expect(await serves()).toBe("v2");
    // Pruning after it keeps the live image and the new rollback target (v1); v4, rolled back
    // from, is not a default target any more and may go.
    const refs = await bed.imageRefsOnHost(h1);
    expect(refs).toContain(images.v2);
    expect(refs).toContain(images.v1);
  });

  test("rollback to: an image ref from the ledger", async () => {
    const r = await rollback({ to: images.v4 });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(await serves()).toBe("v4");
  });

  test("rollback to: something not in the ledger, or a failed release, changes nothing", async () => {
    const before = ledger().length;
    const unknown = await rollback({ to: "20990101-000000-deadbee" });
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stdout).toContain('No release "20990101-000000-deadbee" in the ledger');
    const failedId = ledger().find((e) => e.status === "failed")!.id;
    const failed = await rollback({ to: failedId });
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toContain("failed its health gate; it is not a rollback target");
    expect(ledger().length).toBe(before);
    expect(await serves()).toBe("v4");
  });
});
