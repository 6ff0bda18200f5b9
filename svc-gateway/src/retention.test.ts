/**
 * The retention sweep: which jobs it deletes, paging, concurrent sweeps, failures, the loop's
 * timer, and the sweep that `startGateway` runs at start-up.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createLogger, type Logger } from "@mp3converter/lib/log";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import { readGatewayConfig } from "./config.ts";
import { type JobRecord, JobStore } from "./jobs-store.ts";
import {
  RETENTION_MAX_FAILURES,
  RETENTION_PAGE_SIZE,
  type RetentionDeps,
  startRetentionLoop,
  sweepExpiredJobs,
} from "./retention.ts";
import { startGateway } from "./service.ts";
import {
  createHarness,
  type Harness,
  insertStoredJob,
  storeWithFailingDeletes,
  waitFor,
} from "./test-helpers.ts";

const DAY_MS = 24 * 60 * 60 * 1000;
const NOW = 1_800_000_000_000;

let h: Harness;
/** Log lines of the sweep, parsed. */
let logs: Array<Record<string, unknown>>;
let logger: Logger;

beforeEach(async () => {
  h = await createHarness();
  logs = [];
  logger = createLogger({
    service: "gateway-test",
    level: "debug",
    destination: { write: (line: string) => logs.push(JSON.parse(line)) },
  });
});

afterEach(async () => {
  await h.close();
});

function jobIn(state: JobRecord["state"], at: number): Promise<string> {
  return insertStoredJob(h, state, at);
}

async function exists(id: string): Promise<{ row: boolean; video: boolean; mp3: boolean }> {
  return {
    row: (await h.jobs.findById(id)) !== null,
    video: (await h.store.stat("videos", `video-${id}`)) !== null,
    mp3: (await h.store.stat("mp3s", id)) !== null,
  };
}

function deps(overrides: Partial<RetentionDeps> = {}): RetentionDeps {
  return { jobs: h.jobs, store: h.store, logger, retentionDays: 7, ...overrides };
}

/** Wraps the harness store so that deleting the video of a job in `failing` throws. */
function storeFailingFor(failing: ReadonlySet<string>): BlobStore {
  return storeWithFailingDeletes(
    h.store,
    (bucket, id) => bucket === "videos" && failing.has(id.replace(/^video-/, "")),
  );
}

describe("sweepExpiredJobs", () => {
  test("deletes finished jobs past the retention", async () => {
    const old = NOW - 8 * DAY_MS;
    const expired = [
      await jobIn("notified", old),
      await jobIn("failed", old),
      await jobIn("converted", old),
    ];
    const kept = [
      await jobIn("notified", NOW - 6 * DAY_MS),
      await jobIn("failed", NOW - 7 * DAY_MS + 1),
      await jobIn("queued", old),
      await jobIn("converting", old),
    ];

    expect(await sweepExpiredJobs(deps(), NOW)).toEqual({ deleted: 3, failed: 0 });

    for (const id of expired) {
      expect(await exists(id)).toEqual({ row: false, video: false, mp3: false });
    }
    for (const id of kept) {
      const left = await exists(id);
      expect(left.row).toBe(true);
      expect(left.video).toBe(true);
    }
    const finished = logs.filter((line) => line.msg === "retention sweep finished");
    expect(finished).toHaveLength(1);
    expect(finished[0]?.deleted).toBe(3);
    expect(finished[0]?.failed).toBe(0);
    expect(finished[0]?.retention_days).toBe(7);
  });

  test("keeps every job when retention is 0", async () => {
    const id = await jobIn("notified", 0);
    expect(await sweepExpiredJobs(deps({ retentionDays: 0 }), NOW)).toEqual({
      deleted: 0,
      failed: 0,
    });
    expect(await exists(id)).toEqual({ row: true, video: true, mp3: true });
  });

  test("pages through more jobs than a page", async () => {
    const count = RETENTION_PAGE_SIZE * 2 + 5;
    for (let i = 0; i < count; i++) {
      await jobIn(i % 2 ? "failed" : "notified", NOW - 30 * DAY_MS + (i % 3));
    }
    expect(await sweepExpiredJobs(deps(), NOW)).toEqual({ deleted: count, failed: 0 });
    const rows = await h.db.query<{ n: number }>("SELECT COUNT(*) AS n FROM jobs");
    expect(Number(rows[0]?.n)).toBe(0);
  });

  test("two concurrent sweeps delete each job once", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push(await jobIn("notified", NOW - 10 * DAY_MS + i));
    const [first, second] = await Promise.all([
      sweepExpiredJobs(deps(), NOW),
      sweepExpiredJobs(deps(), NOW),
    ]);
    expect((first?.deleted ?? 0) + (second?.deleted ?? 0)).toBe(30);
    expect(first?.failed).toBe(0);
    expect(second?.failed).toBe(0);
    for (const id of ids)
      expect(await exists(id)).toEqual({ row: false, video: false, mp3: false });
  });

  test("logs a failed deletion and goes on", async () => {
    const old = NOW - 10 * DAY_MS;
    const broken = await jobIn("notified", old);
    const fine = await jobIn("notified", old + 1);
    const store = storeFailingFor(new Set([broken]));

    expect(await sweepExpiredJobs(deps({ store }), NOW)).toEqual({ deleted: 1, failed: 1 });

    expect((await exists(broken)).row).toBe(true);
    expect(await exists(fine)).toEqual({ row: false, video: false, mp3: false });
    const errors = logs.filter((line) => line.level === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0]?.job_id).toBe(broken);
    expect(errors[0]?.msg).toBe("expired job not deleted; the next sweep retries it");

    // The next sweep, with storage back, deletes it.
    expect(await sweepExpiredJobs(deps(), NOW)).toEqual({ deleted: 1, failed: 0 });
    expect(await exists(broken)).toEqual({ row: false, video: false, mp3: false });
  });

  test("stops after repeated failures", async () => {
    const failing = new Set<string>();
    for (let i = 0; i < RETENTION_MAX_FAILURES + 5; i++) {
      failing.add(await jobIn("failed", NOW - 10 * DAY_MS + i));
    }
    const store = storeFailingFor(failing);
    expect(await sweepExpiredJobs(deps({ store }), NOW)).toEqual({
      deleted: 0,
      failed: RETENTION_MAX_FAILURES,
    });
    const errors = logs.filter((line) => line.level === "error");
    expect(errors).toHaveLength(RETENTION_MAX_FAILURES);
    const stopped = logs.filter(
      (line) => line.msg === "retention sweep stopped after repeated failures",
    );
    expect(stopped).toHaveLength(1);
  });
});

