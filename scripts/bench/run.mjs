#!/usr/bin/env node
// npm run bench: deploy-kit against the hand-rolled baseline (scripts/bench/baseline.sh) on the
// testbed's hosts, every figure the median of several runs. Prints a table and writes
// bench/results.json. Benchmarks measure and print; they assert nothing (the e2e tests do).
//
// Traffic goes only to the testbed (10.200.0.x). Apps t7-*, ports 18700-18799. Env:
//   BENCH_RUNS (default 5)  DK_DIST_ROOT (a built root; default the repo's dist/, built if absent)
//   BENCH_HOSTS (default 10, for P6; up.sh adds hosts, never removes any)
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const RUNS = Number(process.env.BENCH_RUNS || 5);
const LOAD_RUNS = Math.max(1, Math.min(RUNS, 3));
// Blue-green with switch: file, deployed back to back under load: every deploy must lose nothing.
const BG_DEPLOYS = Number(process.env.BENCH_BG_DEPLOYS || 10);
// BENCH_ONLY=P3 (comma-separated) measures only those figures.
const ONLY = (process.env.BENCH_ONLY || "").split(",").filter(Boolean);
const want = (figure) => !ONLY.length || ONLY.includes(figure);
// Hosts for P6 (the fleet figure); the others need two.
const FLEET = Number(process.env.BENCH_HOSTS || (want("P6") ? 10 : 2));
const HEALTH_PATH = "/health";

