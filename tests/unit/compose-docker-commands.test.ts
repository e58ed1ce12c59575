import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { composeLine, composeUpScript, imageOverride, parseComposeBin } from "../../src/commands/compose.js";
import {
  hostFactsScript,
  imageInfoScript,
  parseHostFacts,
  parseImageInfo,
  parseRunningImages,
  pruneImagesScript,
  pullImageScript,
  registryOf,
  repositoryOf,
  runningImagesScript,
  serviceContainersScript,
} from "../../src/commands/docker.js";
import { acquireLockScript, activateReleaseScript, releaseLockScript } from "../../src/commands/release.js";
import { parseComposeSource } from "../../src/deploy/compose-file.js";

const v1 = {
  bin: "docker-compose" as const,
  project: "t3-app",
  dir: "/srv/t3-app",
  files: ["compose.yml", ".deploy-kit/override.yml"],
};

describe("compose commands", () => {
  test.each([
    [
      v1,
      ["up", "-d", "--no-build", "--remove-orphans"],
      "cd /srv/t3-app && docker-compose -p t3-app -f compose.yml -f .deploy-kit/override.yml up -d --no-build --remove-orphans",
    ],
    [
      { ...v1, bin: "docker compose" as const },
      ["ps"],
      "cd /srv/t3-app && docker compose -p t3-app -f compose.yml -f .deploy-kit/override.yml ps",
    ],
    [
      {
        ...v1,
        projectDirectory: "/srv/t3-app",
        dir: "/srv/t3-app/.deploy-kit/migrate",
        files: ["compose.yml"],
      },
      ["run", "--rm", "api", "sh", "-c", "alembic upgrade head; echo $HOME"],
      "cd /srv/t3-app/.deploy-kit/migrate && docker-compose -p t3-app --project-directory /srv/t3-app -f compose.yml run --rm api sh -c 'alembic upgrade head; echo $HOME'",
    ],
  ])("composeLine %#", (p, args, expected) => {
    expect(composeLine(p, args)).toBe(expected);
  });

  test("up never builds, never waits with v2-only flags", () => {
    const s = composeUpScript(v1);
    expect(s.startsWith("set -eu\n")).toBe(true);
    expect(s).toContain("up -d --no-build --remove-orphans");
    expect(s).not.toContain("--wait");
  });

  test.each([
    ["docker compose\n", "docker compose"],
    ["docker-compose", "docker-compose"],
    ["none", undefined],
    ["", undefined],
  ])("parseComposeBin(%j)", (out, bin) => {
    expect(parseComposeBin(out)).toBe(bin);
  });

  test("the override pins every configured service; JSON cannot inject YAML", () => {
    expect(JSON.parse(imageOverride(["api", "worker"], "reg/app@sha256:aa", "3.8"))).toEqual({
      version: "3.8",
      services: { api: { image: "reg/app@sha256:aa" }, worker: { image: "reg/app@sha256:aa" } },
    });
    expect(JSON.parse(imageOverride(["api"], 'x"\n  evil: true'))).toEqual({
      services: { api: { image: 'x"\n  evil: true' } },
    });
  });

  test("the compose file must define the configured services; its version is carried", () => {
    expect(
      parseComposeSource("compose.yml", "version: '3.8'\nservices: {api: {image: x}}\n", ["api"]).version,
    ).toBe("3.8");
    expect(() => parseComposeSource("compose.yml", "services: {web: {}}\n", ["api"])).toThrow(
      /compose.service names api, which compose.yml does not define/,
    );
    expect(() => parseComposeSource("compose.yml", "services: [\n", ["api"])).toThrow(/not valid YAML/);
  });
});

