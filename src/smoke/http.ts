import type { HttpResponse } from "./match.js";

export interface HttpRequest {
  url: string;
  method: "GET" | "HEAD" | "POST";
  /** Request headers; may hold a registered secret (Authorization). */
  headers: Record<string, string>;
  timeoutMs: number;
}

/** Makes one request; throws an Error whose message says why there was no response. */
export type Requester = (req: HttpRequest) => Promise<HttpResponse>;

/** Bodies larger than this are cut: checks look at health documents, not downloads. */
export const MAX_BODY = 1024 * 1024;

/** Requests from the runner (Node's fetch): redirects followed, one deadline for the whole exchange. */
export const fetchRequester: Requester = async (req) => {
  const started = performance.now();
  const signal = AbortSignal.timeout(req.timeoutMs);
  let res: Response;
  try {
    res = await fetch(req.url, { method: req.method, headers: req.headers, redirect: "follow", signal });
  } catch (e) {
    throw new Error(networkReason(e, req.timeoutMs));
  }
  let body = "";
  try {
    body = await readCapped(res);
  } catch (e) {
    throw new Error(networkReason(e, req.timeoutMs));
  }
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    headers[k.toLowerCase()] = v;
  });
  return { status: res.status, headers, body, latencyMs: performance.now() - started };
};

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return "";
  const decoder = new TextDecoder();
  let out = "";
  for await (const chunk of res.body) {
    out += decoder.decode(chunk as Uint8Array, { stream: true });
    if (out.length >= MAX_BODY) {
      await res.body.cancel().catch(() => {});
      return out.slice(0, MAX_BODY);
    }
  }
  return out + decoder.decode();
}

/** fetch's errors say "fetch failed"; the cause says what a person needs to know. */
export function networkReason(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return `no response within ${timeoutMs} ms`;
  const code = err?.cause?.code;
  const known: Record<string, string> = {
    ECONNREFUSED: "connection refused (nothing listening?)",
    ECONNRESET: "connection reset",
    ENOTFOUND: "host name not found",
    EAI_AGAIN: "host name lookup failed",
    EHOSTUNREACH: "host unreachable",
    ETIMEDOUT: "connection timed out",
    UND_ERR_SOCKET: "connection closed by the server",
  };
  if (code && known[code]) return known[code];
  // fetch refuses a fixed list of ports (the "bad ports" of the Fetch standard) before connecting.
  if (err?.cause?.message === "bad port")
    return "fetch refuses this port (Fetch standard's blocked ports): use another";
  const msg = err?.cause?.message ?? err?.message ?? String(e);
  return code ? `${code}: ${msg}` : msg;
}