// ---------------------------------------------------------------------------------------------
function run(cmd, args, opts = {}) {
  return new Promise((res, rej) => {
    const t = performance.now();
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let first;
    const onData = (k) => (d) => {
      first ??= performance.now() - t;
      if (k === "o") stdout += d;
      else stderr += d;
    };
    child.stdout.on("data", onData("o"));
    child.stderr.on("data", onData("e"));
    child.on("error", rej);
    child.on("close", (code) => {
      const r = { code, stdout, stderr, ms: performance.now() - t, firstMs: first };
      if (code !== 0 && opts.check !== false)
        rej(new Error(`${cmd} ${args.join(" ")} exited ${code}\n${(stderr || stdout).slice(-3000)}`));
      else res(r);
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}
const median = (xs) => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const r2 = (x) => (x === null ? null : Math.round(x * 100) / 100);
const log = (m) => process.stderr.write(`bench: ${m}\n`);

// ---------------------------------------------------------------------------------------------
log(`bringing the testbed up with ${FLEET} hosts (scripts/testbed/up.sh)`);
await run("bash", [join(REPO, "scripts/testbed/up.sh")], {
  env: { ...process.env, DK_TESTBED_HOSTS: String(Math.max(FLEET, 2)) },
  cwd: REPO,
});
const tb = JSON.parse(
  readFileSync(process.env.DK_TESTBED_JSON || "/var/lib/deploy-kit-testbed/testbed.json", "utf8"),
);
const h1 = tb.hosts[0];
const sshKey = readFileSync(tb.deployKeyPath, "utf8");
const knownHosts = readFileSync(tb.knownHostsPath, "utf8");

let distRoot = process.env.DK_DIST_ROOT || REPO;
if (!existsSync(join(distRoot, "dist/kit/index.js"))) {
  distRoot = mkdtempSync(join(tmpdir(), "dk-bench-build-"));
  log(`no dist/ found: building into ${distRoot}`);
  await run(process.execPath, [join(REPO, "scripts/build.mjs"), "--root", distRoot], { cwd: REPO });
}
const dist = join(distRoot, "dist");

const dockerEnv = (host) => ({
  ...process.env,
  DOCKER_HOST: host,
  DOCKER_CONFIG: mkdtempSync(join(tmpdir(), "dk-bench-docker-")),
  DOCKER_BUILDKIT: "0",
});
const hostExec = (h, argv, opts = {}) =>
  run(
    "nsenter",
    [
      `--net=${h.netnsPath}`,
      `--mount=${h.mountNamespace}`,
      `--uts=${h.utsNamespace}`,
      "--",
      ...(opts.deploy
        ? ["setpriv", "--reuid", "deploy", "--regid", "deploy", "--init-groups", "env", "HOME=/home/deploy"]
        : []),
      ...argv,
    ],
    { ...opts, env: { ...process.env, DOCKER_HOST: h.dockerHost } },
  );

/** Remove an app's containers and /srv/<app> on a host (its colors too). */
async function resetApp(h, app) {
  const env = dockerEnv(h.dockerHost);
  const ps = await run(
    "docker",
    ["ps", "-aq", "--filter", `label=com.docker.compose.project.working_dir=/srv/${app}`],
    { env },
  );
  const ids = ps.stdout.split("\n").filter(Boolean);
  for (const p of [app, `${app}-blue`, `${app}-green`]) {
    const more = await run("docker", ["ps", "-aq", "--filter", `label=com.docker.compose.project=${p}`], {
      env,
    });
    ids.push(...more.stdout.split("\n").filter(Boolean));
  }
  if (ids.length) await run("docker", ["rm", "-f", ...new Set(ids)], { env, check: false });
  await hostExec(h, ["rm", "-rf", `/srv/${app}`]);
}
async function writeEnvFile(h, app, text) {
  await hostExec(h, ["sh", "-c", 'mkdir -p "$1" && umask 077 && cat > "$1/.env"', "sh", `/srv/${app}`], {
    deploy: true,
    input: text,
  });
}
async function pointProxy(port) {
  const text = `# bench: recreate/baseline behind nginx\nupstream app {\n    server 127.0.0.1:${port};\n}\n`;
  await hostExec(h1, ["sh", "-c", `cat > "$1" && ${tb.nginx.reloadCommand}`, "sh", tb.nginx.upstreamFile], {
    deploy: true,
    input: text,
  });
  await sleep(300);
}

// Images: the example app, two versions, on the plain registry.
async function buildImage(version) {
  const env = dockerEnv(tb.localDockerHost);
  const tag = `${tb.registry.plain}/t7-bench:${version}`;
  await run(
    "docker",
    [
      "build",
      "--quiet",
      "-t",
      tag,
      "--build-arg",
      `BASE_IMAGE=${tb.baseImage}`,
      "--build-arg",
      `APP_VERSION=${version}`,
      "--build-arg",
      `GIT_SHA=${version.padEnd(40, "0").slice(0, 40)}`,
      join(REPO, "examples/app"),
    ],
    { env },
  );
  const pushed = await run("docker", ["push", tag], { env });
  const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1];
  return `${tb.registry.plain}/t7-bench@${digest}`;
}

// ---------------------------------------------------------------------------------------------
const ws = mkdtempSync(join(tmpdir(), "dk-bench-ws-"));
const HEALTHCHECK = `    healthcheck:
      test: ["CMD", "/app/bin/healthcheck"]
      interval: 1s
      timeout: 2s
      retries: 2
`;
// Recreate and baseline: the port from the operator's .env, as the seeds do it.
writeFileSync(
  join(ws, "compose.yml"),
  `services:
  api:
    image: \${API_IMAGE:-placeholder}
    init: true
    restart: unless-stopped
    ports: ["\${BENCH_PORT}:8080"]
${HEALTHCHECK}`,
);
// Blue-green: no ports in the file; deploy-kit publishes each color.
writeFileSync(
  join(ws, "compose-bg.yml"),
  `services:
  api:
    image: placeholder
    init: true
    restart: unless-stopped
${HEALTHCHECK}`,
);
const hostsYaml = (hs) => hs.map((h) => `      - { host: ${h.address}, alias: ${h.alias} }`).join("\n");
const common = `    health: { timeout: 60s, interval: 200ms }
    lock: { wait: 30s }
    rollback: { on-failure: true, keep-releases: 3 }`;
const bgBlock = (keepWarm, fileSwitch = false) => `    strategy: blue-green
    blue-green:
      container-port: 8080
      ports: ${fileSwitch ? "{ blue: 18722, green: 18723 }" : "{ blue: 18720, green: 18721 }"}
      drain: 1s
      keep-warm: ${keepWarm}
      proxy:
        switch: ${fileSwitch ? "file" : "reload"}
        upstream-file: ${fileSwitch ? tb.nginxFileSwitch.includeFile : tb.nginx.upstreamFile}
        upstream-name: app
        reload-command: ${tb.nginx.reloadCommand}
        verify-url: ${fileSwitch ? tb.nginxFileSwitch.url : tb.nginx.url}${HEALTH_PATH}`;
function writeConfig(app, env, file = app) {
  writeFileSync(
    join(ws, `${file}.yml`),
    `version: 1\napp: ${app}\nimage: { name: ${tb.registry.plain}/t7-bench }\nenvironments:\n  bench:\n${env}\n`,
  );
}
writeConfig(
  "t7-rc",
  `    hosts:\n${hostsYaml([h1])}\n    path: /srv/t7-rc\n    compose: { file: compose.yml, service: api }\n${common}`,
);
writeConfig(
  "t7-bg",
  `    hosts:\n${hostsYaml([h1])}\n    path: /srv/t7-bg\n    compose: { file: compose-bg.yml, service: api }\n${bgBlock(false)}\n${common}`,
);
writeConfig(
  "t7-bgf",
  `    hosts:\n${hostsYaml([h1])}\n    path: /srv/t7-bgf\n    compose: { file: compose-bg.yml, service: api }\n${bgBlock(false, true)}\n${common}`,
);
writeConfig(
  "t7-bgw",
  `    hosts:\n${hostsYaml([h1])}\n    path: /srv/t7-bgw\n    compose: { file: compose-bg.yml, service: api }\n${bgBlock(true)}\n${common}`,
);
for (const n of [1, 5, 10].filter((n) => n <= tb.hosts.length))
  writeConfig(
    "t7-fleet",
    `    hosts:\n${hostsYaml(tb.hosts.slice(0, n))}\n    path: /srv/t7-fleet\n    compose: { file: compose.yml, service: api }\n    parallel: "100%"\n${common}`,
    `t7-fleet${n}`,
  );

async function action(name, app, inputs) {
  const dir = mkdtempSync(join(tmpdir(), "dk-bench-run-"));
  const files = {
    GITHUB_OUTPUT: join(dir, "o"),
    GITHUB_STATE: join(dir, "s"),
    GITHUB_STEP_SUMMARY: join(dir, "m"),
  };
  for (const f of Object.values(files)) writeFileSync(f, "");
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME ?? "/root",
    GITHUB_WORKSPACE: ws,
    GITHUB_ACTIONS: "true",
    RUNNER_TEMP: dir,
    GITHUB_ACTOR: "bench",
    ...files,
  };
  const all = {
    config: `${app}.yml`,
    environment: "bench",
    "ssh-key": sshKey,
    "known-hosts": knownHosts,
    ...inputs,
  };
  for (const [k, v] of Object.entries(all)) env[`INPUT_${k.toUpperCase()}`] = v;
  const r = await run(process.execPath, [join(dist, name, "index.js")], { env, cwd: ws, check: false });
  if (r.code !== 0) throw new Error(`${name} ${app} failed:\n${r.stdout.slice(-3000)}`);
  return r;
}
const acceptedLines = (h) =>
  readFileSync(h.sshdLog, "utf8")
    .split("\n")
    .filter((l) => l.includes("Accepted publickey"));
const accepted = (h) => acceptedLines(h).length;
/** deploy-kit's own connections, exactly: the local ports it logs, found in the host's sshd log. */
function acceptedFor(h, output) {
  const ports = [
    ...output.matchAll(new RegExp(`\\[${h.alias}\\] ssh connection from local port (\\d+)`, "g")),
  ].map((m) => m[1]);
  return acceptedLines(h).filter((l) => ports.some((p) => l.includes(` port ${p} `))).length;
}
const baseline = (app, image, port, h = h1) =>
  run(
    "bash",
    [
      join(REPO, "scripts/bench/baseline.sh"),
      `deploy@${h.address}`,
      `/srv/${app}`,
      join(ws, "compose.yml"),
      image,
      String(port),
    ],
    {
      env: { ...process.env, DK_DEPLOY_KEY: tb.deployKeyPath, DK_KNOWN_HOSTS: tb.knownHostsPath },
    },
  );

async function health(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? (await res.json()).version : undefined;
  } catch {
    return undefined;
  }
}
/** Time from `start` until `url` answers `version` (polled every 20 ms). */
async function untilServing(url, version, start, deadlineMs = 60_000) {
  for (;;) {
    if ((await health(url)) === version) return performance.now() - start;
    if (performance.now() - start > deadlineMs) return Number.NaN;
    await sleep(20);
  }
}
async function underLoad(fn, base = tb.nginx.url) {
  const inst = autocannon({
    url: `${base}${HEALTH_PATH}`,
    connections: 10,
    overallRate: 200,
    duration: 120,
    timeout: 5,
  });
  try {
    await sleep(500);
    await fn();
    await sleep(500);
  } finally {
    inst.stop();
  }
  const r = await inst;
  return { failed: r.errors + r.timeouts + r.non2xx, total: r.requests.total };
}

// ---------------------------------------------------------------------------------------------
const RESULTS = join(REPO, "bench/results.json");
// BENCH_ONLY replaces just the figures it measures; each figure carries the date it was measured.
const earlier = ONLY.length && existsSync(RESULTS) ? JSON.parse(readFileSync(RESULTS, "utf8")) : undefined;
const results = {
  date: new Date().toISOString(),
  runs: RUNS,
  loadRuns: LOAD_RUNS,
  bgDeploys: BG_DEPLOYS,
  node: process.version,
  figures: { ...earlier?.figures },
};
const save = () => {
  mkdirSync(join(REPO, "bench"), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
};
const originalUpstream = readFileSync(tb.nginx.upstreamFileOnMachine, "utf8");
const originalSwitchInclude = readFileSync(tb.nginxFileSwitch.includeFileOnMachine, "utf8");
try {
  log("building and pushing the example app v1 and v2");
  const img = { v1: await buildImage("v1"), v2: await buildImage("v2") };
  for (const app of ["t7-rc", "t7-base", "t7-bg", "t7-bgf", "t7-bgw"]) await resetApp(h1, app);
  await writeEnvFile(h1, "t7-rc", "BENCH_PORT=18710\n");
  await writeEnvFile(h1, "t7-bg", "APP_ENV=bench\n");
  await writeEnvFile(h1, "t7-bgf", "APP_ENV=bench\n");
  await writeEnvFile(h1, "t7-bgw", "APP_ENV=bench\n");

  if (want("P1") || want("P2")) {
    // P1 + P2: recreate deploys, alternating v1/v2 so every deploy changes the image.
    log("P1/P2: deploy-kit (recreate) vs baseline, warm-up then measured runs");
    for (const v of ["v1", "v2"]) {
      await action("deploy-ssh", "t7-rc", { "image-ref": img[v] });
      await baseline("t7-base", img[v], 18711);
    }
    const dk = { ms: [], hs: [], exact: [] };
    const bl = { ms: [], hs: [] };
    for (let i = 0; i < RUNS; i++) {
      const v = i % 2 ? "v2" : "v1";
      let a = accepted(h1);
      const r = await action("deploy-ssh", "t7-rc", { "image-ref": img[v] });
      dk.ms.push(r.ms);
      dk.hs.push(accepted(h1) - a);
      dk.exact.push(acceptedFor(h1, r.stdout));
      a = accepted(h1);
      const b = await baseline("t7-base", img[v], 18711);
      bl.ms.push(b.ms);
      bl.hs.push(accepted(h1) - a);
    }
    results.loadAverage = (await import("node:os")).loadavg().map(r2);
    results.figures.P1 = {
      measured: new Date().toISOString(),
      what: "deploy wall time, s (median)",
      deployKit: r2(median(dk.ms) / 1000),
      baseline: r2(median(bl.ms) / 1000),
      ratio: r2(median(dk.ms) / median(bl.ms)),
      target: "<= 0.9",
      samples: { deployKit: dk.ms.map((x) => r2(x / 1000)), baseline: bl.ms.map((x) => r2(x / 1000)) },
    };
    results.figures.P2 = {
      measured: new Date().toISOString(),
      // Other suites share this sshd (and its one key), so a time window can only over-count: the
      // window figure is the minimum over the runs; deploy-kit's is also matched exactly by port.
      what: "SSH handshakes per host per deploy (sshd 'Accepted publickey')",
      deployKit: median(dk.exact),
      deployKitWindowMin: Math.min(...dk.hs),
      baseline: Math.min(...bl.hs),
      target: "= 1",
      samples: { deployKitExact: dk.exact, deployKitWindow: dk.hs, baselineWindow: bl.hs },
    };
    save();
    log(`P2: ${JSON.stringify(results.figures.P2)}`);
  }

  if (want("P3")) {
    // P3: failed requests at 200 req/s through nginx while deploying.
    log("P3: failed requests under 200 req/s through nginx");
    const p3 = { recreate: [], blueGreen: [], baseline: [], totals: [] };
    await pointProxy(18710);
    for (let i = 0; i < LOAD_RUNS; i++) {
      const v = i % 2 ? "v1" : "v2";
      const r = await underLoad(() => action("deploy-ssh", "t7-rc", { "image-ref": img[v] }));
      p3.recreate.push(r.failed);
      p3.totals.push(r.total);
    }
    await pointProxy(18711);
    for (let i = 0; i < LOAD_RUNS; i++) {
      const v = i % 2 ? "v1" : "v2";
      const r = await underLoad(() => baseline("t7-base", img[v], 18711));
      p3.baseline.push(r.failed);
    }
    await action("deploy-ssh", "t7-bg", { "image-ref": img.v1 }); // the proxy now serves t7-bg blue
    for (let i = 0; i < LOAD_RUNS; i++) {
      const v = i % 2 ? "v1" : "v2";
      const r = await underLoad(() => action("deploy-ssh", "t7-bg", { "image-ref": img[v] }));
      p3.blueGreen.push(r.failed);
    }
    // switch: file, BG_DEPLOYS deploys back to back: nginx is never reloaded after the first.
    p3.blueGreenFile = [];
    p3.blueGreenFileTotals = [];
    await action("deploy-ssh", "t7-bgf", { "image-ref": img.v1 });
    for (let i = 0; i < BG_DEPLOYS; i++) {
      const v = i % 2 ? "v1" : "v2";
      const r = await underLoad(
        () => action("deploy-ssh", "t7-bgf", { "image-ref": img[v] }),
        tb.nginxFileSwitch.url,
      );
      p3.blueGreenFile.push(r.failed);
      p3.blueGreenFileTotals.push(r.total);
      log(`P3 blue-green (switch: file) deploy ${i + 1}/${BG_DEPLOYS}: ${r.failed} failed of ${r.total}`);
    }
    results.figures.P3 = {
      measured: new Date().toISOString(),
      what: "failed requests during one deploy at 200 req/s through nginx (median)",
      recreate: median(p3.recreate),
      blueGreen: median(p3.blueGreen),
      blueGreenFileSwitch: {
        deploys: BG_DEPLOYS,
        deploysWithFailures: p3.blueGreenFile.filter((n) => n > 0).length,
        failedPerDeploy: p3.blueGreenFile,
        requestsPerDeploy: p3.blueGreenFileTotals,
      },
      baseline: median(p3.baseline),
      requestsPerRun: median(p3.totals),
      target: "blue-green = 0 in every deploy",
      samples: { recreate: p3.recreate, blueGreen: p3.blueGreen, baseline: p3.baseline },
    };
    save();
    log(`P3: ${JSON.stringify(results.figures.P3)}`);
  }

  if (want("P4")) {
    // P4: rollback, trigger to the previous release serving.
    log("P4: rollback time (blue-green keep-warm through nginx; recreate on its port)");
    await resetApp(h1, "t7-bg");
    const p4 = { bgServing: [], bgAction: [], rcServing: [], rcAction: [] };
    await action("deploy-ssh", "t7-bgw", { "image-ref": img.v1 });
    for (let i = 0; i < RUNS; i++) {
      await action("deploy-ssh", "t7-bgw", { "image-ref": img.v2 });
      const t = performance.now();
      const serving = untilServing(`${tb.nginx.url}${HEALTH_PATH}`, "v1", t);
      const r = await action("rollback", "t7-bgw", { to: img.v1 });
      p4.bgServing.push(await serving);
      p4.bgAction.push(r.ms);
    }
    for (let i = 0; i < RUNS; i++) {
      await action("deploy-ssh", "t7-rc", { "image-ref": img.v2 });
      await action("deploy-ssh", "t7-rc", { "image-ref": img.v1 });
      await action("deploy-ssh", "t7-rc", { "image-ref": img.v2 });
      const t = performance.now();
      const serving = untilServing(`http://${h1.address}:18710${HEALTH_PATH}`, "v1", t);
      const r = await action("rollback", "t7-rc", { to: img.v1 });
      p4.rcServing.push(await serving);
      p4.rcAction.push(r.ms);
      if (i >= 2) break; // recreate rollbacks are slow; three are enough for a median
    }
    results.figures.P4 = {
      measured: new Date().toISOString(),
      what: "rollback: trigger to the previous release serving, s (median); action wall time beside it",
      blueGreenWarm: r2(median(p4.bgServing) / 1000),
      blueGreenWarmAction: r2(median(p4.bgAction) / 1000),
      recreate: r2(median(p4.rcServing) / 1000),
      recreateAction: r2(median(p4.rcAction) / 1000),
      target: "blue-green (warm) <= 1 s, recreate <= 5 s",
    };
    save();
    log(`P4: ${JSON.stringify(results.figures.P4)}`);
  }

  if (want("P5")) {
    // P5: cold start and bundle sizes.
    log("P5: cold start of each bundled action");
    const actions = readdirSync(dist).filter(
      (d) => d !== "kit" && d !== "cli" && existsSync(join(dist, d, "index.js")),
    );
    const cold = {};
    for (const a of actions) {
      const xs = [];
      for (let i = 0; i < RUNS; i++) {
        const dir = mkdtempSync(join(tmpdir(), "dk-bench-cold-"));
        const r = await run(process.execPath, [join(dist, a, "index.js")], {
          check: false,
          cwd: dir,
          env: {
            PATH: process.env.PATH,
            GITHUB_ACTIONS: "true",
            GITHUB_OUTPUT: join(dir, "o"),
            GITHUB_STATE: join(dir, "s"),
            GITHUB_STEP_SUMMARY: join(dir, "m"),
            GITHUB_WORKSPACE: dir,
          },
        });
        xs.push(r.firstMs ?? r.ms);
      }
      cold[a] = Math.round(median(xs));
    }
    const sizeOf = (d) =>
      readdirSync(d, { recursive: true }).reduce((s, f) => {
        const p = join(d, String(f));
        return statSync(p).isFile() ? s + statSync(p).size : s;
      }, 0);
    const stubs = Object.fromEntries(actions.map((a) => [a, statSync(join(dist, a, "index.js")).size]));
    results.figures.P5 = {
      measured: new Date().toISOString(),
      what: "cold start, ms to the first log line (median); bundle sizes, bytes",
      coldStartMs: cold,
      maxColdStartMs: Math.max(...Object.values(cold)),
      // What node loads: the shared bundle (the source map beside it is only read for stack traces).
      sharedBundleBytes: statSync(join(dist, "kit/index.js")).size,
      kitDirBytes: sizeOf(join(dist, "kit")),
      stubBytes: stubs,
      target: "<= 150 ms, <= 2 MB per bundle",
    };
    save();
    log(`P5: ${JSON.stringify(results.figures.P5)}`);
  }

  if (want("P6")) {
    // P6: fleet deploys, parallel 100%.
    const sizes = [1, 5, 10].filter((n) => n <= tb.hosts.length);
    log(`P6: deploy to ${sizes.join(", ")} hosts with parallel: 100%`);
    for (const h of tb.hosts.slice(0, Math.max(...sizes))) {
      await resetApp(h, "t7-fleet");
      await writeEnvFile(h, "t7-fleet", "BENCH_PORT=18730\n");
    }
    const fleet = {};
    for (const n of sizes) {
      await action("deploy-ssh", `t7-fleet${n}`, { "image-ref": img.v1 }); // warm-up: pulls everywhere
      const xs = [];
      for (let i = 0; i < Math.min(RUNS, 3); i++) {
        const r = await action("deploy-ssh", `t7-fleet${n}`, { "image-ref": i % 2 ? img.v1 : img.v2 });
        xs.push(r.ms);
      }
      fleet[n] = r2(median(xs) / 1000);
    }
    results.figures.P6 = {
      measured: new Date().toISOString(),
      what: "deploy wall time by host count, parallel 100%, s (median)",
      seconds: fleet,
      ratio10to1: fleet[10] && fleet[1] ? r2(fleet[10] / fleet[1]) : null,
      target: "<= 1.5",
    };
    save();
    log(`P6: ${JSON.stringify(results.figures.P6)}`);
  }
} finally {
  // Leave h1's nginx and the hosts as they were.
  writeFileSync(tb.nginx.upstreamFileOnMachine, originalUpstream);
  writeFileSync(tb.nginxFileSwitch.includeFileOnMachine, originalSwitchInclude);
  rmSync(`${tb.nginxFileSwitch.includeFileOnMachine}.green`, { force: true });
  await hostExec(h1, ["sh", "-c", tb.nginx.reloadCommand], { deploy: true, check: false });
  for (const app of ["t7-rc", "t7-base", "t7-bg", "t7-bgf", "t7-bgw"])
    await resetApp(h1, app).catch(() => {});
  for (const h of tb.hosts) await resetApp(h, "t7-fleet").catch(() => {});
}

mkdirSync(join(REPO, "bench"), { recursive: true });
writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
const f = results.figures;
const rowsFor = {
  P1: () => [
    "P1 deploy wall time (s)",
    `deploy-kit ${f.P1.deployKit}`,
    `baseline ${f.P1.baseline}`,
    `ratio ${f.P1.ratio}`,
    f.P1.target,
  ],
  P2: () => [
    "P2 SSH handshakes/host/deploy",
    `deploy-kit ${f.P2.deployKit} (window min ${f.P2.deployKitWindowMin})`,
    `baseline ${f.P2.baseline}`,
    "",
    f.P2.target,
  ],
  P3: () => [
    "P3 failed requests @200 req/s",
    `blue-green ${f.P3.blueGreen} [${f.P3.samples.blueGreen}]`,
    `recreate ${f.P3.recreate} [${f.P3.samples.recreate}]`,
    `baseline ${f.P3.baseline} [${f.P3.samples.baseline}]`,
    `${f.P3.target} (of ~${f.P3.requestsPerRun})`,
  ],
  P3file: () => [
    "P3 blue-green, switch: file",
    `${f.P3.blueGreenFileSwitch.deploysWithFailures} of ${f.P3.blueGreenFileSwitch.deploys} deploys lost a request`,
    `failed per deploy [${f.P3.blueGreenFileSwitch.failedPerDeploy}]`,
    `of ~${median(f.P3.blueGreenFileSwitch.requestsPerDeploy)} each`,
    "0 in every deploy",
  ],
  P4: () => [
    "P4 rollback to serving (s)",
    `blue-green warm ${f.P4.blueGreenWarm}`,
    `recreate ${f.P4.recreate}`,
    `actions ${f.P4.blueGreenWarmAction} / ${f.P4.recreateAction}`,
    f.P4.target,
  ],
  P5: () => [
    "P5 cold start / bundle",
    `max ${f.P5.maxColdStartMs} ms`,
    `kit ${(f.P5.sharedBundleBytes / 1e6).toFixed(2)} MB`,
    `stubs <= ${Math.max(...Object.values(f.P5.stubBytes))} B`,
    f.P5.target,
  ],
  P6: () => [
    "P6 fleet deploy (s)",
    Object.entries(f.P6.seconds)
      .map(([n, s]) => `${n}: ${s}`)
      .join(", "),
    `ratio 10/1 ${f.P6.ratio10to1}`,
    "",
    f.P6.target,
  ],
};
const rows = Object.entries(rowsFor)
  .filter(([k]) => f[k.replace("file", "")])
  .map(([, row]) => row());
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(widths[i])).join("  |  "));
console.log(`\nwritten: bench/results.json (median of ${RUNS} runs; P3 of ${LOAD_RUNS})`);
