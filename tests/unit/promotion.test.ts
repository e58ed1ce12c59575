import { describe, expect, test } from "vitest";
import { promotionFromLedgers } from "../../src/cli/image.js";
import { ConfigError } from "../../src/core/errors.js";
import type { LedgerEntry } from "../../src/release/ledger.js";
import {
  checkSoak,
  choosePromotion,
  type ReleaseRecord,
  recordsFromLedger,
  rollbackRecord,
  servingFromLedger,
} from "../../src/release/promotion.js";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const ref = (c: string) => `reg.example/app@${D(c)}`;
const SHA = (c: string) => c.repeat(40);

function rec(
  c: string,
  outcome: ReleaseRecord["outcome"],
  minute: number,
  over: Partial<ReleaseRecord> = {},
) {
  return {
    environment: "staging",
    "release-id": `20260101-00${String(minute).padStart(2, "0")}00-${c.repeat(7)}`,
    "image-ref": ref(c),
    digest: D(c),
    "git-sha": SHA(c),
    outcome,
    smoke: outcome === "passed" ? "passed" : "failed",
    time: `2026-01-01T00:${String(minute).padStart(2, "0")}:00.000Z`,
    serving: ref(c),
    ...over,
  } satisfies ReleaseRecord;
}

/** A ledger line of image a, commit a, that succeeded; override what the case is about. */
const e = (over: Partial<LedgerEntry> & Pick<LedgerEntry, "id" | "kind">): LedgerEntry => ({
  "image-ref": ref("a"),
  "git-sha": SHA("a"),
  version: null,
  time: "2026-01-01T00:00:00Z",
  actor: "t",
  "run-url": null,
  status: "succeeded",
  backup: null,
  "migration-applied": null,
  ...over,
});

const refused = (fn: () => unknown): ConfigError => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a refusal");
};

describe("choosePromotion: what staging serves now, and passed", () => {
  test("the newest record passed: its digest", () => {
    const p = choosePromotion([rec("a", "passed", 1), rec("b", "passed", 2)], { from: "staging" });
    expect(p.record.digest).toBe(D("b"));
    expect(p.chosenBy).toBe("what staging serves now");
  });

  test("the newest release was rolled back: the digest serving again, which passed earlier", () => {
    const p = choosePromotion(
      [rec("a", "passed", 1), rec("b", "rolled-back", 2, { serving: ref("a"), reason: "smoke failed" })],
      { from: "staging" },
    );
    expect(p.record.digest).toBe(D("a"));
  });

  test("the newest release failed and stayed live: refused, naming it", () => {
    const e = refused(() =>
      choosePromotion([rec("a", "passed", 1), rec("b", "failed", 2, { reason: "smoke: /health 500" })], {
        from: "staging",
      }),
    );
    expect(e.message).toContain("Refusing to promote what staging serves now");
    expect(e.message).toContain(`release 20260101-000200-bbbbbbb (commit bbbbbbbbbbbb, ${D("b")}) FAILED`);
    expect(e.message).toContain("smoke: /health 500");
  });

  test("no records at all: refused, saying to deploy to staging first", () => {
    const e = refused(() => choosePromotion([], { from: "staging" }));
    expect(e.message).toBe("Nothing to promote: staging has no record of any release.");
    expect(e.hint).toContain("There are no records at all.");
  });

  test("serving known from the hosts (CLI) but without a passed record: refused", () => {
    const e = refused(() => choosePromotion([rec("a", "passed", 1)], { from: "staging", serving: ref("c") }));
    expect(e.message).toContain(`staging serves ${ref("c")}, but no record says it passed there.`);
  });
});

