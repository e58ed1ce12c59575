import { curlReason, parseRemoteHttp, remoteHttpScript } from "../commands/http.js";
import type { Environment, SmokeCheck } from "../config/schema.js";
import { ConfigError } from "../core/errors.js";
import type { Log } from "../core/log.js";
import { registerSecret } from "../core/secrets.js";
import type { Remote } from "../ssh/types.js";
import { fetchRequester, type HttpRequest, type Requester } from "./http.js";
import { evaluate, type HttpResponse, lookup } from "./match.js";

export interface SmokeOptions {
  checks: SmokeCheck[];
  baseUrl: string;
  /** The deployed git SHA that `version-field` must report. */
  expectVersion?: string;
  /** Extra attempts after the first, per check. */
  retries: number;
  intervalMs: number;
  /** Per request. */
  timeoutMs: number;
  /** Already registered as a secret. */
  bearerToken?: string;
  /** `from: host`: requests run on this host over its SSH session. */
  remote?: Remote;
  /** Injected by tests to avoid waiting. */
  sleep?: (ms: number) => Promise<void>;
  requester?: Requester;
}

export interface CheckResult {
  url: string;
  method: string;
  status: number | null;
  latencyMs: number | null;
  attempts: number;
  passed: boolean;
  /** Why the last attempt failed; absent when it passed. */
  reason?: string;
  /** The value of version-field in the last response, when the check has one. */
  version?: string;
}

export interface SmokeOutcome {
  passed: boolean;
  results: CheckResult[];
}

/** The smoke section of an environment, with the action's overrides, as SmokeOptions. */
export function smokeOptions(
  env: Environment,
  overrides: { baseUrl?: string; expectVersion?: string; remote?: Remote },
  processEnv: NodeJS.ProcessEnv = process.env,
): SmokeOptions {
  const smoke = env.smoke;
  if (!smoke) {
    throw new ConfigError("This environment has no smoke checks.", {
      hint: "Add a `smoke:` section with at least one check (e.g. `checks: [{ path: /health }]`).",
    });
  }
  const baseUrl = overrides.baseUrl || smoke["base-url"] || env.url;
  if (!baseUrl) {
    throw new ConfigError("No base URL for the smoke checks.", {
      hint: "Set smoke.base-url or the environment's url in deploy-kit.yml, or the `base-url` input.",
    });
  }
  if (!/^https?:\/\/[^\s]+$/.test(baseUrl)) {
    throw new ConfigError(`The smoke base URL "${baseUrl}" is not an http(s) URL.`, {
      hint: "Use a URL like https://staging.example.com.",
    });
  }
  let bearerToken: string | undefined;
  const tokenEnv = smoke["bearer-token-env"];
  if (tokenEnv) {
    bearerToken = processEnv[tokenEnv];
    registerSecret(bearerToken);
    if (!bearerToken) {
      throw new ConfigError(`smoke.bearer-token-env names ${tokenEnv}, but that variable is empty.`, {
        hint: `Pass it to this step: env: { ${tokenEnv}: \${{ secrets.${tokenEnv} }} }.`,
      });
    }
  }
  if (smoke.from === "host" && !overrides.remote) {
    throw new ConfigError("smoke.from is host, but no host connection was given.", {
      hint: "Pass the ssh-key and known-hosts inputs so the checks can run on the server.",
    });
  }
  return {
    checks: smoke.checks,
    baseUrl,
    expectVersion: overrides.expectVersion || undefined,
    retries: smoke.retries,
    intervalMs: smoke.interval,
    timeoutMs: smoke.timeout,
    bearerToken,
    remote: smoke.from === "host" ? overrides.remote : undefined,
  };
}

