import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { decodeMessage, type JobState, VideoMessageSchema } from "@mp3converter/lib/messages";
import { runOutboxOnce } from "./outbox.ts";
import {
  BASE,
  BOUNDARY,
  collectQueue,
  createHarness,
  type FormPart,
  type Harness,
  MULTIPART_TYPE,
  multipartBody,
  PUBLIC_URL,
  partHead,
  storedVideoFiles,
  waitFor,
} from "./test-helpers.ts";
import { ACTIVE_JOBS_RETRY_AFTER_SECONDS } from "./upload.ts";

const MAX_BYTES = 64 * 1024;
/** A random (version 4) UUID: job ids carry 122 random bits, so they cannot be guessed. */
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let h: Harness;
let token: string;

beforeEach(async () => {
  h = await createHarness({ uploadMaxBytes: MAX_BYTES });
  token = await h.tokenFor("user-1", "alice@example.com");
});

afterEach(async () => {
  await h.close();
});

function uploadRequest(body: BodyInit, headers: Record<string, string> = {}): Request {
  return new Request(`${BASE}/upload`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": MULTIPART_TYPE, ...headers },
    body,
    duplex: "half",
  } as RequestInit);
}

function uploadParts(parts: FormPart[]): Promise<Response> {
  return h.app.handle(uploadRequest(multipartBody(parts)));
}

/** Builds a multipart body of raw parts, each given with its complete header block. */
function rawForm(parts: string[]): string {
  const text = parts.map((part) => `--${BOUNDARY}\r\n${part}\r\n`).join("");
  return `${text}--${BOUNDARY}--\r\n`;
}

async function jobCount(): Promise<number> {
  const rows = await h.db.query<{ n: number }>("SELECT COUNT(*) AS n FROM jobs");
  return Number(rows[0]?.n);
}