describe("choosePromotion: one named by release id, commit or digest", () => {
  const history = [
    rec("a", "passed", 1),
    rec("b", "rolled-back", 2, { serving: ref("a"), reason: "smoke failed" }),
    rec("c", "passed", 3),
    rec("d", "unverified", 4),
  ];

  test.each([
    ["release id", "20260101-000300-ccccccc", D("c")],
    ["full commit", SHA("c"), D("c")],
    ["short commit", "ccccccc", D("c")],
    ["digest", D("a"), D("a")],
    ["image@digest", ref("a"), D("a")],
  ])("%s that passed -> its digest", (_n, select, digest) => {
    expect(choosePromotion(history, { from: "staging", select }).record.digest).toBe(digest);
  });

  test.each([
    ["a release that was rolled back", "20260101-000200-bbbbbbb", /ROLLED-BACK.*smoke failed/],
    ["a commit whose deploy was rolled back", SHA("b"), /commit bbbbbbb.*ROLLED-BACK/],
    ["a release deployed without smoke checks", D("d"), /UNVERIFIED/],
  ])("%s is refused, naming it", (_n, select, message) => {
    expect(refused(() => choosePromotion(history, { from: "staging", select })).message).toMatch(message);
  });

  test("a digest that never ran on staging (a forged tag) is refused", () => {
    const e = refused(() => choosePromotion(history, { from: "staging", select: D("f") }));
    expect(e.message).toBe(`${D("f")} never ran on staging: no record names it.`);
    expect(e.hint).toContain("Recent records:");
  });

  test("a squash-merged commit (a SHA staging never saw) says to name the digest instead", () => {
    const e = refused(() => choosePromotion(history, { from: "staging", select: "1234567" }));
    expect(e.message).toBe("No release of commit 1234567 is recorded on staging.");
    expect(e.hint).toContain("squash-merged");
  });

  test("a digest that passed, then failed on a later redeploy, is refused", () => {
    const e = refused(() =>
      choosePromotion([rec("a", "passed", 1), rec("a", "failed", 5)], { from: "staging", select: D("a") }),
    );
    expect(e.message).toMatch(/FAILED at 2026-01-01T00:05:00/);
  });

  test("nonsense is refused with the accepted forms", () => {
    expect(refused(() => choosePromotion(history, { from: "staging", select: "latest" })).message).toBe(
      '"latest" is not a release id, a commit SHA or a digest.',
    );
  });
});

describe("min-soak", () => {
  const records = [rec("a", "passed", 1), rec("a", "passed", 30)];
  const p = choosePromotion(records, { from: "staging" });

  test("soak is counted from the first pass of an unbroken run of passes", () => {
    expect(p.passedSince).toBe("2026-01-01T00:01:00.000Z");
    const broken = choosePromotion([rec("a", "passed", 1), rec("a", "failed", 2), rec("a", "passed", 3)], {
      from: "staging",
    });
    expect(broken.passedSince).toBe("2026-01-01T00:03:00.000Z");
  });

  test("refuses a digest that passed 5 minutes ago, saying when it is eligible", () => {
    const now = Date.parse("2026-01-01T00:06:00Z");
    const e = refused(() => checkSoak(p, { from: "staging", minSoakMs: 24 * 3600_000, now }));
    expect(e.message).toBe(
      `${D("a")} passed on staging at 2026-01-01T00:01:00.000Z, 5m ago; min-soak asks for 1d 0h. It is eligible from 2026-01-02T00:01:00.000Z.`,
    );
  });

  test("accepts it once the record is old enough", () => {
    const now = Date.parse("2026-01-02T00:01:00Z");
    expect(checkSoak(p, { from: "staging", minSoakMs: 24 * 3600_000, now })).toBe(24 * 3600_000);
  });
});

describe("records from a host's ledger", () => {
  test("deploy + verify passed, a failed smoke rolled back, a health-gate failure, an unverified one", () => {
    const ledger = [
      e({ id: "r1", kind: "deploy" }),
      e({ id: "r1", kind: "verify", smoke: "passed", digests: { h1: D("a") }, time: "2026-01-01T00:01:00Z" }),
      e({ id: "r2", kind: "deploy", "image-ref": ref("b") }),
      e({ id: "r2", kind: "verify", "image-ref": ref("b"), status: "failed", smoke: "failed" }),
      e({ id: "r2b", kind: "rollback", replaces: "r2", target: "r1", reason: "r2 failed" }),
      e({ id: "r3", kind: "deploy", "image-ref": ref("c"), status: "failed", reason: "crash loop" }),
      e({ id: "r3b", kind: "rollback", replaces: "r3", target: "r1" }),
      e({ id: "r4", kind: "deploy", "image-ref": ref("d") }),
      e({ id: "r4", kind: "verify", "image-ref": ref("d"), smoke: "skipped" }),
    ];
    const records = recordsFromLedger(ledger, "staging");
    expect(records.map((r) => [r["release-id"], r.outcome, r.smoke, r.serving])).toEqual([
      ["r1", "passed", "passed", ref("a")],
      ["r2", "rolled-back", "failed", ref("a")],
      ["r3", "rolled-back", "not-run", ref("a")],
      ["r4", "unverified", "skipped", ref("d")],
    ]);
    expect(records[0]!.hosts).toEqual({ h1: D("a") });
    expect(servingFromLedger(ledger)).toBe(ref("d"));
    // r4 serves, and nothing proved it works: refused; r1 by name is fine.
    expect(() => choosePromotion(records, { from: "staging", serving: servingFromLedger(ledger) })).toThrow(
      /UNVERIFIED/,
    );
    expect(choosePromotion(records, { from: "staging", select: "r1" }).record["release-id"]).toBe("r1");
  });

  test("an operator's rollback from a passed release condemns it", () => {
    const records = recordsFromLedger(
      [
        e({ id: "r1", kind: "deploy" }),
        e({ id: "r1", kind: "verify", smoke: "passed" }),
        e({ id: "r2", kind: "deploy", "image-ref": ref("b") }),
        e({ id: "r2", kind: "verify", "image-ref": ref("b"), smoke: "passed" }),
        e({ id: "r3", kind: "rollback", replaces: "r2", target: "r1", reason: "rollback requested" }),
      ],
      "staging",
    );
    expect(records.map((r) => [r["release-id"], r.outcome])).toEqual([
      ["r1", "passed"],
      ["r2", "rolled-back"],
    ]);
    expect(choosePromotion(records, { from: "staging" }).record["release-id"]).toBe("r1");
  });
});

