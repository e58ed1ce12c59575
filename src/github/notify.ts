import type { Config } from "../config/schema.js";
import type { Log } from "../core/log.js";
import { registerSecret } from "../core/secrets.js";
import { runUrl } from "../core/workspace.js";

export type Outcome = "success" | "failure" | "rolled-back";

/** What changed the hosts: a deploy (all-in-one or deploy-ssh) or a rollback (action, CLI, workflow). */
export type ReleaseEvent = "deploy" | "rollback";

/** What one deploy or rollback produced: the facts every message carries. */
export interface DeployFacts {
  /** Default "deploy". */
  event?: ReleaseEvent;
  outcome: Outcome;
  app: string;
  environment: string;
  /** APP_VERSION or the git tag. */
  version?: string;
  sha?: string;
  /** name@sha256:… as deployed (or as attempted). */
  imageRef?: string;
  releaseId?: string;
  /** A rollback's target: the earlier release put back. */
  target?: string;
  /** Who started it (default GITHUB_ACTOR); user@machine from the CLI. */
  actor?: string;
  /** The run page (default: this run's URL on GitHub). */
  runUrl?: string;
  /** The environment URL. */
  url?: string;
  /** One line on what went wrong (failure / rolled back). */
  reason?: string;
}

export interface NotifyOptions extends DeployFacts {
  /** The config's `notify` section: names of env vars holding webhook URLs. */
  notify: Config["notify"];
  /** Where the named env vars are read; default process.env. */
  env?: Record<string, string | undefined>;
  /** Per request; default 10 s. */
  timeoutMs?: number;
  /** Pause before the one retry of a 429/5xx/unreachable webhook; default 1 s. */
  retryDelayMs?: number;
}

type Channel = "slack" | "discord" | "webhook";

const CHANNELS: { channel: Channel; key: keyof NonNullable<Config["notify"]>; label: string }[] = [
  { channel: "slack", key: "slack-webhook-env", label: "Slack" },
  { channel: "discord", key: "discord-webhook-env", label: "Discord" },
  { channel: "webhook", key: "webhook-env", label: "webhook" },
];

const HEADLINE: Record<Outcome, string> = {
  success: "deployed",
  failure: "deploy FAILED",
  "rolled-back": "deploy failed and was ROLLED BACK",
};

/** How a message looks: a rollback that worked still means a release was taken away. */
type Tone = "good" | "bad" | "back";
function tone(f: DeployFacts): Tone {
  if (f.outcome === "failure") return "bad";
  return f.outcome === "rolled-back" || f.event === "rollback" ? "back" : "good";
}

/** sha256:0123456789ab (12 hex) from name@sha256:…, for humans; the full digest is in the JSON. */
export function digestOf(imageRef: string | undefined): string | undefined {
  const m = /@(sha256:[0-9a-f]{64})$/.exec(imageRef ?? "");
  return m?.[1];
}

function short(digest: string | undefined): string | undefined {
  return digest?.slice(0, "sha256:".length + 12);
}

/** The lines every human-readable message shows, in order. */
export function messageFields(f: DeployFacts): [string, string][] {
  const fields: [string, string | undefined][] = [
    ["App", f.app],
    ["Environment", f.environment],
    ["Version", f.version ?? f.sha?.slice(0, 12)],
    ["Digest", short(digestOf(f.imageRef)) ?? f.imageRef],
    ["Release", f.releaseId],
    ["Back to", f.target],
    ["Actor", f.actor],
    ["URL", f.url],
    ["Run", f.runUrl],
    ["Why", f.outcome === "success" ? undefined : f.reason],
  ];
  return fields.filter((x): x is [string, string] => !!x[1]);
}

export function headline(f: DeployFacts): string {
  if (f.event === "rollback") {
    return f.outcome === "failure"
      ? `${f.app} rollback FAILED on ${f.environment}`
      : `${f.app} ROLLED BACK on ${f.environment}${f.target ? ` to ${f.target}` : ""}`;
  }
  return `${f.app} ${HEADLINE[f.outcome]} to ${f.environment}${f.version ? ` (${f.version})` : ""}`;
}

// Slack mrkdwn: &, < and > are control characters.
const slackEscape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function slackPayload(f: DeployFacts): unknown {
  const icon = { good: ":white_check_mark:", bad: ":x:", back: ":rewind:" }[tone(f)];
  const title = `${icon} ${slackEscape(headline(f))}`;
  const lines = messageFields(f).map(([k, v]) =>
    /^https?:\/\//.test(v) ? `*${k}:* <${v}|${slackEscape(v)}>` : `*${k}:* ${slackEscape(v)}`,
  );
  return {
    text: headline(f),
    blocks: [{ type: "section", text: { type: "mrkdwn", text: [title, ...lines].join("\n") } }],
  };
}