describe("docker commands", () => {
  test.each([
    ["ghcr.io/acme/app@sha256:aa", "ghcr.io", "ghcr.io/acme/app"],
    ["10.200.0.1:5001/t3/app:v1", "10.200.0.1:5001", "10.200.0.1:5001/t3/app"],
    ["localhost/app:1", "localhost", "localhost/app"],
    ["acme/app:1", "docker.io", "acme/app"],
    ["nginx", "docker.io", "nginx"],
  ])("%s: registry %s, repository %s", (ref, registry, repo) => {
    expect(registryOf(ref)).toBe(registry);
    expect(repositoryOf(ref)).toBe(repo);
  });

  test("pull with credentials: temporary DOCKER_CONFIG, password on stdin only, removed on exit", () => {
    const s = pullImageScript("10.200.0.1:5001/t3/app@sha256:aa", { username: "dk" });
    expect(s).toBe(
      [
        "set -eu",
        "DOCKER_CONFIG=$(mktemp -d)",
        "export DOCKER_CONFIG",
        `trap 'rm -rf "$DOCKER_CONFIG"' EXIT`,
        "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM",
        "docker login --username dk --password-stdin 10.200.0.1:5001 >/dev/null",
        "docker pull --quiet 10.200.0.1:5001/t3/app@sha256:aa &",
        "wait $!",
      ].join("\n"),
    );
    expect(pullImageScript("a/b@sha256:aa")).toBe("set -eu\ndocker pull --quiet a/b@sha256:aa");
  });

  // Real sh, fake docker: login writes a credential into $DOCKER_CONFIG, the pull hangs.
  test.each([
    ["its own deadline", "deadline"],
    ["a TERM", "TERM"],
    ["a HUP", "HUP"],
  ])("a pull ended by %s leaves no credentials on the host", async (_n, how) => {
    const dir = mkdtempSync(join(tmpdir(), "t3-pull-"));
    const tool = (name: string, body: string) => {
      writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(dir, name), 0o755);
    };
    tool(
      "docker",
      `case "$1" in login) cat > "$DOCKER_CONFIG/config.json"; echo "$DOCKER_CONFIG" > ${dir}/where ;; pull) exec sleep 30 ;; esac`,
    );
    const s = pullImageScript("r.example/app:1", { username: "dk" }, how === "deadline" ? 1 : 60);
    const child = spawn("/bin/sh", ["-c", s], { env: { PATH: `${dir}:/usr/bin:/bin`, TMPDIR: dir } });
    child.stdin.end("pw-secret");
    const started = Date.now();
    while (!existsSync(join(dir, "where"))) await new Promise((r) => setTimeout(r, 20));
    const config = readFileSync(join(dir, "where"), "utf8").trim();
    expect(readFileSync(join(config, "config.json"), "utf8")).toBe("pw-secret");
    if (how !== "deadline") child.kill(how === "TERM" ? "SIGTERM" : "SIGHUP");
    await new Promise((r) => child.on("exit", r));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(existsSync(config)).toBe(false);
  });

  test("image info and container state parse", () => {
    expect(imageInfoScript("a/b:1")).toBe(
      "set -eu\ndocker image inspect --format '{{.Id}}{{range .RepoDigests}} {{.}}{{end}}' a/b:1",
    );
    expect(parseImageInfo("sha256:11 a/b@sha256:22 c/d@sha256:33\n")).toEqual({
      id: "sha256:11",
      repoDigests: ["a/b@sha256:22", "c/d@sha256:33"],
    });
    const s = serviceContainersScript("t3-app", ["api"]);
    expect(s).toContain(
      "--filter label=com.docker.compose.project=t3-app --filter label=com.docker.compose.service=api --filter label=com.docker.compose.oneoff=False",
    );
  });

  test("the running image digests: read per service container, parsed, under sh with a stand-in docker", () => {
    const bin = mkdtempSync(join(tmpdir(), "dk-docker-"));
    // Answers like the engine: ps lists ids, inspect the image id, image inspect its repo digests.
    writeFileSync(
      join(bin, "docker"),
      `#!/bin/sh
case "$1 $2" in
  "ps -q") case "$*" in *service=api*) echo c1; echo c2 ;; esac ;;
  "inspect --format") echo "sha256:img-$4" ;;
  "image inspect") echo "reg/app@sha256:aa reg/app@sha256:bb " ;;
esac
`,
      { mode: 0o755 },
    );
    const script = runningImagesScript("shop's", ["api", "worker"]);
    expect(script).toContain("--filter 'label=com.docker.compose.project=shop'\"'\"'s'");
    const r = spawnSync("/bin/sh", ["-c", script], {
      encoding: "utf8",
      env: { PATH: `${bin}:/usr/bin:/bin` },
    });
    expect(r.status).toBe(0);
    expect(parseRunningImages(r.stdout)).toEqual([
      {
        service: "api",
        container: "c1",
        imageId: "sha256:img-c1",
        repoDigests: ["reg/app@sha256:aa", "reg/app@sha256:bb"],
      },
      {
        service: "api",
        container: "c2",
        imageId: "sha256:img-c2",
        repoDigests: ["reg/app@sha256:aa", "reg/app@sha256:bb"],
      },
    ]);
  });

  test("prune keeps what it is told and refuses an empty keep list", () => {
    expect(() => pruneImagesScript("a/b", [])).toThrow();
    expect(pruneImagesScript("a/b", ["a/b@sha256:11"])).toContain("for r in a/b@sha256:11; do");
  });

  test("host facts read env-file key NAMES only, never a value", () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-facts-"));
    writeFileSync(
      join(dir, ".env"),
      "DATABASE_URL=postgres://u:pw-VALUE-1@db/x\nexport JWT_SECRET_KEY = VALUE-2\n# COMMENTED=1\nlower_ok=1\nBAD-NAME=2\n",
      { mode: 0o640 },
    );
    const r = spawnSync("/bin/sh", ["-c", hostFactsScript(dir, ".env")], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain("VALUE");
    const facts = parseHostFacts(r.stdout);
    expect(facts).toMatchObject({ path: "dir", writable: true, env: "present", envMode: "640" });
    expect(facts.envKeys).toEqual(["DATABASE_URL", "JWT_SECRET_KEY", "lower_ok"]);
    const missing = parseHostFacts(
      spawnSync("/bin/sh", ["-c", hostFactsScript(join(dir, "nope"), ".env")], { encoding: "utf8" }).stdout,
    );
    expect(missing).toMatchObject({ path: "missing", env: "missing", envKeys: [] });
  });
});