describe("deploy-kit promote: the same choice from the staging hosts' ledgers", () => {
  const passed = [e({ id: "r1", kind: "deploy" }), e({ id: "r1", kind: "verify", smoke: "passed" })];
  const now = Date.parse("2026-01-03T00:00:00Z");

  test("what staging serves and passed: its image and commit, and where it came from", () => {
    const c = promotionFromLedgers([{ alias: "s1", entries: passed }], {
      from: "staging",
      minSoakMs: 0,
      now,
    });
    expect(c).toEqual({
      imageRef: ref("a"),
      gitSha: SHA("a"),
      source: `passed on staging (what staging serves now): release r1 of commit aaaaaaaaaaaa, passing since 2026-01-01T00:00:00Z (2d 0h)`,
      warnings: [],
    });
  });

  test("a failed smoke test on staging is refused, naming the ledger it read", () => {
    const failed = [
      ...passed,
      e({ id: "r2", kind: "deploy", "image-ref": ref("b"), "git-sha": SHA("b") }),
      e({
        id: "r2",
        kind: "verify",
        "image-ref": ref("b"),
        status: "failed",
        smoke: "failed",
        reason: "1 of 1 failed",
      }),
    ];
    expect(() =>
      promotionFromLedgers([{ alias: "s1", entries: failed }], { from: "staging", minSoakMs: 0, now }),
    ).toThrow(
      /Refusing to promote what staging serves now: .*release r2 .*FAILED.*1 of 1 failed \(s1's ledger\)/,
    );
  });

  test("hosts that serve different images are named; min-soak applies", () => {
    const other = [e({ id: "r9", kind: "deploy", "image-ref": ref("c") })];
    const c = promotionFromLedgers(
      [
        { alias: "s1", entries: passed },
        { alias: "s2", entries: other },
      ],
      { from: "staging", minSoakMs: 0, now },
    );
    expect(c.warnings).toEqual([
      `staging's hosts serve different images (s1: ${ref("a")}; s2: ${ref("c")}); reading s1's ledger.`,
    ]);
    expect(() =>
      promotionFromLedgers([{ alias: "s1", entries: passed }], {
        from: "staging",
        minSoakMs: 72 * 3600_000,
        now,
      }),
    ).toThrow(/eligible from 2026-01-04T00:00:00.000Z/);
  });
});

test("a rollback on staging records the release it took off, so the default follows what serves again", () => {
  const taken = rollbackRecord(e({ id: "r2", kind: "deploy", "image-ref": ref("b"), "git-sha": SHA("b") }), {
    environment: "staging",
    serving: ref("a"),
    reason: "rolled back to r1 by octocat",
    now: new Date("2026-01-01T00:09:00Z"),
  });
  expect(taken).toMatchObject({
    "release-id": "r2",
    digest: D("b"),
    "git-sha": SHA("b"),
    outcome: "rolled-back",
    serving: ref("a"),
  });
  const records = [rec("a", "passed", 1), rec("b", "passed", 5), taken];
  expect(choosePromotion(records, { from: "staging" }).record.digest).toBe(D("a"));
  expect(() => choosePromotion(records, { from: "staging", select: D("b") })).toThrow(
    /ROLLED-BACK.*by octocat/,
  );
});
