/**
 * Runs every case on SQLite and on the local MariaDB server, because the statements are shared
 * between both dialects. The MariaDB cases use a database with a random name, dropped at the end.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { createLogger } from "@mp3converter/lib/log";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import { GATEWAY_MIGRATIONS } from "./jobs-migrations.ts";
import {
  COUNT_ACTIVE_OWNED,
  type JobRecord,
  JobStore,
  type NewJob,
  SELECT_FINISHED_BEFORE,
} from "./jobs-store.ts";

const logger = createLogger({ service: "gateway-test", level: "silent" });

const MYSQL_SERVER_URL = "mysql://root@127.0.0.1:3306";
const mysqlDatabase = `mp3c_gateway_test_${randomBytes(4).toString("hex")}`;

/** Runs one statement on the server's `mysql` system database, for CREATE and DROP DATABASE. */
async function runOnMysqlServer(sql: string): Promise<void> {
  const admin = await openSqlDatabase(`${MYSQL_SERVER_URL}/mysql`, { logger });
  try {
    await admin.execute(sql);
  } finally {
    await admin.close();
  }
}

beforeAll(async () => {
  await runOnMysqlServer(`CREATE DATABASE \`${mysqlDatabase}\` CHARACTER SET utf8mb4`);
});

afterAll(async () => {
  await runOnMysqlServer(`DROP DATABASE IF EXISTS \`${mysqlDatabase}\``);
});

const DATABASE_URLS = [
  ["sqlite", "sqlite::memory:"],
  ["mysql", `${MYSQL_SERVER_URL}/${mysqlDatabase}`],
] as const;

let db: SqlDatabase;
let jobs: JobStore;

function newJob(overrides: Partial<NewJob> = {}): NewJob {
  return {
    id: crypto.randomUUID(),
    ownerId: "user-1",
    ownerEmail: "alice@example.com",
    filename: "talk.mp4",
    videoFid: `video-${crypto.randomUUID()}`,
    requestId: "req-1",
    createdAt: 1_000,
    publishLeaseUntil: 0,
    ...overrides,
  };
}