export function discordPayload(f: DeployFacts): unknown {
  const color = { good: 0x2ea043, bad: 0xd1242f, back: 0xbf8700 }[tone(f)];
  return {
    username: "deploy-kit",
    // Never ping anyone because a commit message or error said @everyone.
    allowed_mentions: { parse: [] },
    embeds: [
      {
        title: headline(f).slice(0, 256),
        color,
        ...(f.runUrl ? { url: f.runUrl } : {}),
        fields: messageFields(f).map(([name, value]) => ({
          name,
          value: value.slice(0, 1024),
          inline: value.length < 40,
        })),
        timestamp: new Date().toISOString(),
      },
    ],
  };
}

/** The generic webhook gets every fact as plain JSON, full digest included. */
export function webhookPayload(f: DeployFacts): unknown {
  return {
    event: f.event ?? "deploy",
    outcome: f.outcome,
    app: f.app,
    environment: f.environment,
    version: f.version ?? null,
    sha: f.sha ?? null,
    imageRef: f.imageRef ?? null,
    digest: digestOf(f.imageRef) ?? null,
    releaseId: f.releaseId ?? null,
    target: f.target ?? null,
    actor: f.actor ?? null,
    runUrl: f.runUrl ?? null,
    url: f.url ?? null,
    reason: f.outcome === "success" ? null : (f.reason ?? null),
    time: new Date().toISOString(),
  };
}

const PAYLOAD: Record<Channel, (f: DeployFacts) => unknown> = {
  slack: slackPayload,
  discord: discordPayload,
  webhook: webhookPayload,
};

/** A reason for a failed POST that never contains the URL (it is the secret). */
function networkReason(e: unknown): string {
  const cause = (e as { cause?: { code?: string } }).cause;
  if ((e as { name?: string }).name === "TimeoutError") return "timed out";
  return cause?.code ?? (e instanceof Error ? e.name : "network error");
}

async function post(
  url: string,
  body: unknown,
  opts: { timeoutMs: number; retryDelayMs: number },
): Promise<string | undefined> {
  let problem = "";
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "deploy-kit" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(opts.timeoutMs),
        redirect: "error",
      });
      await res.body?.cancel();
      if (res.ok) return undefined;
      problem = `HTTP ${res.status}`;
      if (res.status !== 429 && res.status < 500) return problem;
    } catch (e) {
      problem = networkReason(e);
    }
    if (attempt === 1) await new Promise((r) => setTimeout(r, opts.retryDelayMs));
  }
  return `${problem} (after a retry)`;
}

/**
 * One message per deploy or rollback outcome to every channel the config names. A channel that fails is a
 * warning: notifications never fail (or slow for long) a deploy. The webhook URLs are secrets and
 * are registered before use, so they never reach a log.
 */
export async function notify(opts: NotifyOptions, log: Log): Promise<{ sent: Channel[]; failed: Channel[] }> {
  const env = opts.env ?? process.env;
  const facts: DeployFacts = {
    ...opts,
    actor: opts.actor ?? process.env.GITHUB_ACTOR,
    runUrl: opts.runUrl ?? runUrl(),
  };
  const sent: Channel[] = [];
  const failed: Channel[] = [];
  const jobs = CHANNELS.flatMap(({ channel, key, label }) => {
    const name = opts.notify?.[key];
    if (!name) return [];
    const url = env[name]?.trim();
    registerSecret(url);
    if (!url) {
      log.warn(`notify.${key} names ${name}, which is not set: no ${label} message sent.`);
      failed.push(channel);
      return [];
    }
    if (!/^https?:\/\//.test(url)) {
      log.warn(`${name} does not hold an http(s) URL: no ${label} message sent.`);
      failed.push(channel);
      return [];
    }
    return [
      post(url, PAYLOAD[channel](facts), {
        timeoutMs: opts.timeoutMs ?? 10_000,
        retryDelayMs: opts.retryDelayMs ?? 1000,
      }).then((problem) => {
        if (problem) {
          log.warn(`${label} notification (${name}) failed: ${problem}. The deploy result is unchanged.`);
          failed.push(channel);
        } else {
          log.info(`${label} notified (${facts.outcome}).`);
          sent.push(channel);
        }
      }),
    ];
  });
  await Promise.all(jobs);
  return { sent, failed };
}
