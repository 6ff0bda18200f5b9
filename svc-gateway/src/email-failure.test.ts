/** Jobs whose email notify gave up on: the mp3 dead-letter queue and the job view. */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { encodeMessage, type Mp3Message } from "@mp3converter/lib/messages";
import { type Delivery, deadLetterQueueName } from "@mp3converter/lib/ports/broker";
import { handleDeadLetteredEmail, startEventConsumers } from "./events-consumer.ts";
import { BASE, createHarness, type Harness, insertStoredJob } from "./test-helpers.ts";

let h: Harness;
let alice: string;

beforeEach(async () => {
  h = await createHarness();
  alice = await h.tokenFor("user-alice", "alice@example.com");
});

afterEach(async () => {
  await h.close();
});

function readyMessage(jobId: string): Mp3Message {
  return {
    job_id: jobId,
    video_fid: `video-${jobId}`,
    mp3_fid: jobId,
    username: "alice@example.com",
    filename: "talk.mp4",
    request_id: "req-test",
  };
}

function delivery(body: Buffer): Delivery {
  return {
    queue: deadLetterQueueName(h.mp3Queue),
    body,
    messageId: undefined,
    headers: {},
    redelivered: false,
    deliveryCount: 0,
  };
}

async function jobView(id: string): Promise<Record<string, unknown>> {
  const response = await h.app.handle(
    new Request(`${BASE}/jobs/${id}`, { headers: { authorization: `Bearer ${alice}` } }),
  );
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

test("dead-lettered email marks the job", async () => {
  const id = await insertStoredJob(h, "converted");
  const outcome = await handleDeadLetteredEmail(delivery(encodeMessage(readyMessage(id))), h);

  expect(outcome).toBe("ack");
  const view = await jobView(id);
  expect(view.email_failed).toBe(true);
  expect(view.state).toBe("converted");
  expect(view.mp3_fid).toBe(id);
});

test("job without a failed email has no mark", async () => {
  const id = await insertStoredJob(h, "converted");
  expect((await jobView(id)).email_failed).toBeUndefined();
});

test("emailed job is not marked", async () => {
  const id = await insertStoredJob(h, "notified");
  await h.jobs.recordEmailSent(id, "notified", Date.now());
  await handleDeadLetteredEmail(delivery(encodeMessage(readyMessage(id))), h);

  expect((await jobView(id)).email_failed).toBeUndefined();
});

test("message without a job is dropped", async () => {
  const outcomes = [
    await handleDeadLetteredEmail(delivery(Buffer.from("not json")), h),
    await handleDeadLetteredEmail(delivery(encodeMessage(readyMessage("no-such-job"))), h),
  ];
  expect(outcomes).toEqual(["ack", "ack"]);
});

test("consumer reads the mp3 dead-letter queue", async () => {
  const id = await insertStoredJob(h, "converted");
  const subscriptions = await startEventConsumers({ ...h, broker: h.broker });
  try {
    await h.broker.publish(deadLetterQueueName(h.mp3Queue), encodeMessage(readyMessage(id)), {
      messageId: id,
    });
    const deadline = Date.now() + 5_000;
    while ((await h.jobs.findById(id))?.emailFailedAt === null && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect((await h.jobs.findById(id))?.emailFailedAt).toBeNumber();
  } finally {
    for (const subscription of subscriptions) await subscription.cancel();
  }
});
