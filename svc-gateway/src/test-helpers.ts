/**
 * Test wiring of the gateway on the embedded adapters: SQLite in memory, a file store in a temp
 * directory, the in-process broker, and a token verifier for a key made per run.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBroker } from "@mp3converter/lib/adapters/broker";
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { openBlobStore } from "@mp3converter/lib/adapters/storage";
import { createLogger, type Logger } from "@mp3converter/lib/log";
import type { JobState } from "@mp3converter/lib/messages";
import type {
  Broker,
  BrokerHealth,
  ConsumeOptions,
  Delivery,
  MessageHandler,
  PublishOptions,
  Subscription,
} from "@mp3converter/lib/ports/broker";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import type { BlobStore, Bucket } from "@mp3converter/lib/ports/storage";
import {
  createTokenVerifier,
  generateSigningKey,
  issueToken,
  loadSigningKeys,
  type SigningKeys,
  type TokenVerifier,
} from "@mp3converter/lib/tokens";
import { createGatewayApp, type GatewayApp } from "./app.ts";
import { GATEWAY_MIGRATIONS } from "./jobs-migrations.ts";
import { JobStore } from "./jobs-store.ts";

export const ISSUER = "mp3converter-auth";
export const AUDIENCE = "mp3converter";
export const PUBLIC_URL = "http://localhost:8080";
export const BASE = "http://localhost";

/**
 * A real broker whose publishes fail while `publishDown` is set, to model a broker outage that
 * only affects this gateway's connection.
 */
export class OutageBroker implements Broker {
  publishDown = false;
  /** Queues whose publishes fail, as when the broker rejects messages for one queue. */
  readonly downQueues = new Set<string>();
  /** Messages published through this broker, to check that a rejected request sent none. */
  publishedCount = 0;
  readonly #inner: Broker;

  constructor(inner: Broker) {
    this.#inner = inner;
  }

  get durable(): boolean {
    return this.#inner.durable;
  }

  declareQueues(queues: readonly string[]): Promise<void> {
    return this.#inner.declareQueues(queues);
  }

  async publish(queue: string, body: Buffer, options?: PublishOptions): Promise<void> {
    if (this.publishDown) throw new Error("connection to the broker is closed");
    if (this.downQueues.has(queue)) throw new Error(`broker rejected the message for ${queue}`);
    await this.#inner.publish(queue, body, options);
    this.publishedCount++;
  }

  consume(queue: string, handler: MessageHandler, options: ConsumeOptions): Promise<Subscription> {
    return this.#inner.consume(queue, handler, options);
  }

