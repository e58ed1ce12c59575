import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export const TOKEN = "ghs_FakeInstallationToken0123456789abcdef";
export const SHA = "0123456789abcdef0123456789abcdef01234567";
export const RUN = "https://github.com/acme/shop/actions/runs";

interface Deployment {
  id: number;
  sha: string;
  ref: string;
  environment: string;
  task?: string;
  payload?: unknown;
  created_at?: string;
  statuses: { id: number; state: string; log_url: string; target_url: string }[];
}

/** A GitHub Environment's protection rules, as GET /repos/{o}/{r}/environments/{name} returns them. */
export interface FakeEnvironment {
  reviewers?: { type: "User" | "Team"; name: string }[];
  waitTimer?: number;
}

/**
 * The shapes of the Deployments REST API that deploy-kit uses, served on loopback:
 * GET /repos/{o}/{r}/deployments?sha=&environment= (newest first), GET .../deployments/{id}/statuses,
 * POST .../deployments/{id}/statuses, POST .../deployments (task, payload), GET .../environments/{name},
 * GET .../compare/{base}...{head}.
 */
export class FakeGitHub {
  server: Server;
  deployments: Deployment[] = [];
  requests: { method: string; path: string; auth?: string; body?: Record<string, unknown> }[] = [];
  nextId = 100;
  refuseWith?: number;
  environments = new Map<string, FakeEnvironment>();
  /** Commits by SHA, in history order: compare returns those after base up to head. */
  history: { sha: string; message: string; login: string }[] = [];
  files: { filename: string; status: string; patch?: string }[] = [];
  constructor() {
    this.server = createServer((req, res) => void this.handle(req, res));
  }
  reset() {
    this.deployments = [];
    this.requests = [];
    this.refuseWith = undefined;
    this.environments.clear();
    this.history = [];
    this.files = [];
    this.nextId = 100;
  }
  listen(): Promise<void> {
    return new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
  }
  close(): Promise<void> {
    return new Promise<void>((r) => this.server.close(() => r()));
  }
  get baseUrl() {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  private async body(req: IncomingMessage) {
    let text = "";
    for await (const chunk of req) text += chunk;
    return text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  }
  private async handle(req: IncomingMessage, res: import("node:http").ServerResponse) {
    const url = new URL(req.url ?? "/", this.baseUrl);
    const body = await this.body(req);
    this.requests.push({
      method: req.method!,
      path: url.pathname + url.search,
      auth: req.headers.authorization,
      body,
    });
    const send = (status: number, data: unknown) => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(data));
    };
    if (this.refuseWith) return send(this.refuseWith, { message: "Resource not accessible by integration" });
    if (req.headers.authorization !== `token ${TOKEN}`) return send(401, { message: "Bad credentials" });
    const envMatch = /^\/repos\/acme\/shop\/environments\/([^/]+)$/.exec(url.pathname);
    if (envMatch) {
      const e = this.environments.get(decodeURIComponent(envMatch[1]!));
      if (!e) return send(404, { message: "Not Found" });
      const rules: unknown[] = [{ id: 1, type: "branch_policy" }];
      if (e.reviewers)
        rules.push({
          id: 2,
          type: "required_reviewers",
          reviewers: e.reviewers.map((r) => ({
            type: r.type,
            reviewer: r.type === "User" ? { login: r.name } : { slug: r.name, name: r.name },
          })),
        });
      if (e.waitTimer) rules.push({ id: 3, type: "wait_timer", wait_timer: e.waitTimer });
      return send(200, { id: 9, name: envMatch[1], protection_rules: rules });
    }
    const cmp = /^\/repos\/acme\/shop\/compare\/([0-9a-f]+)\.\.\.([0-9a-f]+)$/.exec(url.pathname);
    if (cmp) {
      const from = this.history.findIndex((c) => c.sha === cmp[1]);
      const to = this.history.findIndex((c) => c.sha === cmp[2]);
      if (from < 0 || to < 0) return send(404, { message: "Not Found" });
      const commits = this.history.slice(from + 1, to + 1).map((c) => ({
        sha: c.sha,
        commit: { message: c.message, author: { name: c.login } },
        author: { login: c.login },
      }));
      return send(200, {
        html_url: `https://github.com/acme/shop/compare/${cmp[1]}...${cmp[2]}`,
        total_commits: commits.length,
        commits,
        files: this.files,
      });
    }
    const m = /^\/repos\/acme\/shop\/deployments(?:\/(\d+)\/statuses)?$/.exec(url.pathname);
    if (!m) return send(404, { message: "Not Found" });
    const wire = (d: Deployment) => ({
      id: d.id,
      sha: d.sha,
      ref: d.ref,
      environment: d.environment,
      task: d.task ?? "deploy",
      payload: d.payload ?? {},
      created_at: d.created_at ?? "2026-01-01T00:00:00Z",
    });
    if (!m[1] && req.method === "GET") {
      const sha = url.searchParams.get("sha");
      const env = url.searchParams.get("environment");
      const task = url.searchParams.get("task");
      const list = this.deployments
        .filter(
          (d) =>
            (!sha || d.sha === sha) &&
            (!env || d.environment === env) &&
            (!task || (d.task ?? "deploy") === task),
        )
        .sort((a, b) => b.id - a.id);
      return send(200, list.map(wire));
    }
    if (!m[1] && req.method === "POST") {
      const d: Deployment = {
        id: this.nextId++,
        sha: /^[0-9a-f]{40}$/.test(String(body?.ref)) ? String(body?.ref) : SHA,
        ref: String(body?.ref),
        environment: String(body?.environment),
        task: typeof body?.task === "string" ? body.task : undefined,
        payload: body?.payload,
        statuses: [],
      };
      this.deployments.push(d);
      return send(201, wire(d));
    }
    const d = this.deployments.find((x) => x.id === Number(m[1]));
    if (!d) return send(404, { message: "Not Found" });
    if (req.method === "GET") return send(200, [...d.statuses].reverse());
    const status = {
      id: d.statuses.length + 1,
      state: String(body?.state),
      log_url: String(body?.log_url ?? ""),
      target_url: String(body?.log_url ?? ""),
    };
    d.statuses.push(status);
    return send(201, status);
  }
  add(id: number, environment: string, statuses: [string, string][], sha = SHA) {
    this.deployments.push({
      id,
      sha,
      ref: "main",
      environment,
      statuses: statuses.map(([state, run], i) => ({
        id: i + 1,
        state,
        log_url: `${RUN}/${run}`,
        target_url: `${RUN}/${run}`,
      })),
    });
  }
}