export function checkUrl(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, "")}${path}`;
}

/**
 * Run every check, each retried until it passes or its attempts run out. A wrong version is
 * retried too: during a rollout the old container may still answer for a moment, and when it is
 * still answering at the end that is exactly the false green this check exists to catch.
 */
export async function runSmokeTests(opts: SmokeOptions, log: Log): Promise<SmokeOutcome> {
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const request = opts.requester ?? (opts.remote ? remoteRequester(opts.remote) : fetchRequester);
  const headers: Record<string, string> = opts.bearerToken
    ? { authorization: `Bearer ${opts.bearerToken}` }
    : {};
  const where = opts.remote ? ` from ${opts.remote.alias}` : "";
  const results: CheckResult[] = [];
  for (const check of opts.checks) {
    if (check["version-field"] && !opts.expectVersion) {
      log.warn(
        `${check.path}: version-field ${check["version-field"]} is not compared: no expect-version was given.`,
      );
    }
    const url = checkUrl(opts.baseUrl, check.path);
    const max = opts.retries + 1;
    const result = await log.group(`Smoke ${check.method} ${url}${where}`, async () => {
      let last: CheckResult = {
        url,
        method: check.method,
        status: null,
        latencyMs: null,
        attempts: 0,
        passed: false,
      };
      for (let attempt = 1; attempt <= max; attempt++) {
        last = await attemptOnce(
          request,
          check,
          { url, headers, timeoutMs: opts.timeoutMs },
          opts.expectVersion,
        );
        last.attempts = attempt;
        const took = last.latencyMs === null ? "" : ` in ${Math.round(last.latencyMs)} ms`;
        const got = last.status === null ? "no response" : `${last.status}${took}`;
        log.info(`attempt ${attempt}/${max}: ${got}: ${last.passed ? "ok" : last.reason}`);
        if (last.passed) break;
        if (attempt < max) await sleep(opts.intervalMs);
      }
      return last;
    });
    results.push(result);
  }
  return { passed: results.every((r) => r.passed), results };
}

/** Every check once, no retries and no log groups: one probe of the watch window. */
export async function probeOnce(opts: SmokeOptions): Promise<CheckResult[]> {
  const request = opts.requester ?? (opts.remote ? remoteRequester(opts.remote) : fetchRequester);
  const headers: Record<string, string> = opts.bearerToken
    ? { authorization: `Bearer ${opts.bearerToken}` }
    : {};
  const out: CheckResult[] = [];
  for (const check of opts.checks) {
    const url = checkUrl(opts.baseUrl, check.path);
    out.push({
      ...(await attemptOnce(request, check, { url, headers, timeoutMs: opts.timeoutMs }, opts.expectVersion)),
      attempts: 1,
    });
  }
  return out;
}

async function attemptOnce(
  request: Requester,
  check: SmokeCheck,
  req: Omit<HttpRequest, "method">,
  expectVersion: string | undefined,
): Promise<CheckResult> {
  const base = { url: req.url, method: check.method, attempts: 0 };
  let res: HttpResponse;
  try {
    res = await request({ ...req, method: check.method });
  } catch (e) {
    return { ...base, status: null, latencyMs: null, passed: false, reason: (e as Error).message };
  }
  const reasons = evaluate(check, res, expectVersion);
  const out: CheckResult = {
    ...base,
    status: res.status,
    latencyMs: res.latencyMs === null ? null : Math.round(res.latencyMs),
    passed: reasons.length === 0,
  };
  if (reasons.length) out.reason = reasons.join("; ");
  const field = check["version-field"];
  if (field) {
    try {
      const v = lookup(JSON.parse(res.body), field);
      if (v.found) out.version = String(v.value);
    } catch {
      // not JSON: evaluate() already said so
    }
  }
  return out;
}

/** Requests made on the host over its SSH session, with curl (or wget for plain GETs). */
export function remoteRequester(remote: Remote): Requester {
  return async (req) => {
    const headerLines = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}\n`);
    const res = await remote.run({
      script: remoteHttpScript({
        url: req.url,
        method: req.method,
        timeoutMs: req.timeoutMs,
        headersOnStdin: headerLines.length > 0,
      }),
      what: `${req.method} ${req.url}`,
      stdin: headerLines.length ? headerLines.join("") : undefined,
      timeoutMs: req.timeoutMs + 15_000,
    });
    const parsed = parseRemoteHttp(res.stdout);
    if (parsed.tool === "none") throw new Error(parsed.error || "no HTTP client on the host");
    if (parsed.tool === "curl" && parsed.exitCode !== 0) {
      throw new Error(curlReason(parsed.exitCode, req.timeoutMs, parsed.error));
    }
    if (parsed.status === 0) {
      throw new Error(
        `no response (${parsed.tool}: ${parsed.error.split("\n").pop() || `exit ${parsed.exitCode}`})`,
      );
    }
    return { status: parsed.status, headers: parsed.headers, body: parsed.body, latencyMs: parsed.latencyMs };
  };
}
