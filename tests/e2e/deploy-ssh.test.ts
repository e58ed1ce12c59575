import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runBundled } from "../support/runner.js";
import { exampleCompose, HOSTS_COMPOSE, hostExec } from "../support/testbed.js";
import { ledgerOf, type T3Bed, t3Bed, visible } from "./t3-support.js";

// Shared-testbed isolation: app t3-deploy, path /srv/t3-deploy, ports 18310 (h1) and 18311 (h2).
const APP = "t3-deploy";
const PATH_ON_HOST = `/srv/${APP}`;
const PORTS = { h1: 18310, h2: 18311 };

let bed: T3Bed;
let images: { v1: string; v2: string; v3: string };

function config(extra = ""): string {
  return `version: 1
app: ${APP}
image:
  name: ${bed.registry}/t3/app
environments:
  e2e:
    hosts:
      - { host: ${bed.hosts[0]!.address}, alias: h1 }
      - { host: ${bed.hosts[1]!.address}, alias: h2 }
    path: ${PATH_ON_HOST}
    compose: { file: compose.yml, service: api }
    env-file: { required-keys: [T3_PORT] }
    parallel: 2
    health: { timeout: 20s, interval: 500ms }
    lock: { wait: 3s, lease: 10m }
    rollback: { on-failure: true, keep-releases: 2 }
${extra}`;
}

const COMPOSE = exampleCompose({ portVar: "T3_PORT" });

async function deploy(
  imageRef: string,
  opts: { knownHosts?: string; env?: Record<string, string>; inputs?: Record<string, string> } = {},
) {
  return runBundled("deploy-ssh", {
    cwd: bed.workspace,
    inputs: {
      config: "deploy-kit.yml",
      environment: "e2e",
      "image-ref": imageRef,
      "ssh-key": bed.sshKey,
      "known-hosts": opts.knownHosts ?? bed.knownHosts,
      "registry-username": bed.registryUser,
      "registry-password": bed.registryPassword,
      "git-sha": "0123456789abcdef0123456789abcdef01234567",
      ...opts.inputs,
    },
    env: { GITHUB_ACTOR: "t3-e2e", ...opts.env },
    timeoutMs: 120_000,
  });
}

const ledger = (h: 0 | 1) => ledgerOf(bed.hosts[h]!, APP);

beforeAll(async () => {
  bed = await t3Bed();
  bed.workspace = mkdtempSync(join(tmpdir(), "t3-ws-"));
  writeFileSync(join(bed.workspace, "deploy-kit.yml"), config());
  writeFileSync(join(bed.workspace, "compose.yml"), COMPOSE);
  for (const [i, h] of bed.hosts.slice(0, 2).entries()) {
    await bed.resetApp(h, APP);
    await bed.writeEnv(h, APP, `T3_PORT=${i === 0 ? PORTS.h1 : PORTS.h2}\n`);
  }
  images = {
    v1: await bed.buildImage("v1", "ok"),
    v2: await bed.buildImage("v2", "ok"),
    v3: await bed.buildImage("v3", "crash"),
  };
}, 600_000);

afterAll(async () => {
  for (const h of bed?.hosts.slice(0, 2) ?? []) await bed.resetApp(h, APP);
});

/** A lock as another run leaves it, written on the host as the deploy user. */
async function plantLock(owner: string, token: string) {
  const info = JSON.stringify({ owner, token, acquired: Math.floor(Date.now() / 1000), lease: 600 });
  await hostExec(
    bed.hosts[0]!,
    [
      "sh",
      "-c",
      'mkdir "$1" && printf "%s" "$2" > "$1/info.json"',
      "sh",
      `${PATH_ON_HOST}/.deploy-kit/lock`,
      info,
    ],
    { user: "deploy" },
  );
}

