import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runBundled } from "../support/runner.js";
import {
  ensureTestbed,
  exampleCompose,
  HOSTS_COMPOSE,
  hostExec,
  run,
  type Testbed,
  type TestbedHost,
} from "../support/testbed.js";
import { ledgerOf, type T3Bed, t3Bed, visible } from "./t3-support.js";

// A real bastion: host hb (10.201.0.2) sits on a network of its own behind h1, and the machine
// (the runner) has no route to it; only h1's sshd can tunnel there. App tb-bastion, port 18480.
const APP = "tb-bastion";
const PORT = 18480;

let bed: T3Bed;
let tb: Testbed;
let hb: TestbedHost;
let h1: TestbedHost;
let image: string;

const config = () => `version: 1
app: ${APP}
image:
  name: ${bed.registry}/t3/app
environments:
  inner:
    hosts:
      - { host: ${hb.address}, user: deploy, alias: hb }
    ssh: { jump: "deploy@${h1.address}:22" }
    path: /srv/${APP}
    compose: { file: compose.yml, service: api }
    env-file: { required-keys: [TB_PORT] }
    health: { timeout: 30s, interval: 500ms }
`;

const COMPOSE = exampleCompose({ portVar: "TB_PORT" });

const deploy = (knownHosts: string) =>
  runBundled("deploy-ssh", {
    cwd: bed.workspace,
    inputs: {
      config: "deploy-kit.yml",
      environment: "inner",
      "image-ref": image,
      "ssh-key": bed.sshKey,
      "known-hosts": knownHosts,
      "registry-username": bed.registryUser,
      "registry-password": bed.registryPassword,
      "git-sha": "0123456789abcdef0123456789abcdef01234567",
    },
    env: { GITHUB_ACTOR: "tb-e2e" },
    timeoutMs: 120_000,
  });

/** sshd log lines of hb (only this suite uses it). */
const hbLog = (what: string) => readFileSync(hb.sshdLog, "utf8").split(what).length - 1;
/** The jump connection as the run names it in its log. */
const jumpOf = (): TestbedHost => ({ ...h1, alias: `jump ${h1.address}` });

beforeAll(async () => {
  bed = await t3Bed();
  tb = await ensureTestbed();
  hb = tb.behindBastion;
  h1 = tb.hosts[0]!;
  bed.workspace = mkdtempSync(join(tmpdir(), "tb-ws-"));
  writeFileSync(join(bed.workspace, "deploy-kit.yml"), config());
  writeFileSync(join(bed.workspace, "compose.yml"), COMPOSE);
  await bed.resetApp(hb, APP);
  await bed.writeEnv(hb, APP, `TB_PORT=${PORT}\n`);
  image = await bed.buildImage("b1", "ok");
}, 600_000);

afterAll(async () => {
  if (hb) await bed.resetApp(hb, APP);
});

describe(`deploy through a bastion (real sshd on both, compose ${HOSTS_COMPOSE})`, () => {
  test("the runner has no route to the host behind the bastion", async () => {
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const s = netConnect({ host: hb.address, port: 22, timeout: 3000 });
      s.once("connect", () => {
        s.destroy();
        resolve(Object.assign(new Error("connected"), { code: "CONNECTED" }));
      });
      s.once("timeout", () => {
        s.destroy();
        resolve(Object.assign(new Error("timeout"), { code: "TIMEOUT" }));
      });
      s.once("error", resolve);
    });
    expect(err.code).toBe("EHOSTUNREACH");
  });

  test("deploys through h1: both host keys pinned, one login on each sshd, the app serves on hb", async () => {
    const before = hbLog("Accepted publickey for deploy");
    const mark = bed.sshdMark();
    const r = await deploy(bed.knownHosts);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    // One connection to the bastion, accepted once; one login on hb, through it.
    const jump = bed.sshdEntries(jumpOf(), r.stdout, mark);
    expect(jump.ports).toHaveLength(1);
    expect(jump.accepted).toBe(1);
    expect(hbLog("Accepted publickey for deploy") - before).toBe(1);
    // hb was reached from h1's side of their link, not from the machine.
    expect(readFileSync(hb.sshdLog, "utf8")).toContain(
      `Connection from ${hb.address.replace(/\.\d+$/, ".1")} port`,
    );
    const health = await hostExec(hb, ["curl", "-sf", `http://127.0.0.1:${PORT}/health`]);
    expect(JSON.parse(health.stdout)).toMatchObject({ version: "b1" });
    expect(ledgerOf(hb, APP).map((e) => [e.kind, e.status, e["image-ref"]])).toEqual([
      ["deploy", "succeeded", image],
    ]);
    expect(visible(r.everything)).not.toContain("PRIVATE KEY");
  });

  test("a wrong bastion key is refused before authenticating, with its fingerprint; hb is never contacted", async () => {
    const hbConnections = hbLog("Connection from");
    const wrong = bed.knownHosts
      .split("\n")
      .map((l) => (l.startsWith(`${h1.address} `) ? `${h1.address} ${bed.otherHostKey}` : l))
      .join("\n");
    const mark = bed.sshdMark();
    const r = await deploy(wrong);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain(`does NOT match known-hosts for jump ${h1.address}`);
    expect(r.stdout).toContain("refused before authenticating");
    // The fingerprint shown is the bastion's real key, as `ssh-keygen -lf` on it prints it.
    const presented = /presented: \S+ (SHA256:[A-Za-z0-9+/]+)/.exec(r.stdout)?.[1];
    expect(presented, r.stdout).toBeDefined();
    expect((await run("ssh-keygen", ["-lf", h1.hostKeyPub])).stdout).toContain(presented!);
    // The bastion saw the connection but no login; hb saw nothing at all.
    const jump = bed.sshdEntries(jumpOf(), r.stdout, mark);
    expect(jump.connected).toBe(1);
    expect(jump.accepted).toBe(0);
    expect(hbLog("Connection from")).toBe(hbConnections);
    // Nothing changed on hb.
    expect(ledgerOf(hb, APP)).toHaveLength(1);
  });
});
