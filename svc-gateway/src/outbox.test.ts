/**
 * Tests the outbox's recovery at start-up. After a restart of a broker that keeps no messages,
 * every unfinished job is published again, and finished jobs are left alone.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { JobState } from "@mp3converter/lib/messages";
import { decodeMessage, VideoMessageSchema } from "@mp3converter/lib/messages";
import type { Broker } from "@mp3converter/lib/ports/broker";
import { requeueUnfinishedJobs, runOutboxOnce } from "./outbox.ts";
import { collectQueue, createHarness, type Harness, waitFor } from "./test-helpers.ts";

let harness: Harness;

beforeEach(async () => {
  harness = await createHarness();
});

afterEach(async () => {
  await harness.close();
});

/** Inserts a published job, moves it to `state` and returns its id. */
async function publishedJobIn(state: JobState): Promise<string> {
  const id = crypto.randomUUID();
  await harness.jobs.insert({
    id,
    ownerId: "user-1",
    ownerEmail: "alice@example.com",
    filename: `${state}.mp4`,
    videoFid: `video-${id}`,
    requestId: `req-${state}`,
    createdAt: Date.now(),
    publishLeaseUntil: 0,
  });
  await harness.jobs.markPublished(id, Date.now());
  if (state === "failed") {
    const failure = { code: "no_audio", message: "The video has no audio track." };
    await harness.jobs.applyUpdate(id, { state, failure, at: Date.now() });
  } else if (state !== "queued") {
    await harness.jobs.applyUpdate(id, { state, at: Date.now() });
  }
  return id;
}

describe("requeueUnfinishedJobs", () => {
  test("republishes unfinished jobs on a memory broker", async () => {
    const ids = {} as Record<JobState, string>;
    for (const state of ["queued", "converting", "converted", "notified", "failed"] as const) {
      ids[state] = await publishedJobIn(state);
    }
    const videos = await collectQueue(harness.broker, harness.videoQueue);
    const deps = { ...harness, videoQueue: harness.videoQueue };

    expect(await requeueUnfinishedJobs(deps)).toBe(3);
    expect(await runOutboxOnce(deps)).toBe(3);

    expect(await waitFor(() => videos.deliveries.length === 3)).toBe(true);
    const published = videos.deliveries.map(
      (delivery) => decodeMessage(VideoMessageSchema, delivery.body).job_id,
    );
    expect(published.sort()).toEqual([ids.queued, ids.converting, ids.converted].sort());
    const converted = await harness.jobs.findOwned(ids.converted, "user-1");
    expect(converted?.state).toBe("converted");
    expect(converted?.publishedAt).toBeNumber();
    await videos.stop();
  });

  test("leaves jobs alone on a durable broker", async () => {
    const id = await publishedJobIn("converting");
    const durable = { durable: true } as Broker;

    expect(await requeueUnfinishedJobs({ ...harness, broker: durable })).toBe(0);
    expect(await harness.jobs.listUnpublished(Date.now(), 10)).toHaveLength(0);
    expect((await harness.jobs.findOwned(id, "user-1"))?.publishedAt).toBeNumber();
  });
});
