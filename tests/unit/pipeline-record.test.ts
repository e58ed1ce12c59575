import { describe, expect, test } from "vitest";
import { MemoryLog } from "../../src/core/log.js";
import { forgetSecrets, registerSecret } from "../../src/core/secrets.js";
import type { DeployResult } from "../../src/deploy/release.js";
import { type PipelineRequest, type PipelineResult, releaseRecord } from "../../src/pipeline/deploy.js";
import type { SmokeOutcome } from "../../src/smoke/run.js";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const ref = (c: string) => `reg.example/app@${D(c)}`;
const req = {
  configFile: "deploy-kit.yml",
  environment: "staging",
  imageRef: ref("b"),
  gitSha: "b".repeat(40),
  secrets: { sshKey: "k", knownHosts: "h" },
  requireBackup: false,
  actor: "dev",
  runUrl: "https://github.com/acme/shop/actions/runs/5",
  log: new MemoryLog(),
} satisfies PipelineRequest;
const deploy = (over: Partial<DeployResult> = {}): DeployResult => ({
  releaseId: "20260101-000000-bbbbbbb",
  previousReleaseId: "20251231-000000-aaaaaaa",
  imageRef: ref("b"),
  hosts: [
    {
      alias: "s1",
      release: "r",
      "image-ref": ref("b"),
      "duration-s": 1,
      outcome: "deployed",
      digest: D("b"),
    },
  ],
  rolledBack: false,
  ...over,
});
const result = (over: Partial<PipelineResult>): PipelineResult => ({
  releaseId: "20260101-000000-bbbbbbb",
  imageRef: ref("b"),
  rolledBack: false,
  url: "",
  phases: [],
  ...over,
});
const smoke = (passed: boolean) => ({ passed, results: [] }) as unknown as SmokeOutcome;

describe("the verdict a pipeline run records", () => {
  test("smoke passed: passed, with the digest read on each host", () => {
    expect(releaseRecord(result({ deploy: deploy(), smoke: smoke(true) }), req)).toMatchObject({
      environment: "staging",
      "release-id": "20260101-000000-bbbbbbb",
      digest: D("b"),
      "git-sha": "b".repeat(40),
      outcome: "passed",
      smoke: "passed",
      serving: ref("b"),
      hosts: { s1: D("b") },
      "run-url": "https://github.com/acme/shop/actions/runs/5",
    });
  });

  test("smoke failed and rolled back: rolled-back, serving the previous image, with the reason", () => {
    const r = releaseRecord(
      result({
        deploy: deploy(),
        smoke: smoke(false),
        rolledBack: true,
        imageRef: ref("a"),
        error: new Error("Release x failed its smoke test and was ROLLED BACK\n1 of 1 failed"),
      }),
      req,
    );
    expect(r).toMatchObject({ outcome: "rolled-back", smoke: "failed", digest: D("b"), serving: ref("a") });
    expect(r!.reason).toBe("Release x failed its smoke test and was ROLLED BACK");
  });

  test("health gate failed with no rollback: failed, smoke not run; no smoke checks: unverified", () => {
    const failed = releaseRecord(
      result({ deploy: deploy({ error: new Error("gate") }), error: new Error("gate") }),
      req,
    );
    expect(failed).toMatchObject({ outcome: "failed", smoke: "not-run" });
    expect(releaseRecord(result({ deploy: deploy() }), req)).toMatchObject({
      outcome: "unverified",
      smoke: "skipped",
    });
  });

  test("a secret a host printed never reaches the record's reason", () => {
    registerSecret("hunter2-Secret-Value");
    try {
      const r = releaseRecord(
        result({
          deploy: deploy({ error: new Error("x") }),
          error: new Error("login failed: hunter2-Secret-Value"),
        }),
        req,
      );
      expect(r!.reason).toBe("login failed: ***");
    } finally {
      forgetSecrets();
    }
  });

  test("nothing deployed (a migration failed): nothing recorded", () => {
    expect(releaseRecord(result({ error: new Error("migration failed") }), req)).toBeUndefined();
  });
});