  health(): BrokerHealth {
    return this.publishDown ? { connected: false, detail: "outage" } : this.#inner.health();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

export interface Harness {
  app: GatewayApp;
  db: SqlDatabase;
  store: BlobStore;
  broker: OutageBroker;
  jobs: JobStore;
  keys: SigningKeys;
  verifier: TokenVerifier;
  logger: Logger;
  /** Root of the file store. */
  storeDir: string;
  videoQueue: string;
  mp3Queue: string;
  jobEventsQueue: string;
  tokenFor(userId: string, email?: string): Promise<string>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  uploadMaxBytes?: number;
  /** Defaults to 10, the service's default. */
  maxActiveJobsPerUser?: number;
  authUrl?: string;
  trustProxy?: boolean;
}

/** Builds the app on fresh embedded adapters; `close()` removes everything again. */
export async function createHarness(options: HarnessOptions = {}): Promise<Harness> {
  const logger = createLogger({ service: "gateway-test", level: "silent" });
  const storeDir = await mkdtemp(join(tmpdir(), "mp3c-gateway-"));
  const db = await openSqlDatabase("sqlite::memory:", { logger });
  await db.migrate(GATEWAY_MIGRATIONS);
  const store = await openBlobStore(`file:${storeDir}`, { logger });
  const broker = new OutageBroker(await openBroker("memory:", { logger }));
  const suffix = crypto.randomUUID().slice(0, 8);
  const videoQueue = `video-${suffix}`;
  const jobEventsQueue = `job-events-${suffix}`;
  const mp3Queue = `mp3-${suffix}`;
  await broker.declareQueues([videoQueue, mp3Queue, jobEventsQueue]);
  const keys = await loadSigningKeys({ keys: [await generateSigningKey()] });
  const verifier = createTokenVerifier({
    jwks: keys.publicJwks,
    issuer: ISSUER,
    audience: AUDIENCE,
  });
  const jobs = new JobStore(db);
  const authUrl = options.authUrl ?? "http://127.0.0.1:9";
  const app = createGatewayApp({
    logger,
    jobs,
    store,
    broker,
    verifier,
    readiness: {},
    authUrl,
    publicUrl: PUBLIC_URL,
    uploadMaxBytes: options.uploadMaxBytes ?? 10 * 1024 * 1024,
    maxActiveJobsPerUser: options.maxActiveJobsPerUser ?? 10,
    videoQueue,
    trustProxy: options.trustProxy ?? false,
  });
  return {
    app,
    db,
    store,
    broker,
    jobs,
    keys,
    verifier,
    logger,
    storeDir,
    videoQueue,
    mp3Queue,
    jobEventsQueue,
    async tokenFor(userId, email = `${userId}@example.com`) {
      const signed = await issueToken(
        keys,
        { userId, email, admin: false },
        { issuer: ISSUER, audience: AUDIENCE, ttlSeconds: 3600 },
      );
      return signed.token;
    },
    async close() {
      await broker.close();
      await store.close();
      await db.close();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}

/** Yields `bytes` as one chunk, as a source for `BlobStore.put`. */
export async function* chunksOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/**
 * Inserts a published job of `user-alice` whose video is stored as `video-<id>`, and moves it to
 * `state` at time `at`. A `converted` or `notified` job also gets an MP3 stored under its id, as
 * the converter stores it. Returns the job id.
 */
export async function insertStoredJob(
  h: Pick<Harness, "jobs" | "store">,
  state: JobState,
  at = Date.now(),
): Promise<string> {
  const id = crypto.randomUUID();
  const videoFid = `video-${id}`;
  await h.store.put("videos", chunksOf(new Uint8Array([1, 2, 3])), {
    id: videoFid,
    filename: "talk.mp4",
    contentType: "video/mp4",
  });
  await h.jobs.insert({
    id,
    ownerId: "user-alice",
    ownerEmail: "alice@example.com",
    filename: "talk.mp4",
    videoFid,
    requestId: "req-test",
    createdAt: at,
    publishLeaseUntil: 0,
  });
  await h.jobs.markPublished(id, at);
  if (state === "converted" || state === "notified") {
    await h.store.put("mp3s", chunksOf(new Uint8Array([4, 5, 6])), {
      id,
      filename: "talk.mp3",
      contentType: "audio/mpeg",
    });
    await h.jobs.applyUpdate(id, { state: "converted", mp3Fid: id, at });
  }
  if (state === "converting" || state === "notified") {
    await h.jobs.applyUpdate(id, { state, at });
  }
  if (state === "failed") {
    const failure = { code: "no_audio", message: "The video has no audio track." };
    await h.jobs.applyUpdate(id, { state, failure, at });
  }
  return id;
}

/** Wraps `store` so that a delete for which `fails(bucket, id)` is true throws. */
export function storeWithFailingDeletes(
  store: BlobStore,
  fails: (bucket: Bucket, id: string) => boolean,
): BlobStore {
  return {
    put: (...args) => store.put(...args),
    stat: (...args) => store.stat(...args),
    open: (...args) => store.open(...args),
    async delete(bucket, id) {
      if (fails(bucket, id)) throw new Error("storage is down");
      return store.delete(bucket, id);
    },
    ping: () => store.ping(),
    close: () => store.close(),
  };
}

/** Lists every file left in the store's `videos` bucket and its `.partial` directory. */
export async function storedVideoFiles(storeDir: string): Promise<string[]> {
  const videos = await readdir(join(storeDir, "videos"));
  const partial = await readdir(join(storeDir, ".partial"));
  return [...videos.map((name) => `videos/${name}`), ...partial.map((name) => `.partial/${name}`)];
}

/** One part of a hand-built multipart body. */
export interface FormPart {
  name: string;
  filename?: string;
  contentType?: string;
  content: string | Uint8Array;
}

export const BOUNDARY = "----mp3converter-test-boundary";
export const MULTIPART_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;

/** Encodes the header block of one part. */
export function partHead(part: Omit<FormPart, "content">): Uint8Array {
  let disposition = `form-data; name="${part.name}"`;
  if (part.filename !== undefined) disposition += `; filename="${part.filename}"`;
  let head = `--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\n`;
  if (part.contentType) head += `Content-Type: ${part.contentType}\r\n`;
  return new TextEncoder().encode(`${head}\r\n`);
}

/** Builds a complete multipart/form-data body. */
export function multipartBody(parts: FormPart[]): Uint8Array<ArrayBuffer> {
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    chunks.push(partHead(part));
    chunks.push(
      typeof part.content === "string" ? new TextEncoder().encode(part.content) : part.content,
    );
    chunks.push(new TextEncoder().encode("\r\n"));
  }
  chunks.push(new TextEncoder().encode(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

/** Collects the deliveries of `queue` as they arrive. */
export async function collectQueue(
  broker: Broker,
  queue: string,
): Promise<{ deliveries: Delivery[]; stop(): Promise<void> }> {
  const deliveries: Delivery[] = [];
  const subscription = await broker.consume(
    queue,
    async (delivery) => {
      deliveries.push(delivery);
      return "ack";
    },
    { prefetch: 10 },
  );
  return { deliveries, stop: () => subscription.cancel() };
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns the last result. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
