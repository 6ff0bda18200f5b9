/**
 * `DELETE /jobs/:id`: the owner deletes a finished job with its video and MP3. Also checks that
 * the event consumers and the outbox ignore a job that was deleted meanwhile.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { encodeMessage, type JobEvent } from "@mp3converter/lib/messages";
import type { Delivery } from "@mp3converter/lib/ports/broker";
import { handleDeadLetteredVideo, handleJobEvent } from "./events-consumer.ts";
import { deleteFinishedJob } from "./job-deletion.ts";
import { type JobRecord, JobStore } from "./jobs-store.ts";
import { runOutboxOnce } from "./outbox.ts";
import {
  BASE,
  chunksOf,
  collectQueue,
  createHarness,
  type Harness,
  insertStoredJob,
  storeWithFailingDeletes,
} from "./test-helpers.ts";

let h: Harness;
let alice: string;
let bob: string;

beforeEach(async () => {
  h = await createHarness();
  alice = await h.tokenFor("user-alice", "alice@example.com");
  bob = await h.tokenFor("user-bob", "bob@example.com");
});

afterEach(async () => {
  await h.close();
});

const FAILURE = { code: "no_audio", message: "The video has no audio track." };

function jobIn(state: JobRecord["state"]): Promise<string> {
  return insertStoredJob(h, state);
}

function request(method: string, path: string, token?: string): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  return h.app.handle(new Request(`${BASE}${path}`, { method, headers }));
}

async function blobsOf(id: string): Promise<{ video: boolean; mp3: boolean }> {
  return {
    video: (await h.store.stat("videos", `video-${id}`)) !== null,
    mp3: (await h.store.stat("mp3s", id)) !== null,
  };
}

/** The body of an error response without its request id, which differs per request. */
async function errorBody(response: Response): Promise<Record<string, unknown>> {
  const { request_id: _, ...rest } = (await response.json()) as Record<string, unknown>;
  return rest;
}

/** A first delivery of `body`, for calling a handler without the broker. */
function delivery(body: Buffer, redelivered = false): Delivery {
  return {
    queue: "test",
    body,
    messageId: undefined,
    headers: {},
    redelivered,
    deliveryCount: redelivered ? 1 : 0,
  };
}

