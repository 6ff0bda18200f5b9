/**
 * Recovery of failure emails at start-up. A failed job whose email was not recorded is sent to
 * notify's queue again from its stored failure. The `failed` event that notify publishes after
 * the email records it, so the next start sends nothing.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  decodeMessage,
  encodeMessage,
  type JobEvent,
  Mp3MessageSchema,
} from "@mp3converter/lib/messages";
import type { Broker, Delivery } from "@mp3converter/lib/ports/broker";
import { handleJobEvent } from "./events-consumer.ts";
import { republishUnsentFailureEmails } from "./failure-recovery.ts";
import { collectQueue, createHarness, type Harness, waitFor } from "./test-helpers.ts";

const FAILURE = { code: "no_audio", message: "The video has no audio track." };

let harness: Harness;

beforeEach(async () => {
  harness = await createHarness();
});

afterEach(async () => {
  await harness.close();
});

/** Inserts a published job named `filename`, moves it to failed and returns its id. */
async function failedJob(filename: string, createdAt: number): Promise<string> {
  const id = crypto.randomUUID();
  await harness.jobs.insert({
    id,
    ownerId: "user-1",
    ownerEmail: "alice@example.com",
    filename,
    videoFid: `video-${id}`,
    requestId: `req-${filename}`,
    createdAt,
    publishLeaseUntil: 0,
  });
  await harness.jobs.markPublished(id, createdAt);
  await harness.jobs.applyUpdate(id, { state: "failed", failure: FAILURE, at: createdAt });
  return id;
}

/** Wraps a `failed` event as notify publishes it after the failure email. */
function emailSentDelivery(jobId: string): Delivery {
  const event: JobEvent = {
    job_id: jobId,
    state: "failed",
    failure: FAILURE,
    email_sent: true,
    at: Date.now(),
    request_id: "req-notify",
  };
  return {
    queue: harness.jobEventsQueue,
    body: encodeMessage(event),
    messageId: `${jobId}.failure-email`,
    headers: {},
    redelivered: false,
    deliveryCount: 0,
  };
}

function recoveryDeps() {
  return { ...harness, mp3Queue: harness.mp3Queue };
}

describe("republishUnsentFailureEmails", () => {
  test("sends stored failures to notify", async () => {
    const unsent = await failedJob("no-sound.mp4", 1_000);
    const emailed = await failedJob("emailed.mp4", 2_000);
    await handleJobEvent(emailSentDelivery(emailed), harness);
    const mp3s = await collectQueue(harness.broker, harness.mp3Queue);

    expect(await republishUnsentFailureEmails(recoveryDeps())).toBe(1);

    expect(await waitFor(() => mp3s.deliveries.length === 1)).toBe(true);
    const delivery = mp3s.deliveries[0] as Delivery;
    expect(delivery.messageId).toBe(unsent);
    const message = decodeMessage(Mp3MessageSchema, delivery.body);
    expect(message.job_id).toBe(unsent);
    expect(message.mp3_fid).toBeNull();
    expect(message.failure).toEqual(FAILURE);
    expect(message.username).toBe("alice@example.com");
    expect(message.filename).toBe("no-sound.mp4");
    expect(message.video_fid).toBe(`video-${unsent}`);
    expect(message.request_id).toBe("req-no-sound.mp4");
    await mp3s.stop();
  });

  test("sends nothing once the email is recorded", async () => {
    const id = await failedJob("no-sound.mp4", 1_000);
    expect(await republishUnsentFailureEmails(recoveryDeps())).toBe(1);

    expect(await handleJobEvent(emailSentDelivery(id), harness)).toBe("ack");
    expect(await handleJobEvent(emailSentDelivery(id), harness)).toBe("ack");

    const stored = await harness.jobs.findOwned(id, "user-1");
    expect(stored?.state).toBe("failed");
    expect(stored?.failure).toEqual(FAILURE);
    expect(stored?.notifiedAt).toBeNumber();
    expect(await republishUnsentFailureEmails(recoveryDeps())).toBe(0);
  });

  test("pages through many failed jobs", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 105; i++) ids.push(await failedJob(`file-${i}.mp4`, 1_000 + i));
    const mp3s = await collectQueue(harness.broker, harness.mp3Queue);

    expect(await republishUnsentFailureEmails(recoveryDeps())).toBe(105);

    expect(await waitFor(() => mp3s.deliveries.length === 105)).toBe(true);
    const published = mp3s.deliveries.map((delivery) => delivery.messageId);
    expect(published.sort()).toEqual([...ids].sort());
    await mp3s.stop();
  });

  test("stops at a failed publish", async () => {
    await failedJob("no-sound.mp4", 1_000);
    harness.broker.publishDown = true;

    expect(await republishUnsentFailureEmails(recoveryDeps())).toBe(0);
  });

  test("leaves jobs alone on a durable broker", async () => {
    await failedJob("no-sound.mp4", 1_000);
    const durable = { durable: true } as Broker;

    expect(await republishUnsentFailureEmails({ ...recoveryDeps(), broker: durable })).toBe(0);
  });
});

describe("failure email event", () => {
  test("moves a converting job to failed", async () => {
    const id = crypto.randomUUID();
    await harness.jobs.insert({
      id,
      ownerId: "user-1",
      ownerEmail: "alice@example.com",
      filename: "no-sound.mp4",
      videoFid: `video-${id}`,
      requestId: "req-1",
      createdAt: 1_000,
      publishLeaseUntil: 0,
    });
    await harness.jobs.applyUpdate(id, { state: "converting", at: 1_001 });

    expect(await handleJobEvent(emailSentDelivery(id), harness)).toBe("ack");

    const stored = await harness.jobs.findOwned(id, "user-1");
    expect(stored?.state).toBe("failed");
    expect(stored?.failure).toEqual(FAILURE);
    expect(stored?.notifiedAt).toBeNumber();
  });

  test("changes nothing on a converted job", async () => {
    const id = await failedJob("no-sound.mp4", 1_000);
    await harness.db.execute("UPDATE jobs SET state = 'converted', failure_code = NULL");

    expect(await handleJobEvent(emailSentDelivery(id), harness)).toBe("ack");

    const stored = await harness.jobs.findOwned(id, "user-1");
    expect(stored?.state).toBe("converted");
    expect(stored?.notifiedAt).toBeNull();
  });
});
