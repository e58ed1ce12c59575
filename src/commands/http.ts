import { script, sh } from "./shell.js";

/**
 * An HTTP request made ON a host (smoke `from: host`), for endpoints only reachable there.
 * It needs curl on the host (preferred: any method, latency, headers from stdin so a bearer
 * token never appears in the host's process list) or, for plain GETs, wget (GNU or busybox).
 */
export interface RemoteHttpRequest {
  url: string;
  method: "GET" | "HEAD" | "POST";
  timeoutMs: number;
  /** True when request headers come on stdin ("Name: value" lines); only curl can take them. */
  headersOnStdin: boolean;
}

export const MARK = {
  meta: "DK-HTTP",
  headers: "DK-HEADERS",
  error: "DK-ERROR",
  body: "DK-BODY",
};

/** Bytes of body sent back over SSH. */
export const REMOTE_BODY_MAX = 256 * 1024;

/**
 * The script prints `DK-HTTP <tool> <exit> <status> <seconds>` then the response headers, any
 * error text and the body, each after its marker. It always exits 0 when it could run a tool:
 * the caller decides what a failed request means.
 */
export function remoteHttpScript(req: RemoteHttpRequest): string {
  const secs = Math.max(1, Math.ceil(req.timeoutMs / 1000));
  const method = req.method === "HEAD" ? sh`-I` : sh`-X ${req.method}`;
  const curlHeaders = req.headersOnStdin ? sh` -H @-` : "";
  const wgetOk = req.method === "GET" && !req.headersOnStdin;
  return script(
    `t=$(mktemp -d)`,
    `trap 'rm -rf "$t"' EXIT`,
    `rc=0`,
    `if command -v curl >/dev/null 2>&1; then`,
    `  out=$(curl -sS -L --max-redirs 10 ${method}${curlHeaders} --max-time ${secs} -D "$t/h" -o "$t/b" -w '%{http_code} %{time_total}' ${sh`${req.url}`} 2>"$t/e") || rc=$?`,
    `  printf '${MARK.meta} curl %s %s\\n' "$rc" "\${out:-000 -}"`,
    `else`,
    `  if command -v wget >/dev/null 2>&1; then w=wget; elif command -v busybox >/dev/null 2>&1; then w='busybox wget'; else`,
    `    printf '${MARK.meta} none 127 000 -\\n${MARK.error}\\nneither curl nor wget is installed on this host\\n'; exit 0`,
    `  fi`,
    wgetOk
      ? [
          `  s=$(date +%s%N 2>/dev/null || echo x)`,
          // busybox wget 1.35 crashes on -T, so the deadline comes from timeout(1) when present.
          `  if command -v timeout >/dev/null 2>&1; then w="timeout ${secs} $w"; fi`,
          `  $w -S -O "$t/b" ${sh`${req.url}`} 2>"$t/e" || rc=$?`,
          `  e=$(date +%s%N 2>/dev/null || echo x)`,
          // The last status line wins (redirects print one per hop); -S writes headers to stderr.
          `  code=$(sed -n 's/^ *HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p' "$t/e" | tail -n 1)`,
          `  case "$s$e" in *[!0-9]*) took=- ;; *) took=$(( (e - s) / 1000 ))us ;; esac`,
          `  sed -n 's/^  //p' "$t/e" > "$t/h"`,
          `  printf '${MARK.meta} wget %s %s %s\\n' "$rc" "\${code:-000}" "$took"`,
        ].join("\n")
      : `  printf '${MARK.meta} none 127 000 -\\n${MARK.error}\\n${req.headersOnStdin ? "a bearer token" : `method ${req.method}`} needs curl on the host (only wget found)\\n'; exit 0`,
    `fi`,
    `printf '${MARK.headers}\\n'; cat "$t/h" 2>/dev/null || true`,
    `printf '\\n${MARK.error}\\n'; cat "$t/e" 2>/dev/null | tail -n 5 || true`,
    `printf '\\n${MARK.body}\\n'; head -c ${REMOTE_BODY_MAX} "$t/b" 2>/dev/null || true`,
  );
}

export interface RemoteHttpResult {
  tool: "curl" | "wget" | "none";
  exitCode: number;
  status: number;
  latencyMs: number | null;
  headers: Record<string, string>;
  error: string;
  body: string;
}

/** Parse what remoteHttpScript printed. */
export function parseRemoteHttp(stdout: string): RemoteHttpResult {
  const lines = stdout.split("\n");
  const metaAt = lines.findIndex((l) => l.startsWith(`${MARK.meta} `));
  if (metaAt < 0) throw new Error(`unexpected output from the host: ${stdout.slice(0, 200)}`);
  const [, tool, exit, status, took] = lines[metaAt]!.split(" ");
  const section = (name: string, next?: string): string[] => {
    const from = lines.indexOf(name, metaAt);
    if (from < 0) return [];
    const to = next ? lines.indexOf(next, from + 1) : lines.length;
    return lines.slice(from + 1, to < 0 ? lines.length : to);
  };
  const headers: Record<string, string> = {};
  // curl -L writes every hop's headers: a new status line starts over, so the last response wins.
  for (const raw of section(MARK.headers, MARK.error)) {
    const l = raw.replace(/\r$/, "");
    if (/^HTTP\//.test(l)) for (const k of Object.keys(headers)) delete headers[k];
    const colon = l.indexOf(":");
    if (colon > 0 && !/^HTTP\//.test(l))
      headers[l.slice(0, colon).trim().toLowerCase()] = l.slice(colon + 1).trim();
  }
  const bodyLines = section(MARK.body);
  return {
    tool: (tool === "curl" || tool === "wget" ? tool : "none") as RemoteHttpResult["tool"],
    exitCode: Number(exit),
    status: Number(status) || 0,
    latencyMs: parseSeconds(took ?? "-"),
    headers,
    error: section(MARK.error, MARK.body).join("\n").trim(),
    body: bodyLines.join("\n"),
  };
}

function parseSeconds(took: string): number | null {
  if (/^\d+us$/.test(took)) return Number(took.slice(0, -2)) / 1000;
  if (/^\d+(\.\d+)?$/.test(took)) return Number(took) * 1000;
  return null;
}

/** curl's exit codes a person would otherwise have to look up. */
export function curlReason(exitCode: number, timeoutMs: number, stderr: string): string {
  const known: Record<number, string> = {
    6: "host name not found",
    7: "connection refused (nothing listening?)",
    28: `no response within ${timeoutMs} ms`,
    47: "too many redirects",
    52: "the server closed the connection without a response",
    56: "connection reset",
  };
  return known[exitCode] ?? (stderr.split("\n").pop() || `curl exited ${exitCode}`);
}