describe(`deploy-ssh on the testbed (2 hosts, compose ${HOSTS_COMPOSE}, private registry)`, () => {
  test("deploy v1: both hosts serve v1, exactly one SSH handshake per host, no credential left", async () => {
    const mark = bed.sshdMark();
    const r = await deploy(images.v1);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    // One TCP connection per host for the whole action, and the host's sshd accepted it once:
    // every command, upload, lock and ledger step was a channel on it.
    for (const h of bed.hosts.slice(0, 2)) {
      const seen = bed.sshdEntries(h, r.stdout, mark);
      expect(seen.ports, h.alias).toHaveLength(1);
      expect(seen.accepted, h.alias).toBe(1);
    }
    expect(await bed.health(bed.hosts[0]!, PORTS.h1)).toMatchObject({ version: "v1" });
    expect(await bed.health(bed.hosts[1]!, PORTS.h2)).toMatchObject({ version: "v1" });
    expect(r.outputs["rolled-back"]).toBe("false");
    expect(r.outputs["previous-release-id"]).toBe("");
    const hosts = JSON.parse(r.outputs.hosts!);
    expect(hosts.map((h: { alias: string; outcome: string }) => [h.alias, h.outcome])).toEqual([
      ["h1", "deployed"],
      ["h2", "deployed"],
    ]);
    expect(r.summary).toContain(`release ${r.outputs["release-id"]} is live`);
    expect(visible(r.everything)).not.toContain(bed.registryPassword);
    expect(visible(r.everything)).not.toContain("PRIVATE KEY");
    // The temporary DOCKER_CONFIG is gone and the deploy user's own docker config never got a login.
    for (const h of bed.hosts) {
      expect(readdirSync(h.tmpDir).filter((f) => f.startsWith("tmp."))).toEqual([]);
      expect(existsSync(join(h.homeDir, ".docker/config.json"))).toBe(false);
    }
    // The lock is released; the post step has nothing to do.
    expect(existsSync(join(bed.hosts[0]!.srvDir, APP, ".deploy-kit/lock"))).toBe(false);
    expect(r.state.lock).toBe("");
    // The image is pinned by digest in the override; the user's compose file is uploaded as is.
    expect(readFileSync(join(bed.hosts[0]!.srvDir, APP, "compose.yml"), "utf8")).toBe(COMPOSE);
    expect(
      JSON.parse(readFileSync(join(bed.hosts[0]!.srvDir, APP, ".deploy-kit/override.yml"), "utf8")),
    ).toEqual({
      services: { api: { image: images.v1 } },
    });
  });

  test("deploy v2: serves v2, the ledger has both", async () => {
    const v1Ledger = ledger(0);
    const r = await deploy(images.v2);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(await bed.health(bed.hosts[0]!, PORTS.h1)).toMatchObject({ version: "v2" });
    expect(await bed.health(bed.hosts[1]!, PORTS.h2)).toMatchObject({ version: "v2" });
    expect(r.outputs["previous-release-id"]).toBe(v1Ledger[0]!.id);
    for (const h of [0, 1] as const) {
      const l = ledger(h);
      expect(l.map((e) => [e.kind, e["image-ref"], e.status])).toEqual([
        ["deploy", images.v1, "succeeded"],
        ["deploy", images.v2, "succeeded"],
      ]);
      expect(l[1]).toMatchObject({
        id: r.outputs["release-id"],
        "git-sha": "0123456789abcdef0123456789abcdef01234567",
        actor: "t3-e2e",
      });
    }
  });

  test("deploy a broken v3 (the container exits): fails, rolls back, v2 is served again", async () => {
    const r = await deploy(images.v3);
    expect(r.exitCode).toBe(1);
    expect(r.outputs["rolled-back"]).toBe("true");
    expect(r.stdout).toMatch(/failed and was rolled back/);
    expect(r.stdout).toMatch(/exited with code 3/);
    expect(await bed.health(bed.hosts[0]!, PORTS.h1)).toMatchObject({ version: "v2" });
    expect(await bed.health(bed.hosts[1]!, PORTS.h2)).toMatchObject({ version: "v2" });
    const l = ledger(0);
    expect(l.slice(-2).map((e) => [e.kind, e["image-ref"], e.status])).toEqual([
      ["deploy", images.v3, "failed"],
      ["rollback", images.v2, "succeeded"],
    ]);
    expect(l.at(-1)!.replaces).toBe(r.outputs["release-id"]);
    const hosts = JSON.parse(r.outputs.hosts!);
    expect(hosts.map((h: { outcome: string }) => h.outcome)).toEqual(["rolled-back", "rolled-back"]);
    expect(r.summary).toContain("failed and was rolled back");
    expect(existsSync(join(bed.hosts[0]!.srvDir, APP, ".deploy-kit/lock"))).toBe(false);
  });

  test("a wrong host key is refused before authenticating and nothing changes on the host", async () => {
    const forged = bed.knownHosts.replace(
      new RegExp(`^${bed.hosts[0]!.address.replace(/\./g, "\\.")} .*$`, "m"),
      `${bed.hosts[0]!.address} ${bed.otherHostKey}`,
    );
    const ledgerBefore = readFileSync(join(bed.hosts[0]!.srvDir, APP, ".deploy-kit/releases.jsonl"), "utf8");
    const container = await bed.containerIds(bed.hosts[0]!, APP);
    const mark = bed.sshdMark();
    const r = await deploy(images.v1, { knownHosts: forged });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain("does NOT match known-hosts for h1");
    expect(r.stdout).toMatch(/presented: ssh-ed25519 SHA256:\S+/);
    expect(r.stdout).toMatch(/expected: {2}ssh-ed25519 SHA256:\S+/);
    // The TCP connection reached sshd, and was dropped before any authentication.
    const seen = bed.sshdEntries(bed.hosts[0]!, r.stdout, mark);
    expect(seen.ports).toHaveLength(1);
    expect(seen.connected).toBe(1);
    expect(seen.accepted).toBe(0);
    expect(readFileSync(join(bed.hosts[0]!.srvDir, APP, ".deploy-kit/releases.jsonl"), "utf8")).toBe(
      ledgerBefore,
    );
    expect(await bed.containerIds(bed.hosts[0]!, APP)).toEqual(container);
  });

  test("no known-hosts line for a host: fails before connecting, with the ssh-keyscan line", async () => {
    const partial = bed.knownHosts
      .split("\n")
      .filter((l) => !l.startsWith(`${bed.hosts[1]!.address} `))
      .join("\n");
    const r = await deploy(images.v1, { knownHosts: partial });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain(`ssh-keyscan -t ed25519,ecdsa,rsa ${bed.hosts[1]!.address}`);
  });

  test("a second deploy while the lock is held waits up to lock.wait, then fails naming the owner", async () => {
    const owner = "https://github.com/acme/app/actions/runs/42";
    await plantLock(owner, "someone-else");
    try {
      const ledgerBefore = ledger(0).length;
      const t = Date.now();
      const r = await deploy(images.v1);
      const took = Date.now() - t;
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toContain(`h1: the deploy lock is held by ${owner}`);
      expect(took).toBeGreaterThan(3000);
      expect(took).toBeLessThan(30_000);
      expect(ledger(0).length).toBe(ledgerBefore);
      // The other host's lock was taken first (alias order) and released again.
      expect(existsSync(join(bed.hosts[1]!.srvDir, APP, ".deploy-kit/lock"))).toBe(false);
      expect(await bed.health(bed.hosts[0]!, PORTS.h1)).toMatchObject({ version: "v2" });
    } finally {
      await hostExec(bed.hosts[0]!, ["rm", "-rf", `${PATH_ON_HOST}/.deploy-kit/lock`], { user: "deploy" });
    }
  });

  test("the post step releases a lock the main step left behind (cancelled job)", async () => {
    const lockDir = join(bed.hosts[0]!.srvDir, APP, ".deploy-kit/lock");
    await plantLock("cancelled-run", "tok-cancelled");
    const r = await runBundled("deploy-ssh", {
      cwd: bed.workspace,
      inputs: {
        config: "deploy-kit.yml",
        environment: "e2e",
        "image-ref": images.v1,
        "ssh-key": bed.sshKey,
        "known-hosts": bed.knownHosts,
      },
      state: { isPost: "true", lock: JSON.stringify({ token: "tok-cancelled", aliases: ["h1", "h2"] }) },
    });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("h1: released the deploy lock left by the main step");
    expect(existsSync(lockDir)).toBe(false);
  });

  test("config and input values with shell metacharacters never execute", async () => {
    const canary = "/tmp/t3-canary";
    const evil = `$(touch ${canary})\`touch ${canary}2\`'; touch ${canary}3; '"`;
    const r = await deploy(images.v2, {
      inputs: { version: evil, "registry-username": `${bed.registryUser}` },
      env: { GITHUB_ACTOR: evil },
    });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    for (const h of bed.hosts)
      expect(readdirSync(h.tmpDir).filter((f) => f.startsWith("t3-canary"))).toEqual([]);
    expect(existsSync(canary)).toBe(false);
    const last = ledger(0).at(-1)!;
    expect(last.version).toBe(evil);
    expect(last.actor).toBe(evil);
    // A hostile image-ref is refused before any connection.
    const bad = await deploy(`${bed.registry}/t3/app:v1;touch ${canary}`);
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toContain("is not an image reference");
  });
});