describe("POST /upload", () => {
  test("stores the file, records the job and publishes it", async () => {
    const queue = await collectQueue(h.broker, h.videoQueue);
    const response = await uploadParts([
      { name: "title", content: "ignored" },
      { name: "file", filename: "talk.mp4", contentType: "video/mp4", content: "video bytes" },
    ]);
    expect(response.status).toBe(202);
    const body = (await response.json()) as { job_id: string; status_url: string; state: string };
    expect(body.state).toBe("queued");
    expect(body.job_id).toMatch(UUID_V4);
    expect(body.status_url).toBe(`${PUBLIC_URL}/jobs/${body.job_id}`);
    expect(response.headers.get("location")).toBe(body.status_url);

    const job = await h.jobs.findOwned(body.job_id, "user-1");
    expect(job?.state).toBe("queued");
    expect(job?.filename).toBe("talk.mp4");
    expect(job?.ownerEmail).toBe("alice@example.com");
    expect(job?.publishedAt).toBeNumber();

    const blob = await h.store.open("videos", job?.videoFid ?? "");
    expect(await new Response(blob?.stream).text()).toBe("video bytes");

    expect(await waitFor(() => queue.deliveries.length === 1)).toBe(true);
    const delivery = queue.deliveries[0];
    expect(delivery?.messageId).toBe(body.job_id);
    expect(delivery?.headers["x-request-id"]).toBe(response.headers.get("x-request-id") ?? "");
    const message = decodeMessage(VideoMessageSchema, delivery?.body ?? Buffer.alloc(0));
    expect(message).toEqual({
      job_id: body.job_id,
      video_fid: job?.videoFid ?? "",
      mp3_fid: null,
      username: "alice@example.com",
      filename: "talk.mp4",
      request_id: response.headers.get("x-request-id") ?? "",
    });
    await queue.stop();
  });

  test("accepts a body built by FormData", async () => {
    const form = new FormData();
    form.set("file", new Blob(["from form data"]), "clip.webm");
    const request = new Request(`${BASE}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: form,
    });
    const response = await h.app.handle(request);
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };
    expect((await h.jobs.findOwned(job_id, "user-1"))?.filename).toBe("clip.webm");
  });

  test("keeps only a clean display name", async () => {
    const response = await uploadParts([
      { name: "file", filename: "../../etc/Caf\u0065\u0301 talk.mp4", content: "x" },
    ]);
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };
    expect((await h.jobs.findOwned(job_id, "user-1"))?.filename).toBe("Café talk.mp4");
  });

  test("uses a default name when the part has none", async () => {
    const response = await uploadParts([
      { name: "file", contentType: "application/octet-stream", content: "x" },
    ]);
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };
    expect((await h.jobs.findOwned(job_id, "user-1"))?.filename).toBe("upload");
  });

  test.each([
    ["no file part", [{ name: "title", content: "no file" }], "no file part", "no_file"],
    [
      "two file parts",
      [
        { name: "file", filename: "a.mp4", content: "first" },
        { name: "file", filename: "b.mp4", content: "second" },
      ],
      "more than one file",
      "multiple_files",
    ],
    [
      "a text field for the file",
      [{ name: "file", content: "C:/video.mp4" }],
      "sent as text",
      "file_sent_as_text",
    ],
    [
      "a misnamed file part",
      [{ name: "video", filename: "a.mp4", content: "bytes" }],
      'field "video"',
      "wrong_field_name",
    ],
  ])("rejects %s with 400", async (_case, parts, problem, reason) => {
    const response = await uploadParts(parts as FormPart[]);
    expect(response.status).toBe(400);
    const body = (await response.json()) as {
      code: string;
      message: string;
      details: { reason: string };
    };
    expect(body.code).toBe("invalid_argument");
    expect(body.details.reason).toBe(reason);
    expect(body.message).toContain(problem);
    expect(body.message).toContain("curl -F file=@video.mp4");
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test.each([
    ["a part without Content-Disposition", "Content-Type: text/plain\r\n\r\nx", "malformed_part"],
    ["a bad header line", "Not a header line\r\n\r\nx", "malformed_part"],
    ["a part without a name", "Content-Disposition: form-data\r\n\r\nx", "unnamed_part"],
    [
      "a text field over 1 KiB",
      `Content-Disposition: form-data; name="notes"\r\n\r\n${"x".repeat(2000)}`,
      "field_too_long",
    ],
  ])("rejects %s beside a valid file with 400", async (_case, badPart, reason) => {
    const filePart =
      'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nvideo bytes';
    for (const parts of [
      [filePart, badPart],
      [badPart, filePart],
    ]) {
      const response = await h.app.handle(uploadRequest(rawForm(parts)));
      expect(response.status).toBe(400);
      const body = (await response.json()) as { code: string; details: { reason: string } };
      expect(body.code).toBe("invalid_argument");
      expect(body.details.reason).toBe(reason);
      expect(await storedVideoFiles(h.storeDir)).toEqual([]);
      expect(await jobCount()).toBe(0);
      expect(h.broker.publishedCount).toBe(0);
    }
  });

  test("rejects a file without the close delimiter with 400", async () => {
    const form = multipartBody([{ name: "file", filename: "a.mp4", content: "video bytes" }]);
    const closeDelimiter = `--${BOUNDARY}--\r\n`.length;
    const response = await h.app.handle(uploadRequest(form.slice(0, form.length - closeDelimiter)));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { details: { reason: string } };
    expect(body.details.reason).toBe("incomplete_body");
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
    expect(h.broker.publishedCount).toBe(0);
  });

  test("accepts eight parts, the file among them", async () => {
    const fields: FormPart[] = Array.from({ length: 7 }, (_, i) => ({
      name: `f${i}`,
      content: "v",
    }));
    const response = await uploadParts([
      ...fields,
      { name: "file", filename: "a.mp4", content: "x" },
    ]);
    expect(response.status).toBe(202);
  });

  test("rejects too many fields with 400", async () => {
    const parts: FormPart[] = Array.from({ length: 9 }, (_, i) => ({
      name: `f${i}`,
      content: "v",
    }));
    const response = await uploadParts(parts);
    expect(response.status).toBe(400);
  });

  test("rejects nine parts with 400", async () => {
    // One file and seven fields reach the file and field limits, so only a part that is
    // neither, such as one without Content-Disposition, can be the ninth.
    const fields = Array.from(
      { length: 7 },
      (_, i) => `Content-Disposition: form-data; name="f${i}"\r\n\r\nv`,
    );
    const parts = [
      'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nvideo bytes',
      ...fields,
      "Content-Type: text/plain\r\n\r\nx",
    ];
    const response = await h.app.handle(uploadRequest(rawForm(parts)));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { details: { reason: string } };
    expect(body.details.reason).toBe("too_many_parts");
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("rejects a malformed multipart body with 400", async () => {
    const truncated = multipartBody([{ name: "file", filename: "a.mp4", content: "abc" }]);
    const response = await h.app.handle(uploadRequest(truncated.slice(0, truncated.length - 30)));
    expect(response.status).toBe(400);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("rejects a multipart type without boundary with 400", async () => {
    const response = await h.app.handle(
      uploadRequest("x", { "content-type": "multipart/form-data" }),
    );
    expect(response.status).toBe(400);
  });

  test("rejects a boundary hidden in a quoted parameter", async () => {
    // The file part is valid, and busboy skips the attachment part.
    const contentType = 'multipart/form-data; x="; boundary=zzz"; boundary=XyZb0undary';
    const form = rawForm([
      'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nvideo bytes',
      'Content-Disposition: attachment; name="a"\r\n\r\nx',
    ]).replaceAll(BOUNDARY, "XyZb0undary");
    const response = await h.app.handle(uploadRequest(form, { "content-type": contentType }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { code: string; details: { reason: string } };
    expect(body.code).toBe("invalid_argument");
    expect(body.details.reason).toBe("malformed_part");
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
    expect(h.broker.publishedCount).toBe(0);
  });

  test("rejects a repeated boundary with 400", async () => {
    const contentType = `${MULTIPART_TYPE}; boundary=other`;
    const form = multipartBody([{ name: "file", filename: "a.mp4", content: "video bytes" }]);
    const response = await h.app.handle(uploadRequest(form, { "content-type": contentType }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as {
      code: string;
      message: string;
      request_id: string;
      details: { reason: string };
    };
    expect(body.code).toBe("invalid_argument");
    expect(body.details.reason).toBe("invalid_boundary");
    expect(body.message).toContain("more than one boundary");
    expect(body.request_id).toBe(response.headers.get("x-request-id") ?? "");
    expect(await jobCount()).toBe(0);
  });

  test("rejects a file with two transfer encodings", async () => {
    const filePart =
      'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n' +
      "Content-Transfer-Encoding: binary\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
      "dmlkZW8gYnl0ZXM=";
    const response = await h.app.handle(uploadRequest(rawForm([filePart])));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { details: { reason: string } };
    expect(body.details.reason).toBe("unsupported_encoding");
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test.each([
    ["no body", undefined],
    ["an empty body", ""],
  ])("rejects %s as incomplete", async (_case, form) => {
    const request = new Request(`${BASE}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": MULTIPART_TYPE },
      body: form,
    });
    const response = await h.app.handle(request);
    expect(response.status).toBe(400);
    const body = (await response.json()) as { details: { reason: string } };
    expect(body.details.reason).toBe("incomplete_body");
  });

  test("rejects a body that is not multipart with 415", async () => {
    const response = await h.app.handle(
      uploadRequest("raw bytes", { "content-type": "application/octet-stream" }),
    );
    expect(response.status).toBe(415);
    const body = (await response.json()) as { code: string; message: string };
    expect(body.code).toBe("unsupported_media_type");
    expect(body.message).toContain("multipart/form-data");
  });

  test("rejects a compressed body with 415", async () => {
    const form = multipartBody([{ name: "file", filename: "a.mp4", content: "video bytes" }]);
    const response = await h.app.handle(uploadRequest(form, { "content-encoding": "gzip" }));
    expect(response.status).toBe(415);
    const body = (await response.json()) as { code: string; message: string };
    expect(body.code).toBe("unsupported_media_type");
    expect(body.message).toContain("Content-Encoding gzip");
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("accepts Content-Encoding identity", async () => {
    const form = multipartBody([{ name: "file", filename: "a.mp4", content: "video bytes" }]);
    const response = await h.app.handle(uploadRequest(form, { "content-encoding": "identity" }));
    expect(response.status).toBe(202);
  });

  test("rejects a file over the limit with 413 and stores nothing", async () => {
    const response = await uploadParts([
      { name: "file", filename: "big.mp4", content: new Uint8Array(MAX_BYTES + 1) },
    ]);
    expect(response.status).toBe(413);
    const body = (await response.json()) as { code: string; details: { max_bytes: number } };
    expect(body.code).toBe("payload_too_large");
    expect(body.details.max_bytes).toBe(MAX_BYTES);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("accepts a file of exactly the limit", async () => {
    const response = await uploadParts([
      { name: "file", filename: "edge.mp4", content: new Uint8Array(MAX_BYTES) },
    ]);
    expect(response.status).toBe(202);
  });

  test("rejects a declared length over the limit before reading", async () => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(1024));
      },
    });
    const response = await h.app.handle(
      uploadRequest(body, { "content-length": String(MAX_BYTES * 100) }),
    );
    expect(response.status).toBe(413);
    expect(pulled).toBeLessThanOrEqual(1);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
  });

  test("answers 413 while the client is still sending", async () => {
    const head = partHead({ name: "file", filename: "endless.mp4" });
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // An endless file: the response can only come from the limit check, not the end.
        controller.enqueue(sent === 0 ? head : new Uint8Array(8 * 1024));
        sent++;
      },
    });
    const response = await h.app.handle(uploadRequest(body));
    expect(response.status).toBe(413);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("answers 413 for bytes streamed after the file", async () => {
    const form = multipartBody([{ name: "file", filename: "small.mp4", content: "abc" }]);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // busboy skips bytes after the closing boundary, so only a cap on the whole body ends
        // this request. The bound keeps a missing cap from hanging the test.
        if (sent === 4096) controller.close();
        else controller.enqueue(sent === 0 ? form : new Uint8Array(8 * 1024));
        sent++;
      },
    });
    const response = await h.app.handle(uploadRequest(body));
    expect(response.status).toBe(413);
    expect(((await response.json()) as { code: string }).code).toBe("payload_too_large");
    expect(sent).toBeLessThan(4096);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("stores nothing when the client aborts mid-file", async () => {
    const head = partHead({ name: "file", filename: "cut.mp4" });
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === 4) {
          controller.error(new Error("client disconnected"));
          return;
        }
        controller.enqueue(sent === 0 ? head : new Uint8Array(4 * 1024));
        sent++;
      },
    });
    const response = await h.app.handle(uploadRequest(body));
    expect(response.status).toBe(400);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("stores nothing when the body ends mid-file", async () => {
    const head = partHead({ name: "file", filename: "cut.mp4" });
    const body = Buffer.concat([head, new Uint8Array(4 * 1024)]);
    const response = await h.app.handle(uploadRequest(body));
    expect(response.status).toBe(400);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(0);
  });

  test("accepts while the broker is down and publishes later", async () => {
    h.broker.publishDown = true;
    const response = await uploadParts([{ name: "file", filename: "a.mp4", content: "x" }]);
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };
    expect((await h.jobs.findOwned(job_id, "user-1"))?.publishedAt).toBeNull();

    const outbox = { broker: h.broker, jobs: h.jobs, logger: h.logger, videoQueue: h.videoQueue };
    expect(await runOutboxOnce(outbox)).toBe(0);

    h.broker.publishDown = false;
    const queue = await collectQueue(h.broker, h.videoQueue);
    expect(await runOutboxOnce(outbox)).toBe(1);
    expect(await waitFor(() => queue.deliveries.length === 1)).toBe(true);
    expect(queue.deliveries[0]?.messageId).toBe(job_id);
    expect((await h.jobs.findOwned(job_id, "user-1"))?.publishedAt).toBeNumber();
    expect(await runOutboxOnce(outbox)).toBe(0);
    await queue.stop();
  });

  test.each([
    ["no token", undefined, "unauthenticated"],
    ["a malformed header", "Token abc", "invalid_request"],
    ["a bad token", "Bearer not.a.jwt", "invalid_token"],
  ])("rejects %s with 401", async (_case, authorization, code) => {
    const headers: Record<string, string> = { "content-type": MULTIPART_TYPE };
    if (authorization) headers.authorization = authorization;
    const request = new Request(`${BASE}/upload`, {
      method: "POST",
      headers,
      body: multipartBody([{ name: "file", filename: "a.mp4", content: "x" }]),
    });
    const response = await h.app.handle(request);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toStartWith("Bearer");
    expect(((await response.json()) as { code: string }).code).toBe(code);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
  });

  test("rejects a token signed by another key with 401", async () => {
    const other = await createHarness();
    const foreign = await other.tokenFor("user-1");
    await other.close();
    const request = new Request(`${BASE}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${foreign}`, "content-type": MULTIPART_TYPE },
      body: multipartBody([{ name: "file", filename: "a.mp4", content: "x" }]),
    });
    const response = await h.app.handle(request);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain('error="invalid_token"');
  });
});