describe.each(DATABASE_URLS)("JobStore on %s", (dialect, url) => {
  beforeEach(async () => {
    db = await openSqlDatabase(url, { logger });
    await db.migrate(GATEWAY_MIGRATIONS);
    await db.execute("DELETE FROM jobs");
    jobs = new JobStore(db);
  });

  afterEach(async () => {
    await db.close();
  });

  describe("updates", () => {
    test("moves a job forward through every state", async () => {
      const job = newJob();
      await jobs.insert(job);
      expect(await jobs.applyUpdate(job.id, { state: "converting", at: 2 })).toBe(true);
      expect(
        await jobs.applyUpdate(job.id, {
          state: "converted",
          mp3Fid: job.id,
          durationS: 3.5,
          warnings: ["the input ended early"],
          at: 3,
        }),
      ).toBe(true);
      expect(await jobs.applyUpdate(job.id, { state: "notified", at: 4 })).toBe(true);

      const stored = await jobs.findOwned(job.id, "user-1");
      expect(stored?.state).toBe("notified");
      expect(stored?.mp3Fid).toBe(job.id);
      expect(stored?.durationS).toBe(3.5);
      expect(stored?.warnings).toEqual(["the input ended early"]);
      expect(stored?.updatedAt).toBe(4);
    });

    test("ignores stale and duplicate updates", async () => {
      const job = newJob();
      await jobs.insert(job);
      await jobs.applyUpdate(job.id, { state: "converted", mp3Fid: job.id, at: 2 });
      expect(await jobs.applyUpdate(job.id, { state: "converting", at: 3 })).toBe(false);
      expect(await jobs.applyUpdate(job.id, { state: "converted", at: 4 })).toBe(false);
      const failure = { code: "conversion_failed", message: "late failure" };
      expect(await jobs.applyUpdate(job.id, { state: "failed", failure, at: 5 })).toBe(false);
      const stored = await jobs.findOwned(job.id, "user-1");
      expect(stored?.state).toBe("converted");
      expect(stored?.failure).toBeNull();
      expect(stored?.updatedAt).toBe(2);
    });

    test("keeps failed terminal", async () => {
      const job = newJob();
      await jobs.insert(job);
      const failure = { code: "no_audio", message: "The video has no audio track." };
      expect(await jobs.applyUpdate(job.id, { state: "failed", failure, at: 2 })).toBe(true);
      for (const state of ["converting", "converted", "notified", "failed"] as const) {
        expect(await jobs.applyUpdate(job.id, { state, at: 3 })).toBe(false);
      }
      const stored = await jobs.findOwned(job.id, "user-1");
      expect(stored?.state).toBe("failed");
      expect(stored?.failure).toEqual(failure);
    });

    test("ignores an update for an unknown job", async () => {
      expect(await jobs.applyUpdate(crypto.randomUUID(), { state: "converting", at: 1 })).toBe(
        false,
      );
    });
  });

  describe("reads", () => {
    test("hides jobs of other owners", async () => {
      const job = newJob();
      await jobs.insert(job);
      expect(await jobs.findOwned(job.id, "user-2")).toBeNull();
      await jobs.applyUpdate(job.id, { state: "converted", mp3Fid: "mp3-1", at: 2 });
      expect(await jobs.findByMp3("mp3-1", "user-2")).toBeNull();
      expect((await jobs.findByMp3("mp3-1", "user-1"))?.id).toBe(job.id);
    });

    test("counts active jobs per owner", async () => {
      const states = ["queued", "converting", "converted", "notified", "failed"] as const;
      for (const state of states) {
        const job = newJob();
        await jobs.insert(job);
        if (state === "queued") continue;
        const update = { state, at: 2 };
        if (state === "notified") {
          await jobs.applyUpdate(job.id, { state: "converted", mp3Fid: job.id, at: 2 });
        }
        expect(await jobs.applyUpdate(job.id, update)).toBe(true);
      }
      await jobs.insert(newJob({ ownerId: "user-2" }));

      expect(await jobs.countActive("user-1")).toBe(2);
      expect(await jobs.countActive("user-2")).toBe(1);
      expect(await jobs.countActive("user-3")).toBe(0);
    });

    test("active count uses the owner and state index", async () => {
      const sql = COUNT_ACTIVE_OWNED;
      if (dialect === "sqlite") {
        const plan = await db.query<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, ["user-1"]);
        expect(plan.map((row) => row.detail).join("\n")).toContain(
          "COVERING INDEX jobs_owner_state",
        );
      } else {
        const plan = await db.query<{ possible_keys: string }>(`EXPLAIN ${sql}`, ["user-1"]);
        expect(plan[0]?.possible_keys).toContain("jobs_owner_state");
      }
    });

    test("stores non-ASCII filenames unchanged", async () => {
      const job = newJob({ filename: "Café 🎵 録音.mp4" });
      await jobs.insert(job);
      expect((await jobs.findOwned(job.id, "user-1"))?.filename).toBe("Café 🎵 録音.mp4");
    });

    test("lists newest first across pages", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const job = newJob({ createdAt: 1_000 + Math.floor(i / 2) });
        ids.push(job.id);
        await jobs.insert(job);
      }
      await jobs.insert(newJob({ ownerId: "user-2" }));
      const seen: string[] = [];
      let page = await jobs.listOwned("user-1", 2);
      while (page.length > 0) {
        seen.push(...page.map((job) => job.id));
        const last = page[page.length - 1];
        if (!last) break;
        page = await jobs.listOwned("user-1", 2, { createdAt: last.createdAt, id: last.id });
      }
      expect(seen).toHaveLength(5);
      expect(new Set(seen)).toEqual(new Set(ids));
      const all = await jobs.listOwned("user-1", 10);
      expect(all.map((job) => job.id)).toEqual(seen);
      const times = all.map((job) => job.createdAt);
      expect(times).toEqual([...times].sort((a, b) => b - a));
    });
  });

  describe("outbox", () => {
    test("lists unpublished jobs oldest first", async () => {
      const older = newJob({ createdAt: 1 });
      const newer = newJob({ createdAt: 2 });
      await jobs.insert(newer);
      await jobs.insert(older);
      const pending = await jobs.listUnpublished(10, 10);
      expect(pending.map((job) => job.id)).toEqual([older.id, newer.id]);
    });

    test("lets one claimer win a lease", async () => {
      const job = newJob();
      await jobs.insert(job);
      expect(await jobs.claimForPublish(job.id, 10, 100)).toBe(true);
      expect(await jobs.claimForPublish(job.id, 50, 150)).toBe(false);
      expect(await jobs.listUnpublished(50, 10)).toHaveLength(0);
      expect(await jobs.claimForPublish(job.id, 101, 200)).toBe(true);
    });

    test("skips published jobs and freed leases return", async () => {
      const job = newJob({ publishLeaseUntil: 1_000_000 });
      await jobs.insert(job);
      expect(await jobs.listUnpublished(10, 10)).toHaveLength(0);
      await jobs.releaseClaim(job.id);
      expect(await jobs.listUnpublished(10, 10)).toHaveLength(1);
      await jobs.markPublished(job.id, 20);
      expect(await jobs.listUnpublished(10, 10)).toHaveLength(0);
      expect((await jobs.findOwned(job.id, "user-1"))?.publishedAt).toBe(20);
    });

    test("marks only unfinished jobs unpublished", async () => {
      const states = ["queued", "converting", "converted", "notified", "failed"] as const;
      const ids = {} as Record<(typeof states)[number], string>;
      for (const state of states) {
        const job = newJob({ publishLeaseUntil: 1_000_000 });
        await jobs.insert(job);
        await jobs.markPublished(job.id, 20);
        if (state !== "queued") {
          const failure = { code: "no_audio", message: "The video has no audio track." };
          await jobs.applyUpdate(job.id, { state, at: 30, ...(state === "failed" && { failure }) });
        }
        ids[state] = job.id;
      }

      expect(await jobs.markUnfinishedUnpublished()).toBe(3);

      const pending = await jobs.listUnpublished(40, 10);
      const pendingIds = pending.map((job) => job.id).sort();
      expect(pendingIds).toEqual([ids.queued, ids.converting, ids.converted].sort());
      expect((await jobs.findOwned(ids.notified, "user-1"))?.publishedAt).toBe(20);
      expect((await jobs.findOwned(ids.failed, "user-1"))?.publishedAt).toBe(20);
      expect((await jobs.findOwned(ids.converted, "user-1"))?.state).toBe("converted");
    });

    test("keeps a job with a failed email published", async () => {
      const job = newJob();
      await jobs.insert(job);
      await jobs.markPublished(job.id, 20);
      await jobs.applyUpdate(job.id, { state: "converted", mp3Fid: job.id, at: 30 });
      await jobs.recordEmailFailed(job.id, 40);

      expect(await jobs.markUnfinishedUnpublished()).toBe(0);
      expect((await jobs.findOwned(job.id, "user-1"))?.publishedAt).toBe(20);
    });
  });

  describe("deletion", () => {
    const failure = { code: "no_audio", message: "The video has no audio track." };

    /** Inserts a job and moves it to `state` at time `at`. */
    async function jobIn(state: JobRecord["state"], at: number): Promise<string> {
      const job = newJob();
      await jobs.insert(job);
      if (state === "notified") {
        await jobs.applyUpdate(job.id, { state: "converted", mp3Fid: job.id, at });
      }
      if (state !== "queued") {
        await jobs.applyUpdate(job.id, { state, at, ...(state === "failed" && { failure }) });
      }
      return job.id;
    }

    test("finds a job of any owner by id", async () => {
      const job = newJob({ ownerId: "user-2" });
      await jobs.insert(job);
      expect((await jobs.findById(job.id))?.ownerId).toBe("user-2");
      expect(await jobs.findById(crypto.randomUUID())).toBeNull();
    });

    test("deletes only finished jobs", async () => {
      const states = ["queued", "converting", "converted", "notified", "failed"] as const;
      for (const state of states) {
        const id = await jobIn(state, 2);
        const finished = state !== "queued" && state !== "converting";
        expect(await jobs.deleteFinished(id)).toBe(finished);
        expect(await jobs.findById(id)).toEqual(finished ? null : expect.anything());
        expect(await jobs.deleteFinished(id)).toBe(false);
      }
    });

    test("lists finished jobs updated before a cutoff", async () => {
      const notifiedAt5 = await jobIn("notified", 5);
      const failedAt3 = await jobIn("failed", 3);
      await jobIn("notified", 10);
      await jobIn("failed", 11);
      const convertedAt4 = await jobIn("converted", 4);
      await jobIn("converted", 12);
      for (const state of ["queued", "converting"] as const) await jobIn(state, 1);

      const listed = await jobs.listFinishedBefore(10, 10);
      expect(listed.map((job) => job.id)).toEqual([failedAt3, convertedAt4, notifiedAt5]);
    });

    test("pages finished jobs by update time and id", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        ids.push(await jobIn(i % 2 ? "failed" : "notified", i < 3 ? 2 : 3));
      const expected = [...ids.slice(0, 3).sort(), ...ids.slice(3).sort()];
      const seen: string[] = [];
      let page = await jobs.listFinishedBefore(100, 2);
      while (page.length > 0) {
        seen.push(...page.map((job) => job.id));
        const last = page.at(-1) as JobRecord;
        page = await jobs.listFinishedBefore(100, 2, { updatedAt: last.updatedAt, id: last.id });
      }
      expect(seen).toEqual(expected);
    });

    test("expired job listing uses the state and update index", async () => {
      const sql = SELECT_FINISHED_BEFORE;
      if (dialect === "sqlite") {
        const plan = await db.query<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, [1]);
        expect(plan.map((row) => row.detail).join("\n")).toContain("INDEX jobs_state_updated");
      } else {
        const plan = await db.query<{ possible_keys: string }>(`EXPLAIN ${sql}`, [1]);
        expect(plan[0]?.possible_keys).toContain("jobs_state_updated");
      }
    });
  });

  describe("emails", () => {
    const failure = { code: "no_audio", message: "The video has no audio track." };

    test("records a failure email once", async () => {
      const job = newJob();
      await jobs.insert(job);
      await jobs.applyUpdate(job.id, { state: "failed", failure, at: 2 });
      expect(await jobs.recordEmailSent(job.id, "failed", 3)).toBe(true);
      expect(await jobs.recordEmailSent(job.id, "failed", 4)).toBe(false);
      const stored = await jobs.findOwned(job.id, "user-1");
      expect(stored?.state).toBe("failed");
      expect(stored?.failure).toEqual(failure);
      expect(stored?.notifiedAt).toBe(3);
    });

    test("records a failed email unless one was sent", async () => {
      const converted = newJob();
      await jobs.insert(converted);
      await jobs.applyUpdate(converted.id, { state: "converted", mp3Fid: converted.id, at: 2 });
      expect(await jobs.recordEmailFailed(converted.id, 5)).toBe(true);
      const stored = await jobs.findOwned(converted.id, "user-1");
      expect(stored?.emailFailedAt).toBe(5);
      expect(stored?.state).toBe("converted");

      const notified = newJob();
      await jobs.insert(notified);
      await jobs.applyUpdate(notified.id, { state: "converted", mp3Fid: notified.id, at: 2 });
      await jobs.applyUpdate(notified.id, { state: "notified", at: 3 });
      await jobs.recordEmailSent(notified.id, "notified", 3);
      expect(await jobs.recordEmailFailed(notified.id, 5)).toBe(false);
      expect((await jobs.findOwned(notified.id, "user-1"))?.emailFailedAt).toBeNull();

      expect(await jobs.recordEmailFailed("no-such-job", 5)).toBe(false);
    });

    test("records no email for another state", async () => {
      const job = newJob();
      await jobs.insert(job);
      await jobs.applyUpdate(job.id, { state: "converted", mp3Fid: job.id, at: 2 });
      expect(await jobs.recordEmailSent(job.id, "failed", 3)).toBe(false);
      expect(await jobs.recordEmailSent(job.id, "notified", 3)).toBe(false);
      expect((await jobs.findOwned(job.id, "user-1"))?.notifiedAt).toBeNull();
    });

    test("lists failed jobs without an email", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const job = newJob({ createdAt: 1_000 + i });
        await jobs.insert(job);
        await jobs.applyUpdate(job.id, { state: "failed", failure, at: 2 });
        ids.push(job.id);
      }
      const emailed = newJob({ createdAt: 900 });
      await jobs.insert(emailed);
      await jobs.applyUpdate(emailed.id, { state: "failed", failure, at: 2 });
      await jobs.recordEmailSent(emailed.id, "failed", 3);
      await jobs.insert(newJob({ createdAt: 800 }));
      const missing = newJob({ createdAt: 950 });
      await jobs.insert(missing);
      const videoMissing = { code: "video_missing", message: "The video is gone." };
      await jobs.applyUpdate(missing.id, { state: "failed", failure: videoMissing, at: 2 });
      const gaveUp = newJob({ createdAt: 960 });
      await jobs.insert(gaveUp);
      await jobs.applyUpdate(gaveUp.id, { state: "failed", failure, at: 2 });
      await jobs.recordEmailFailed(gaveUp.id, 3);

      const first = await jobs.listFailedWithoutEmail(2);
      expect(first.map((job) => job.id)).toEqual(ids.slice(0, 2));
      const last = first[1] as JobRecord;
      const rest = await jobs.listFailedWithoutEmail(2, { createdAt: last.createdAt, id: last.id });
      expect(rest.map((job) => job.id)).toEqual(ids.slice(2));
    });

    test("migration marks finished jobs emailed", async () => {
      // Rebuilds the rows as they were before the second migration, then runs its statements.
      await db.execute("ALTER TABLE jobs DROP COLUMN notified_at");
      const states = ["converted", "notified", "failed"] as const;
      const ids = {} as Record<(typeof states)[number], string>;
      for (const state of states) {
        const id = crypto.randomUUID();
        await db.execute(
          "INSERT INTO jobs (id, owner_id, owner_email, filename, video_fid, state, " +
            "request_id, created_at, updated_at) VALUES (?, 'user-1', 'a@example.com', " +
            "'talk.mp4', 'video-1', ?, 'req-1', 1, 7)",
          [id, state],
        );
        ids[state] = id;
      }
      const addNotifiedAt = GATEWAY_MIGRATIONS[1]?.statements[dialect] ?? [];
      expect(addNotifiedAt.length).toBeGreaterThan(0);
      for (const statement of addNotifiedAt) await db.execute(statement);

      expect((await jobs.findOwned(ids.converted, "user-1"))?.notifiedAt).toBeNull();
      expect((await jobs.findOwned(ids.notified, "user-1"))?.notifiedAt).toBe(7);
      expect((await jobs.findOwned(ids.failed, "user-1"))?.notifiedAt).toBe(7);
    });
  });
});
