import type { SmokeCheck } from "../config/schema.js";

/** One HTTP response as the checks see it, whoever made the request (runner or host). */
export interface HttpResponse {
  status: number;
  /** Header names lower-cased; the final response after redirects. */
  headers: Record<string, string>;
  body: string;
  latencyMs: number | null;
}

/**
 * Every way a response can fail a check, in the order a person would look: status first, then
 * content, then the deployed version, then speed. Returns the reasons (empty = the check passed).
 */
export function evaluate(check: SmokeCheck, res: HttpResponse, expectVersion?: string): string[] {
  const reasons: string[] = [];
  if (res.status !== check.status) reasons.push(`status ${res.status}, expected ${check.status}`);
  if (check.body !== undefined && !new RegExp(check.body).test(res.body)) {
    reasons.push(`body does not match /${check.body}/ (body starts: ${excerpt(res.body)})`);
  }
  for (const [name, pattern] of Object.entries(check.headers ?? {})) {
    const value = res.headers[name.toLowerCase()];
    if (value === undefined) reasons.push(`header ${name} is missing`);
    else if (!new RegExp(pattern).test(value))
      reasons.push(`header ${name} is "${value}", expected /${pattern}/`);
  }
  const needsJson = check.json !== undefined || check["version-field"] !== undefined;
  let doc: unknown;
  if (needsJson) {
    try {
      doc = JSON.parse(res.body);
    } catch {
      reasons.push(`body is not JSON (starts: ${excerpt(res.body)})`);
      return reasons;
    }
  }
  if (check.json !== undefined) reasons.push(...jsonSubset(check.json, doc));
  const field = check["version-field"];
  if (field !== undefined && expectVersion) {
    const got = lookup(doc, field);
    if (got.found === false) reasons.push(`version-field ${field} is missing from the response`);
    else if (!sameVersion(String(got.value), expectVersion)) {
      reasons.push(
        `version-field ${field} is "${String(got.value)}", expected "${expectVersion}": another release is still answering`,
      );
    }
  }
  const max = check["max-latency"];
  if (max !== undefined) {
    if (res.latencyMs === null)
      reasons.push(`latency unknown (max-latency ${max} ms needs curl on the host)`);
    else if (res.latencyMs > max)
      reasons.push(`latency ${Math.round(res.latencyMs)} ms > max-latency ${max} ms`);
  }
  return reasons;
}

/**
 * Apps often report a short SHA while CI knows the full one: equal, or one is a prefix of the
 * other with at least 7 characters (git's own short form).
 */
export function sameVersion(actual: string, expected: string): boolean {
  const a = actual.trim().toLowerCase();
  const e = expected.trim().toLowerCase();
  if (a === e) return true;
  const [short, long] = a.length < e.length ? [a, e] : [e, a];
  return short.length >= 7 && /^[0-9a-f]+$/.test(long) && long.startsWith(short);
}

type Found = { found: true; value: unknown } | { found: false };

/** `a.b.0.c`, or a key that itself contains dots when the document has it literally. */
export function lookup(doc: unknown, path: string): Found {
  if (isObject(doc) && Object.hasOwn(doc, path)) return { found: true, value: doc[path] };
  let cur: unknown = doc;
  for (const key of path.split(".")) {
    if (Array.isArray(cur) && /^\d+$/.test(key) && Number(key) < cur.length) cur = cur[Number(key)];
    else if (isObject(cur) && Object.hasOwn(cur, key)) cur = cur[key];
    else return { found: false };
  }
  return { found: true, value: cur };
}

/** Every expected key (dotted paths allowed) must be present with a matching value. */
export function jsonSubset(expected: Record<string, unknown>, doc: unknown, prefix = ""): string[] {
  const out: string[] = [];
  for (const [key, want] of Object.entries(expected)) {
    const where = prefix ? `${prefix}.${key}` : key;
    const got = lookup(doc, key);
    if (!got.found) {
      out.push(`json ${where} is missing`);
      continue;
    }
    out.push(...matchValue(want, got.value, where));
  }
  return out;
}

function matchValue(want: unknown, got: unknown, where: string): string[] {
  if (isObject(want)) {
    if (!isObject(got)) return [`json ${where} is ${show(got)}, expected an object`];
    return jsonSubset(want, got, where);
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(got)) return [`json ${where} is ${show(got)}, expected a list`];
    if (got.length !== want.length) return [`json ${where} has ${got.length} items, expected ${want.length}`];
    return want.flatMap((w, i) => matchValue(w, got[i], `${where}.${i}`));
  }
  return Object.is(want, got) ? [] : [`json ${where} is ${show(got)}, expected ${show(want)}`];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

export function excerpt(body: string, max = 120): string {
  const one = body.replace(/\s+/g, " ").trim();
  if (!one) return "(empty)";
  return JSON.stringify(one.length > max ? `${one.slice(0, max)}…` : one);
}