describe("startRetentionLoop", () => {
  test("sweeps at start and on each interval until stopped", async () => {
    const first = await jobIn("notified", Date.now() - 10 * DAY_MS);
    const loop = startRetentionLoop(deps(), 50);
    try {
      expect(await waitFor(async () => !(await exists(first)).row)).toBe(true);
      const second = await jobIn("failed", Date.now() - 10 * DAY_MS);
      expect(await waitFor(async () => !(await exists(second)).row)).toBe(true);
    } finally {
      await loop.stop();
    }
    const third = await jobIn("failed", Date.now() - 10 * DAY_MS);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await exists(third)).row).toBe(true);
  });

  test("starts no sweep when retention is 0", async () => {
    const id = await jobIn("notified", 0);
    const loop = startRetentionLoop(deps({ retentionDays: 0 }), 20);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await loop.stop();
    expect((await exists(id)).row).toBe(true);
    expect(logs.filter((line) => line.msg === "retention sweep finished")).toHaveLength(0);
  });

  test("logs a failed sweep and keeps running", async () => {
    const flaky = new FlakyJobStore(h);
    const id = await jobIn("notified", Date.now() - 10 * DAY_MS);
    const loop = startRetentionLoop(deps({ jobs: flaky }), 50);
    try {
      expect(await waitFor(async () => !(await exists(id)).row)).toBe(true);
    } finally {
      await loop.stop();
    }
    expect(flaky.calls).toBeGreaterThan(1);
    const failed = logs.filter((line) => line.msg === "retention sweep failed");
    expect(failed).toHaveLength(1);
  });

  test("timer does not keep the process alive", async () => {
    // A child process starts a loop with an hourly timer. It exits only if the timer is unref'd.
    const script = `
      import { startRetentionLoop } from ${JSON.stringify(join(import.meta.dir, "retention.ts"))};
      const jobs = { listFinishedBefore: async () => [] };
      const logger = { info() {}, warn() {}, error() {} };
      startRetentionLoop({ jobs, store: {}, logger, retentionDays: 1 });
    `;
    const child = Bun.spawn([process.execPath, "-e", script], { stdout: "ignore", stderr: "pipe" });
    const timeout = setTimeout(() => child.kill(), 4_000);
    const code = await child.exited;
    clearTimeout(timeout);
    expect(child.signalCode).toBeNull();
    expect(code).toBe(0);
  });
});

/** A job store whose first listing of expired jobs fails, as when the database is down. */
class FlakyJobStore extends JobStore {
  calls = 0;

  constructor(harness: Harness) {
    super(harness.db);
  }

  override async listFinishedBefore(
    ...args: Parameters<JobStore["listFinishedBefore"]>
  ): Promise<JobRecord[]> {
    this.calls++;
    if (this.calls === 1) throw new Error("database is down");
    return super.listFinishedBefore(...args);
  }
}

describe("gateway retention", () => {
  async function startWith(retentionDays: string) {
    const config = readGatewayConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      DATABASE_URL: "sqlite::memory:",
      STORAGE_URL: `file:${join(h.storeDir, "unused")}`,
      BROKER_URL: "memory:",
      AUTH_URL: "http://127.0.0.1:9",
      JOB_RETENTION_DAYS: retentionDays,
    });
    return startGateway(config, {
      db: h.db,
      store: h.store,
      broker: h.broker,
      logger,
      verifier: h.verifier,
    });
  }

  test("sweeps at start-up", async () => {
    const expired = await jobIn("notified", Date.now() - 31 * DAY_MS);
    const recent = await jobIn("notified", Date.now() - 29 * DAY_MS);
    const gateway = await startWith("30");
    try {
      expect(await waitFor(async () => !(await exists(expired)).row)).toBe(true);
      expect(await exists(expired)).toEqual({ row: false, video: false, mp3: false });
      expect(await exists(recent)).toEqual({ row: true, video: true, mp3: true });
      expect(await gateway.runRetentionSweep()).toEqual({ deleted: 0, failed: 0 });
    } finally {
      await gateway.stop();
    }
  });

  test("keeps jobs by default", async () => {
    const old = await jobIn("notified", 0);
    const gateway = await startWith("0");
    try {
      expect(await gateway.runRetentionSweep()).toEqual({ deleted: 0, failed: 0 });
      expect(await exists(old)).toEqual({ row: true, video: true, mp3: true });
    } finally {
      await gateway.stop();
    }
  });
});