describe("POST /upload with active jobs", () => {
  const LIMIT = 3;

  beforeEach(async () => {
    await h.close();
    h = await createHarness({ uploadMaxBytes: MAX_BYTES, maxActiveJobsPerUser: LIMIT });
    token = await h.tokenFor("user-1", "alice@example.com");
  });

  /** Records a job of `ownerId` directly in the store, moved on to `state`. */
  async function recordJob(ownerId: string, state: JobState): Promise<string> {
    const id = crypto.randomUUID();
    await h.jobs.insert({
      id,
      ownerId,
      ownerEmail: `${ownerId}@example.com`,
      filename: "old.mp4",
      videoFid: `video-${id}`,
      requestId: "req-old",
      createdAt: 1_000,
      publishLeaseUntil: 0,
    });
    if (state === "converted" || state === "notified") {
      await h.jobs.applyUpdate(id, { state: "converted", mp3Fid: id, at: 2_000 });
    }
    if (state === "converting" || state === "notified") {
      await h.jobs.applyUpdate(id, { state, at: 3_000 });
    }
    if (state === "failed") {
      const failure = { code: "no_audio", message: "The video has no audio track." };
      await h.jobs.applyUpdate(id, { state, failure, at: 3_000 });
    }
    return id;
  }

  /** Builds an upload body that counts how often the gateway pulls from it. */
  function countingBody(): { body: ReadableStream<Uint8Array>; pulls(): number } {
    const form = multipartBody([{ name: "file", filename: "a.mp4", content: "video bytes" }]);
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(form);
        controller.close();
      },
    });
    return { body, pulls: () => pulled };
  }

  test("rejects an upload at the limit with 429 before reading", async () => {
    for (const state of ["queued", "converting", "queued"] as const) {
      await recordJob("user-1", state);
    }
    const { body, pulls } = countingBody();
    const response = await h.app.handle(uploadRequest(body));

    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe(String(ACTIVE_JOBS_RETRY_AFTER_SECONDS));
    expect(response.headers.get("content-type")).toStartWith("application/json");
    const error = (await response.json()) as {
      code: string;
      message: string;
      details: { active_jobs: number; max_active_jobs: number };
      request_id: string;
    };
    expect(error.code).toBe("too_many_active_jobs");
    expect(error.message).toContain("Wait until one of them is converted or failed");
    expect(error.details).toEqual({ active_jobs: LIMIT, max_active_jobs: LIMIT });
    expect(error.request_id).toBe(response.headers.get("x-request-id") ?? "");
    // A ReadableStream pulls once when it is built, before anyone reads it.
    expect(pulls()).toBeLessThanOrEqual(1);
    expect(await storedVideoFiles(h.storeDir)).toEqual([]);
    expect(await jobCount()).toBe(LIMIT);
    expect(h.broker.publishedCount).toBe(0);
  });

  test("counts neither finished jobs nor other users' jobs", async () => {
    await recordJob("user-1", "queued");
    await recordJob("user-1", "converting");
    await recordJob("user-1", "converted");
    await recordJob("user-1", "notified");
    await recordJob("user-1", "failed");
    for (let i = 0; i < LIMIT; i++) await recordJob("user-2", "queued");

    const response = await uploadParts([{ name: "file", filename: "a.mp4", content: "x" }]);
    expect(response.status).toBe(202);
  });

  test("accepts again once a job finishes", async () => {
    const ids = [];
    for (let i = 0; i < LIMIT; i++) ids.push(await recordJob("user-1", "queued"));
    const file: FormPart[] = [{ name: "file", filename: "a.mp4", content: "x" }];
    expect((await uploadParts(file)).status).toBe(429);

    const failure = { code: "no_audio", message: "The video has no audio track." };
    await h.jobs.applyUpdate(ids[0] ?? "", { state: "failed", failure, at: 4_000 });
    expect((await uploadParts(file)).status).toBe(202);
    expect((await uploadParts(file)).status).toBe(429);
  });

  test("limit 0 turns the check off", async () => {
    await h.close();
    h = await createHarness({ uploadMaxBytes: MAX_BYTES, maxActiveJobsPerUser: 0 });
    token = await h.tokenFor("user-1", "alice@example.com");
    for (let i = 0; i < 20; i++) await recordJob("user-1", "queued");

    const response = await uploadParts([{ name: "file", filename: "a.mp4", content: "x" }]);
    expect(response.status).toBe(202);
  });

  test("checks the media type before the limit", async () => {
    for (let i = 0; i < LIMIT; i++) await recordJob("user-1", "queued");
    const response = await h.app.handle(
      uploadRequest("raw bytes", { "content-type": "application/octet-stream" }),
    );
    expect(response.status).toBe(415);
  });
});
