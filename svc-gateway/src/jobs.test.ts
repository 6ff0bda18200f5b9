import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  decodeMessage,
  encodeMessage,
  type JobEvent,
  Mp3MessageSchema,
} from "@mp3converter/lib/messages";
import {
  type Delivery,
  deadLetterQueueName,
  type Subscription,
} from "@mp3converter/lib/ports/broker";
import {
  DEAD_LETTER_FAILURE,
  handleDeadLetteredVideo,
  handleJobEvent,
  startEventConsumers,
} from "./events-consumer.ts";
import type { JobView } from "./job-views.ts";
import type { NewJob } from "./jobs-store.ts";
import {
  BASE,
  collectQueue,
  createHarness,
  type Harness,
  PUBLIC_URL,
  waitFor,
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

let clock = 1_700_000_000_000;

async function insertJob(overrides: Partial<NewJob> = {}): Promise<string> {
  const id = crypto.randomUUID();
  clock += 1000;
  await h.jobs.insert({
    id,
    ownerId: "user-alice",
    ownerEmail: "alice@example.com",
    filename: "talk.mp4",
    videoFid: `video-${id}`,
    requestId: "req-test",
    createdAt: clock,
    publishLeaseUntil: 0,
    ...overrides,
  });
  return id;
}

async function* chunksOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** Stores an MP3 blob under the job id, as the converter does, and marks the job converted. */
async function convertJob(jobId: string, bytes: Uint8Array): Promise<void> {
  await h.store.put("mp3s", chunksOf(bytes), {
    id: jobId,
    filename: "out.mp3",
    contentType: "audio/mpeg",
  });
  await h.jobs.applyUpdate(jobId, {
    state: "converted",
    mp3Fid: jobId,
    durationS: 12.5,
    at: clock,
  });
}

/** A first delivery of `body`, for calling a handler without the broker. */
function delivery(body: Buffer): Delivery {
  return {
    queue: "test",
    body,
    messageId: undefined,
    headers: {},
    redelivered: false,
    deliveryCount: 0,
  };
}

/** A redelivery of `body`, as the broker makes it after a requeue. */
function redelivery(body: Buffer): Delivery {
  return { ...delivery(body), redelivered: true, deliveryCount: 1 };
}

function eventDelivery(event: Omit<JobEvent, "at" | "request_id">): Delivery {
  return delivery(encodeMessage({ ...event, at: Date.now(), request_id: "req-event" }));
}

function get(path: string, token?: string, headers: Record<string, string> = {}) {
  const all: Record<string, string> = { ...headers };
  if (token) all.authorization = `Bearer ${token}`;
  return h.app.handle(new Request(`${BASE}${path}`, { headers: all }));
}

describe("GET /jobs/:id", () => {
  test("returns the owner's job", async () => {
    const id = await insertJob();
    const response = await get(`/jobs/${id}`, alice);
    expect(response.status).toBe(200);
    const view = (await response.json()) as JobView;
    expect(view.job_id).toBe(id);
    expect(view.state).toBe("queued");
    expect(view.filename).toBe("talk.mp4");
    expect(view.created_at).toBe(new Date(clock).toISOString());
    expect(view.updated_at).toBe(new Date(clock).toISOString());
    expect(view.mp3_fid).toBeUndefined();
    expect(view.download_url).toBeUndefined();
    expect(view.failure).toBeUndefined();
  });

  test("shows the download link once converted", async () => {
    const id = await insertJob();
    await convertJob(id, new Uint8Array([1, 2, 3]));
    const view = (await (await get(`/jobs/${id}`, alice)).json()) as JobView;
    expect(view.state).toBe("converted");
    expect(view.mp3_fid).toBe(id);
    expect(view.download_url).toBe(`${PUBLIC_URL}/download?fid=${id}`);
    expect(view.duration_s).toBe(12.5);
  });

  test("answers 404 alike for another user's job and a malformed id", async () => {
    const id = await insertJob();
    const foreign = await get(`/jobs/${id}`, bob);
    const malformed = await get("/jobs/not-a-uuid", alice);
    const unknown = await get(`/jobs/${crypto.randomUUID()}`, alice);
    for (const response of [foreign, malformed, unknown]) {
      expect(response.status).toBe(404);
    }
    const bodies = await Promise.all(
      [foreign, malformed, unknown].map(async (r) => {
        const { request_id: _, ...rest } = (await r.json()) as Record<string, unknown>;
        return rest;
      }),
    );
    expect(bodies[0]).toEqual(bodies[1] as Record<string, unknown>);
    expect(bodies[0]).toEqual(bodies[2] as Record<string, unknown>);
    expect(bodies[0]?.code).toBe("not_found");
  });

  test("requires a token", async () => {
    const id = await insertJob();
    const response = await get(`/jobs/${id}`);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain("Bearer");
  });
});

describe("GET /jobs", () => {
  test("pages through the caller's jobs newest first", async () => {
    const mine: string[] = [];
    for (let i = 0; i < 5; i++) mine.push(await insertJob());
    await insertJob({ ownerId: "user-bob" });
    const seen: string[] = [];
    let path = "/jobs?limit=2";
    for (let page = 0; page < 5; page++) {
      const response = await get(path, alice);
      expect(response.status).toBe(200);
      const body = (await response.json()) as { jobs: JobView[]; next_cursor: string | null };
      expect(body.jobs.length).toBeLessThanOrEqual(2);
      seen.push(...body.jobs.map((job) => job.job_id));
      if (body.next_cursor === null) break;
      path = `/jobs?limit=2&cursor=${body.next_cursor}`;
    }
    expect(seen).toEqual([...mine].reverse());
  });

  test.each([["0"], ["101"], ["abc"], ["-1"], ["1.5"]])(
    "rejects limit=%s with 400",
    async (limit) => {
      const response = await get(`/jobs?limit=${limit}`, alice);
      expect(response.status).toBe(400);
      const body = (await response.json()) as { code: string; message: string };
      expect(body.code).toBe("invalid_argument");
      expect(body.message).toContain("1 to 100");
    },
  );

  test.each([["garbage!"], ["bm90LWEtY3Vyc29y"], ["x".repeat(200)]])(
    "rejects cursor %s with 400",
    async (cursor) => {
      const response = await get(`/jobs?cursor=${cursor}`, alice);
      expect(response.status).toBe(400);
    },
  );
});

describe("GET /download", () => {
  const mp3 = new Uint8Array(Array.from({ length: 100 }, (_, i) => i));

  test("streams the owner's MP3", async () => {
    const id = await insertJob();
    await convertJob(id, mp3);
    const response = await get(`/download?fid=${id}`, alice);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("audio/mpeg");
    expect(response.headers.get("accept-ranges")).toBe("bytes");
    expect(response.headers.get("content-length")).toBe("100");
    expect(response.headers.get("content-disposition")).toBe(
      "attachment; filename=\"talk.mp3\"; filename*=UTF-8''talk.mp3",
    );
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(mp3);
  });

  test("serves a range with 206", async () => {
    const id = await insertJob();
    await convertJob(id, mp3);
    const response = await get(`/download?fid=${id}`, alice, { range: "bytes=10-19" });
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe("bytes 10-19/100");
    expect(response.headers.get("content-length")).toBe("10");
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(mp3.slice(10, 20));
  });

  test("serves a suffix range with 206", async () => {
    const id = await insertJob();
    await convertJob(id, mp3);
    const response = await get(`/download?fid=${id}`, alice, { range: "bytes=-5" });
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe("bytes 95-99/100");
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(mp3.slice(95));
  });

  test("rejects an unsatisfiable range with 416", async () => {
    const id = await insertJob();
    await convertJob(id, mp3);
    const response = await get(`/download?fid=${id}`, alice, { range: "bytes=100-" });
    expect(response.status).toBe(416);
    expect(response.headers.get("content-range")).toBe("bytes */100");
    expect(((await response.json()) as { code: string }).code).toBe("range_not_satisfiable");
  });

  test("answers 404 for another user's MP3 and unknown ids", async () => {
    const id = await insertJob();
    await convertJob(id, mp3);
    for (const [fid, token] of [
      [id, bob],
      [crypto.randomUUID(), alice],
      ["../etc/passwd", alice],
    ] as const) {
      const response = await get(`/download?fid=${encodeURIComponent(fid)}`, token);
      expect(response.status).toBe(404);
      expect(((await response.json()) as { code: string }).code).toBe("not_found");
    }
  });

  test("answers 404 before the job is converted", async () => {
    const id = await insertJob();
    await h.store.put("mp3s", chunksOf(mp3), { id, filename: "x.mp3", contentType: "audio/mpeg" });
    const response = await get(`/download?fid=${id}`, alice);
    expect(response.status).toBe(404);
  });

  test("rejects a missing fid with 400", async () => {
    const response = await get("/download", alice);
    expect(response.status).toBe(400);
  });

  test("requires a token", async () => {
    const response = await get("/download?fid=abc");
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain("Bearer");
  });

  test.each([
    ['say "hi".mp4', 'filename="say _hi_.mp3"', "filename*=UTF-8''say%20%22hi%22.mp3"],
    ["two\r\nlines.mp4", 'filename="two__lines.mp3"', "filename*=UTF-8''two%0D%0Alines.mp3"],
    [
      "Grüße 🎵.mkv",
      'filename="Gr__e _.mp3"',
      "filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%F0%9F%8E%B5.mp3",
    ],
    ["back\\slash.webm", 'filename="back_slash.mp3"', "filename*=UTF-8''back%5Cslash.mp3"],
  ])("names the download of %j safely", async (filename, ascii, extended) => {
    const id = await insertJob({ filename });
    await convertJob(id, mp3);
    const response = await get(`/download?fid=${id}`, alice);
    const disposition = response.headers.get("content-disposition") ?? "";
    expect(disposition).toStartWith("attachment; ");
    expect(disposition).toContain(ascii);
    expect(disposition).toContain(extended);
    await response.body?.cancel();
  });
});

describe("job events", () => {
  let subscriptions: Subscription[];

  beforeEach(async () => {
    subscriptions = await startEventConsumers({
      broker: h.broker,
      jobs: h.jobs,
      logger: h.logger,
      videoQueue: h.videoQueue,
      mp3Queue: h.mp3Queue,
      jobEventsQueue: h.jobEventsQueue,
    });
  });

  afterEach(async () => {
    for (const subscription of subscriptions) await subscription.cancel();
  });

  function publishEvent(event: Omit<JobEvent, "at" | "request_id">): Promise<void> {
    const full: JobEvent = { ...event, at: Date.now(), request_id: "req-event" };
    return h.broker.publish(h.jobEventsQueue, encodeMessage(full), { messageId: event.job_id });
  }

  /** Returns the VideoMessage the gateway published for job `id`. */
  function videoMessageFor(id: string) {
    return {
      job_id: id,
      video_fid: `video-${id}`,
      mp3_fid: null,
      username: "alice@example.com",
      filename: "talk.mp4",
      request_id: "req-test",
    };
  }

  async function stateOf(id: string): Promise<string | undefined> {
    return (await h.jobs.findOwned(id, "user-alice"))?.state;
  }

  test("move a job forward only", async () => {
    const id = await insertJob();
    await publishEvent({ job_id: id, state: "converting" });
    expect(await waitFor(async () => (await stateOf(id)) === "converting")).toBe(true);
    await publishEvent({
      job_id: id,
      state: "converted",
      mp3_fid: id,
      duration_s: 3,
      warnings: ["the input ended early"],
    });
    expect(await waitFor(async () => (await stateOf(id)) === "converted")).toBe(true);

    await publishEvent({ job_id: id, state: "notified" });
    expect(await waitFor(async () => (await stateOf(id)) === "notified")).toBe(true);
    const view = (await (await get(`/jobs/${id}`, alice)).json()) as JobView;
    expect(view.state).toBe("notified");
    expect(view.mp3_fid).toBe(id);
    expect(view.duration_s).toBe(3);
    expect(view.warnings).toEqual(["the input ended early"]);
  });

  test("ignore a stale or duplicate event", async () => {
    const id = await insertJob();
    await h.jobs.applyUpdate(id, { state: "converted", mp3Fid: id, at: clock });
    for (const state of ["converting", "converted"] as const) {
      expect(await handleJobEvent(eventDelivery({ job_id: id, state }), h)).toBe("ack");
      expect(await stateOf(id)).toBe("converted");
    }
  });

  test("record a failure and keep it terminal", async () => {
    const id = await insertJob();
    const failure = { code: "no_audio", message: "The video has no audio track." };
    await handleJobEvent(eventDelivery({ job_id: id, state: "failed", failure }), h);
    for (const state of ["converting", "converted", "notified"] as const) {
      expect(await handleJobEvent(eventDelivery({ job_id: id, state, mp3_fid: id }), h)).toBe(
        "ack",
      );
    }
    const view = (await (await get(`/jobs/${id}`, alice)).json()) as JobView;
    expect(view.state).toBe("failed");
    expect(view.failure).toEqual(failure);
    expect(view.mp3_fid).toBeUndefined();
  });

  test("reject a malformed event", async () => {
    const outcome = await handleJobEvent(delivery(Buffer.from('{"job_id":"x"}')), h);
    expect(outcome).toBe("reject");
  });

  test("dead-letter a malformed event", async () => {
    const dlq = await collectQueue(h.broker, deadLetterQueueName(h.jobEventsQueue));
    await h.broker.publish(h.jobEventsQueue, Buffer.from('{"job_id":"x","state":"bogus"}'));
    await h.broker.publish(h.jobEventsQueue, Buffer.from("not json"));
    expect(await waitFor(() => dlq.deliveries.length === 2)).toBe(true);
    await dlq.stop();
  });

  test("mark a dead-lettered video failed", async () => {
    const id = await insertJob();
    const message = videoMessageFor(id);
    const toNotify = await collectQueue(h.broker, h.mp3Queue);
    await h.broker.publish(deadLetterQueueName(h.videoQueue), encodeMessage(message));
    expect(await waitFor(async () => (await stateOf(id)) === "failed")).toBe(true);
    const view = (await (await get(`/jobs/${id}`, alice)).json()) as JobView;
    expect(view.failure).toEqual(DEAD_LETTER_FAILURE);
    expect(view.failure?.message).toContain("Upload the file again");

    // Notify gets the failure, so the user is emailed as for any other failed job.
    expect(await waitFor(() => toNotify.deliveries.length === 1)).toBe(true);
    await toNotify.stop();
    const sent = decodeMessage(Mp3MessageSchema, toNotify.deliveries[0]?.body ?? Buffer.alloc(0));
    expect(sent).toEqual({ ...message, failure: DEAD_LETTER_FAILURE });
  });

  test("send no failure email for a converted job", async () => {
    const id = await insertJob();
    await convertJob(id, new Uint8Array([1]));
    const toNotify = await collectQueue(h.broker, h.mp3Queue);
    const message = videoMessageFor(id);
    expect(await handleDeadLetteredVideo(delivery(encodeMessage(message)), h)).toBe("ack");
    await new Promise((resolve) => setTimeout(resolve, 50));
    await toNotify.stop();
    expect(toNotify.deliveries).toHaveLength(0);
  });

  test("retry the failure email until it is queued", async () => {
    const id = await insertJob();
    const toNotify = await collectQueue(h.broker, h.mp3Queue);
    h.broker.downQueues.add(h.mp3Queue);
    await h.broker.publish(deadLetterQueueName(h.videoQueue), encodeMessage(videoMessageFor(id)));
    expect(await waitFor(async () => (await stateOf(id)) === "failed")).toBe(true);
    // The first tries fail and are retried after the broker's backoff of 100 ms, then 200 ms.
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(toNotify.deliveries).toHaveLength(0);

    h.broker.downQueues.delete(h.mp3Queue);
    expect(await waitFor(() => toNotify.deliveries.length === 1, 5_000)).toBe(true);
    const sent = decodeMessage(Mp3MessageSchema, toNotify.deliveries[0]?.body ?? Buffer.alloc(0));
    expect(sent.failure).toEqual(DEAD_LETTER_FAILURE);
    // The queued email acknowledges the dead-lettered message, so no further email follows.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await toNotify.stop();
    expect(toNotify.deliveries).toHaveLength(1);
  });

  test("throw when the failure email is not queued", async () => {
    const id = await insertJob();
    h.broker.publishDown = true;
    await expect(
      handleDeadLetteredVideo(delivery(encodeMessage(videoMessageFor(id))), h),
    ).rejects.toThrow(`failure email of job ${id} was not queued`);
    expect(await stateOf(id)).toBe("failed");
  });

  test("send the failure email again on a redelivery", async () => {
    const id = await insertJob();
    await h.jobs.applyUpdate(id, { state: "failed", failure: DEAD_LETTER_FAILURE, at: clock });
    const outcome = await handleDeadLetteredVideo(
      redelivery(encodeMessage(videoMessageFor(id))),
      h,
    );
    expect(outcome).toBe("ack");
    expect(h.broker.publishedCount).toBe(1);
  });

  test("send no second email once one is recorded", async () => {
    const id = await insertJob();
    await h.jobs.applyUpdate(id, { state: "failed", failure: DEAD_LETTER_FAILURE, at: clock });
    expect(await h.jobs.recordEmailSent(id, "failed", clock)).toBe(true);
    const outcome = await handleDeadLetteredVideo(
      redelivery(encodeMessage(videoMessageFor(id))),
      h,
    );
    expect(outcome).toBe("ack");
    expect(h.broker.publishedCount).toBe(0);
  });

  test("send no email for a duplicate first delivery", async () => {
    // A second copy of the dead-lettered message arrives as a first delivery.
    const id = await insertJob();
    await h.jobs.applyUpdate(id, { state: "failed", failure: DEAD_LETTER_FAILURE, at: clock });
    const outcome = await handleDeadLetteredVideo(delivery(encodeMessage(videoMessageFor(id))), h);
    expect(outcome).toBe("ack");
    expect(h.broker.publishedCount).toBe(0);
  });

  test("send no email on redelivery for another failure", async () => {
    // The converter failed this job with the same code, and notify emails that failure itself.
    const missingVideo = {
      code: DEAD_LETTER_FAILURE.code,
      message: "The uploaded video could not be found in storage, so it was not converted.",
    };
    for (const failure of [{ code: "no_audio", message: "No audio." }, missingVideo]) {
      const id = await insertJob();
      await h.jobs.applyUpdate(id, { state: "failed", failure, at: clock });
      const outcome = await handleDeadLetteredVideo(
        redelivery(encodeMessage(videoMessageFor(id))),
        h,
      );
      expect(outcome).toBe("ack");
    }
    expect(h.broker.publishedCount).toBe(0);
  });

  test("keep a converted job when its video is dead-lettered late", async () => {
    const id = await insertJob();
    await convertJob(id, new Uint8Array([1]));
    const outcome = await handleDeadLetteredVideo(delivery(encodeMessage({ job_id: id })), h);
    expect(outcome).toBe("ack");
    expect(await stateOf(id)).toBe("converted");
  });
});

describe("wrong methods", () => {
  test.each([
    ["PUT", "/upload", "POST, OPTIONS"],
    ["GET", "/upload", "POST, OPTIONS"],
    ["GET", "/login", "POST, OPTIONS"],
    ["POST", "/jobs", "GET, HEAD, OPTIONS"],
    ["PUT", "/jobs/0b9e3f57-4bd6-4f47-9d8a-0c4f2f1b2a10", "GET, HEAD, DELETE, OPTIONS"],
    ["DELETE", "/jobs", "GET, HEAD, OPTIONS"],
    ["PATCH", "/download?fid=abc", "GET, HEAD, OPTIONS"],
    ["TRACE", "/signup", "POST, OPTIONS"],
  ])("%s %s gets 405 with Allow: %s", async (method, path, allow) => {
    const response = await h.app.handle(new Request(`${BASE}${path}`, { method }));
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe(allow);
    expect(((await response.json()) as { code: string }).code).toBe("method_not_allowed");
  });

  test("HEAD of a job is served by its GET route", async () => {
    const id = await insertJob();
    const response = await h.app.handle(
      new Request(`${BASE}/jobs/${id}`, {
        method: "HEAD",
        headers: { authorization: `Bearer ${alice}` },
      }),
    );
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
  });
});
