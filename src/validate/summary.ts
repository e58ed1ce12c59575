import { formatDuration } from "../config/duration.js";
import type { Config } from "../config/schema.js";
import type { SummarySection } from "../core/summary.js";

/** user@host:port as written: a value read from an environment variable shows as $NAME, never its value. */
export function hostLabel(h: {
  user: string;
  host?: string;
  port: number;
  "host-env"?: string;
  "user-env"?: string;
  "port-env"?: string;
}): string {
  const v = (name: string | undefined, literal: string | number | undefined) => (name ? `$${name}` : literal);
  return `${v(h["user-env"], h.user)}@${v(h["host-env"], h.host)}:${v(h["port-env"], h.port)}`;
}

/** One row per environment and host: what a reviewer wants to see before a deploy. */
export function configSections(config: Config, only?: string): SummarySection[] {
  const rows: string[][] = [];
  for (const [name, env] of Object.entries(config.environments)) {
    if (only && name !== only) continue;
    for (const h of env.hosts) {
      rows.push([
        name,
        h.alias,
        hostLabel(h),
        env.strategy,
        String(env.parallel),
        env.migrate
          ? env.migrate.backup
            ? `yes, backup${env.migrate.backup.required ? " required" : ""}`
            : "yes"
          : "no",
        env.smoke ? `${env.smoke.checks.length} check(s) from ${env.smoke.from}` : "none",
        formatDuration(env.health.timeout),
      ]);
    }
  }
  return [
    { lines: [`App \`${config.app}\`, image \`${config.image.name}\``] },
    {
      table: {
        headers: [
          "environment",
          "host",
          "address",
          "strategy",
          "parallel",
          "migrations",
          "smoke",
          "health timeout",
        ],
        rows,
      },
    },
  ];
}