describe(`validate-config check-remote on the testbed (compose ${HOSTS_COMPOSE})`, () => {
  const validate = (workspace: string) =>
    runBundled("validate-config", {
      cwd: workspace,
      inputs: {
        environment: "e2e",
        "check-remote": "true",
        "ssh-key": bed.sshKey,
        "known-hosts": bed.knownHosts,
      },
    });

  test("a ready environment passes and the summary lists each host", async () => {
    const r = await validate(bed.workspace);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.summary).toMatch(/\| e2e \| h1 \| ✅ \|/);
    expect(r.summary).toMatch(/\| e2e \| h2 \| ✅ \|/);
  });

  test("every problem on every host is reported, reading key names only", async () => {
    const ws = mkdtempSync(join(tmpdir(), "t3-check-"));
    writeFileSync(
      join(ws, "deploy-kit.yml"),
      config().replace("required-keys: [T3_PORT]", "required-keys: [T3_PORT, JWT_SECRET_KEY]"),
    );
    writeFileSync(join(ws, "compose.yml"), COMPOSE);
    await hostExec(bed.hosts[1]!, ["chmod", "644", `${PATH_ON_HOST}/.env`], { user: "deploy" });
    try {
      const r = await validate(ws);
      expect(r.exitCode).toBe(1);
      const out = visible(r.everything);
      expect(out).toContain(`e2e/h1: ${PATH_ON_HOST}/.env lacks required key(s): JWT_SECRET_KEY`);
      expect(out).toContain(`e2e/h2: ${PATH_ON_HOST}/.env lacks required key(s): JWT_SECRET_KEY`);
      expect(out).toContain(`e2e/h2: ${PATH_ON_HOST}/.env has mode 644`);
      // The value of T3_PORT never left the host.
      expect(out).not.toContain(String(PORTS.h2));
    } finally {
      await hostExec(bed.hosts[1]!, ["chmod", "600", `${PATH_ON_HOST}/.env`], { user: "deploy" });
    }
  });
});