describe("release scripts quote every value", () => {
  test("owner and token with shell metacharacters stay data", () => {
    const dir = mkdtempSync(join(tmpdir(), "dk-q-"));
    const owner = `$(touch ${dir}/canary)'"; touch ${dir}/canary2`;
    const r = spawnSync("/bin/sh", ["-c", acquireLockScript(dir, { owner, token: "t", leaseSeconds: 5 })], {
      encoding: "utf8",
    });
    expect(r.stdout).toMatch(/^acquired \d+/);
    expect(spawnSync("ls", [dir], { encoding: "utf8" }).stdout.trim()).toBe("");
    const info = JSON.parse(
      spawnSync("cat", [join(dir, ".deploy-kit/lock/info.json")], { encoding: "utf8" }).stdout,
    );
    expect(info.owner).toBe(owner);
    expect(
      spawnSync("/bin/sh", ["-c", releaseLockScript(dir, "t")], { encoding: "utf8" }).stdout.trim(),
    ).toBe("released");
  });

  test("activation renames into place", () => {
    expect(activateReleaseScript("/srv/t3-app", "r1", "compose.yml")).toBe(
      [
        "set -eu",
        "cp /srv/t3-app/.deploy-kit/releases/r1/compose.yml /srv/t3-app/compose.yml.dk-new",
        "mv -f /srv/t3-app/compose.yml.dk-new /srv/t3-app/compose.yml",
        "cp /srv/t3-app/.deploy-kit/releases/r1/override.yml /srv/t3-app/.deploy-kit/override.yml.dk-new",
        "mv -f /srv/t3-app/.deploy-kit/override.yml.dk-new /srv/t3-app/.deploy-kit/override.yml",
      ].join("\n"),
    );
  });
});