describe("DELETE /jobs/:id", () => {
  test("deletes a notified job with its blobs", async () => {
    const id = await jobIn("notified");
    expect(await blobsOf(id)).toEqual({ video: true, mp3: true });

    const response = await request("DELETE", `/jobs/${id}`, alice);
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    expect(response.headers.get("x-request-id")).toBeString();

    expect(await blobsOf(id)).toEqual({ video: false, mp3: false });
    expect(await h.jobs.findById(id)).toBeNull();
    expect((await request("GET", `/jobs/${id}`, alice)).status).toBe(404);
    expect((await request("GET", `/download?fid=${id}`, alice)).status).toBe(404);
  });

  test("deletes a converted job whose email is pending", async () => {
    const id = await jobIn("converted");
    expect(await blobsOf(id)).toEqual({ video: true, mp3: true });
    const response = await request("DELETE", `/jobs/${id}`, alice);
    expect(response.status).toBe(204);
    expect(await blobsOf(id)).toEqual({ video: false, mp3: false });
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("deletes a failed job with its video", async () => {
    const id = await jobIn("failed");
    const response = await request("DELETE", `/jobs/${id}`, alice);
    expect(response.status).toBe(204);
    expect(await blobsOf(id)).toEqual({ video: false, mp3: false });
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("deletes the MP3 of a job that failed after it", async () => {
    // The converter stored the MP3, but its `converted` event never arrived and the video
    // message was dead-lettered, so the job is failed without an mp3_fid.
    const id = await jobIn("failed");
    await h.store.put("mp3s", chunksOf(new Uint8Array([7])), {
      id,
      filename: "talk.mp3",
      contentType: "audio/mpeg",
    });
    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(204);
    expect(await blobsOf(id)).toEqual({ video: false, mp3: false });
  });

  test("answers 404 alike for another user's job and unknown ids", async () => {
    const id = await jobIn("notified");
    const notFound = await errorBody(await request("GET", `/jobs/${id}`, bob));
    const responses = [
      await request("DELETE", `/jobs/${id}`, bob),
      await request("DELETE", `/jobs/${crypto.randomUUID()}`, alice),
      await request("DELETE", "/jobs/not-a-uuid", alice),
    ];
    for (const response of responses) {
      expect(response.status).toBe(404);
      expect(await errorBody(response)).toEqual(notFound);
    }
    expect(notFound.code).toBe("not_found");
    expect(await blobsOf(id)).toEqual({ video: true, mp3: true });
    expect((await h.jobs.findById(id))?.state).toBe("notified");
  });

  test.each(["queued", "converting"] as const)("rejects a %s job with 409", async (state) => {
    const id = await jobIn(state);
    const before = await blobsOf(id);
    const response = await request("DELETE", `/jobs/${id}`, alice);
    expect(response.status).toBe(409);
    expect(response.headers.get("content-type")).toContain("application/json");
    const body = (await response.json()) as Record<string, unknown>;
    expect(body.code).toBe("job_in_progress");
    expect(body.message).toContain("converted or failed");
    expect(body.details).toEqual({ state });
    expect(body.request_id).toBeString();
    expect(await blobsOf(id)).toEqual(before);
    expect((await h.jobs.findById(id))?.state).toBe(state);
  });

  test("second DELETE of a job gets 404", async () => {
    const id = await jobIn("notified");
    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(204);
    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(404);
  });

  test("finishes a deletion whose blobs are gone", async () => {
    // A crash after the blobs were deleted leaves the row. The next DELETE deletes it.
    const id = await jobIn("notified");
    await h.store.delete("videos", `video-${id}`);
    await h.store.delete("mp3s", id);
    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(204);
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("keeps the row when a blob deletion fails", async () => {
    const id = await jobIn("notified");
    const failing = storeWithFailingDeletes(h.store, (bucket) => bucket === "mp3s");
    const job = (await h.jobs.findById(id)) as JobRecord;
    await expect(deleteFinishedJob(job, { jobs: h.jobs, store: failing })).rejects.toThrow(
      "storage is down",
    );
    // The row still names the MP3, so a repeated DELETE finds and deletes it.
    expect((await h.jobs.findById(id))?.mp3Fid).toBe(id);
    expect(await blobsOf(id)).toEqual({ video: false, mp3: true });

    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(204);
    expect(await blobsOf(id)).toEqual({ video: false, mp3: false });
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("two concurrent deletions delete the row once", async () => {
    const id = await jobIn("notified");
    const job = (await h.jobs.findById(id)) as JobRecord;
    const deps = { jobs: h.jobs, store: h.store };
    const results = await Promise.all([deleteFinishedJob(job, deps), deleteFinishedJob(job, deps)]);
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("rejects an active job directly", async () => {
    const id = await jobIn("converting");
    const before = await blobsOf(id);
    const job = (await h.jobs.findById(id)) as JobRecord;
    await expect(deleteFinishedJob(job, { jobs: h.jobs, store: h.store })).rejects.toThrow(
      "only converted, notified or failed jobs are deleted",
    );
    expect(await blobsOf(id)).toEqual(before);
  });

  test("requires a token", async () => {
    const id = await jobIn("notified");
    const response = await request("DELETE", `/jobs/${id}`);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain("Bearer");
    expect(await blobsOf(id)).toEqual({ video: true, mp3: true });
  });
});

describe("deleted job", () => {
  test("ignores job events", async () => {
    const id = await jobIn("notified");
    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(204);
    const events: Omit<JobEvent, "at" | "request_id">[] = [
      { job_id: id, state: "converting" },
      { job_id: id, state: "converted", mp3_fid: id },
      { job_id: id, state: "notified" },
      { job_id: id, state: "failed", failure: FAILURE, email_sent: true },
    ];
    for (const event of events) {
      const body = encodeMessage({ ...event, at: Date.now(), request_id: "req-event" });
      expect(await handleJobEvent(delivery(body), h)).toBe("ack");
    }
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("ignores a dead-lettered video message", async () => {
    const id = await jobIn("failed");
    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(204);
    const toNotify = await collectQueue(h.broker, h.mp3Queue);
    const message = {
      job_id: id,
      video_fid: `video-${id}`,
      mp3_fid: null,
      username: "alice@example.com",
      filename: "talk.mp4",
      request_id: "req-test",
    };
    for (const redelivered of [false, true]) {
      const outcome = await handleDeadLetteredVideo(
        delivery(encodeMessage(message), redelivered),
        h,
      );
      expect(outcome).toBe("ack");
    }
    expect(h.broker.publishedCount).toBe(0);
    await toNotify.stop();
    expect(toNotify.deliveries).toHaveLength(0);
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("is skipped by the outbox", async () => {
    const id = await jobIn("failed");
    // The job reads unpublished, as after a crash between the broker's confirm and the row
    // update, and is deleted after the outbox listed it.
    await h.db.execute("UPDATE jobs SET published_at = NULL WHERE id = ?", [id]);
    const jobs = new DeletingJobStore(h, id);
    const deps = { broker: h.broker, jobs, logger: h.logger, videoQueue: h.videoQueue };

    expect(await runOutboxOnce(deps)).toBe(0);
    expect(jobs.listed).toBe(1);
    expect(h.broker.publishedCount).toBe(0);
    expect(await h.jobs.findById(id)).toBeNull();
  });

  test("is not recreated by the outbox's row updates", async () => {
    const id = await jobIn("failed");
    expect((await request("DELETE", `/jobs/${id}`, alice)).status).toBe(204);
    await h.jobs.markPublished(id, Date.now());
    await h.jobs.releaseClaim(id);
    expect(await h.jobs.claimForPublish(id, Date.now(), Date.now() + 1000)).toBe(false);
    expect(await h.jobs.findById(id)).toBeNull();
  });
});

/** A job store that deletes one job right after listing it as unpublished. */
class DeletingJobStore extends JobStore {
  listed = 0;
  readonly #harness: Harness;
  readonly #id: string;

  constructor(harness: Harness, id: string) {
    super(harness.db);
    this.#harness = harness;
    this.#id = id;
  }

  override async listUnpublished(now: number, limit: number): Promise<JobRecord[]> {
    const rows = await super.listUnpublished(now, limit);
    this.listed = rows.filter((row) => row.id === this.#id).length;
    const job = rows.find((row) => row.id === this.#id);
    if (job) await deleteFinishedJob(job, this.#harness);
    return rows;
  }
}
