/**
 * The `video` queue handler: downloads the video to a temporary file, converts it, stores the MP3
 * under the job id, and reports the result on the `mp3` and `job-events` queues. Storing the MP3
 * under the job id makes the handler idempotent: a redelivered message finds the MP3 and only
 * publishes the result again.
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { errorFields, type Logger, maskEmail } from "@mp3converter/lib/log";
import {
  decodeMessage,
  encodeMessage,
  type Failure,
  InvalidMessageError,
  type JobEvent,
  type Mp3Message,
  type VideoMessage,
  VideoMessageSchema,
} from "@mp3converter/lib/messages";
import type { Broker, Delivery, MessageHandler } from "@mp3converter/lib/ports/broker";
import { BlobExistsError, type BlobStore } from "@mp3converter/lib/ports/storage";
import { type ConvertedMp3, type ConvertSettings, convertToMp3 } from "./convert.ts";
import { ConversionError, type FailureCode } from "./failures.ts";

export interface ConverterWorkerOptions {
  broker: Broker;
  store: BlobStore;
  logger: Logger;
  convert: Omit<ConvertSettings, "signal">;
  mp3Queue: string;
  jobEventsQueue: string;
  /** Aborted when the service stops and the grace period has passed; kills a running ffmpeg. */
  signal?: AbortSignal;
}

/** What a handled job produced, for the log line and the `converted` event. */
interface JobResult {
  durationSeconds?: number;
  warnings: string[];
}

/** Content type of every stored MP3. */
const MP3_CONTENT_TYPE = "audio/mpeg";

/** Longest download name, the limit of `filename` in the queue messages. */
const MAX_FILENAME_CHARS = 1024;

/**
 * Returns the download name of the MP3: the upload's name with its extension replaced by `.mp3`,
 * or `audio.mp3` when the upload had no usable name.
 */
export function mp3FileName(uploadName: string): string {
  const base = uploadName.replace(/\.[^./\\]{1,16}$/, "").trim();
  const stem = base === "" ? "audio" : base;
  return `${stem.slice(0, MAX_FILENAME_CHARS - 4)}.mp3`;
}

/**
 * Creates the handler of the `video` queue. It rejects a message that does not match the schema,
 * acks a job that converted or failed for good, and throws on storage or broker errors, so the
 * broker requeues the message after a backoff and dead-letters it after its delivery limit.
 */
export function createConvertHandler(options: ConverterWorkerOptions): MessageHandler {
  return async (delivery) => {
    const message = decodeOrLog(delivery, options.logger);
    if (message === null) return "reject";

    const log = options.logger.child({ job_id: message.job_id, request_id: message.request_id });
    try {
      await handleJob(message, delivery, options, log);
      return "ack";
    } catch (error) {
      log.warn(
        { err: errorFields(error), delivery_count: delivery.deliveryCount },
        "conversion interrupted; the broker requeues the message",
      );
      throw error;
    }
  };
}

/** Failure code of a job whose video is not in storage. */
const VIDEO_MISSING: FailureCode = "video_missing";

async function handleJob(
  message: VideoMessage,
  delivery: Delivery,
  options: ConverterWorkerOptions,
  log: Logger,
): Promise<void> {
  await publishEvent(options, message, { state: "converting" });
  log.info(
    { user: maskEmail(message.username), redelivered: delivery.redelivered },
    "conversion started",
  );

  const started = performance.now();
  const outcome = await produceMp3(message, options, log);
  const durationMs = Math.round(performance.now() - started);

  if ("failure" in outcome) {
    if (outcome.failure.code === VIDEO_MISSING) {
      // The video is gone, most often because its owner or the retention sweep deleted the job.
      // The gateway ignores the event of a deleted job, and an email about it would confuse.
      await publishEvent(options, message, { state: "failed", failure: outcome.failure });
      log.warn({ failure: outcome.failure }, "video not found; job failed without an email");
      return;
    }
    await publishFailure(options, message, outcome.failure);
    log.warn({ failure: outcome.failure, duration_ms: durationMs }, "conversion failed");
    return;
  }
  await publishSuccess(options, message, outcome);
  log.info(
    {
      mp3_fid: message.job_id,
      duration_s: outcome.durationSeconds,
      warnings: outcome.warnings,
      duration_ms: durationMs,
    },
    "conversion finished",
  );
}

function decodeOrLog(delivery: Delivery, logger: Logger): VideoMessage | null {
  try {
    return decodeMessage(VideoMessageSchema, delivery.body);
  } catch (error) {
    if (!(error instanceof InvalidMessageError)) throw error;
    logger.error(
      { queue: delivery.queue, message_id: delivery.messageId, err: errorFields(error) },
      "invalid video message rejected",
    );
    return null;
  }
}

/**
 * Makes sure `mp3s/<job_id>` exists. Returns the failure when the input is bad, and throws when
 * storage fails or the service is stopping.
 */
async function produceMp3(
  message: VideoMessage,
  options: ConverterWorkerOptions,
  log: Logger,
): Promise<JobResult | { failure: Failure }> {
  if (await options.store.stat("mp3s", message.job_id)) {
    // NOTE: the duration and warnings of the first attempt are not stored, so the `converted`
    // event of a redelivered job carries neither.
    log.info("mp3 exists already, so the message is a redelivery; conversion skipped");
    return { warnings: [] };
  }

  const dir = await mkdtemp(join(options.convert.workDir, "job-"));
  try {
    const inputPath = join(dir, "input");
    if (!(await downloadVideo(message.video_fid, inputPath, options.store))) {
      log.error({ video_fid: message.video_fid }, "video blob not found");
      return {
        failure: {
          code: VIDEO_MISSING,
          message:
            "The uploaded video could not be found in storage, so it was not converted. " +
            "Upload the file again.",
        },
      };
    }

    let mp3: ConvertedMp3;
    try {
      mp3 = await convertToMp3(inputPath, { ...options.convert, signal: options.signal });
    } catch (error) {
      if (error instanceof ConversionError) return { failure: error.toFailure() };
      throw error;
    }
    try {
      await storeMp3(message, mp3, options.store, log, options.signal);
    } finally {
      await mp3.dispose();
    }
    return {
      durationSeconds: Math.round(mp3.durationSeconds * 1000) / 1000,
      warnings: mp3.warnings,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Copies `videos/<id>` to `path`; false when there is no such blob. */
async function downloadVideo(videoId: string, path: string, store: BlobStore): Promise<boolean> {
  const blob = await store.open("videos", videoId);
  if (blob === null) return false;
  // The converter needs a seekable file: an MP4 with its index at the end cannot be read from a
  // stream.
  const source = Readable.fromWeb(blob.stream as unknown as NodeReadableStream<Uint8Array>);
  await pipeline(source, createWriteStream(path, { flags: "wx" }));
  return true;
}

async function storeMp3(
  message: VideoMessage,
  mp3: ConvertedMp3,
  store: BlobStore,
  log: Logger,
  signal: AbortSignal | undefined,
): Promise<void> {
  const deadline = Date.now() + EXISTING_MP3_WAIT_MS;
  for (let attempt = 1; ; attempt++) {
    // A stopping converter does not wait here past its drain time; the message is requeued.
    signal?.throwIfAborted();
    try {
      await putMp3(message, mp3, store);
      return;
    } catch (error) {
      if (!(error instanceof BlobExistsError)) throw error;
    }
    // Either a concurrent delivery of the same job took the id, which counts as done once its
    // blob is visible, or a crashed put left a data file without metadata, which the store takes
    // over once it is stale. Waiting here keeps retries from using up the delivery limit.
    if (await waitForVisibleBlob(store, message.job_id)) {
      log.info("mp3 was stored by a concurrent delivery of the same job");
      return;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `mp3 blob ${message.job_id} exists but has had no metadata for ` +
          `${EXISTING_MP3_WAIT_MS / 1000} s; the job is retried later`,
      );
    }
    if (attempt === 1)
      log.info("mp3 id is taken by a blob without metadata; waiting to take it over");
  }
}

/** Stores the converted file as `mp3s/<job id>`. */
async function putMp3(message: VideoMessage, mp3: ConvertedMp3, store: BlobStore): Promise<void> {
  // Opened here rather than with createReadStream(path): a store that fails before reading would
  // leave a lazy stream that opens after `dispose` deleted the file and emits an unhandled error.
  const file = await open(mp3.path, "r");
  try {
    await store.put("mp3s", file.createReadStream({ autoClose: false }), {
      id: message.job_id,
      filename: mp3FileName(message.filename),
      contentType: MP3_CONTENT_TYPE,
    });
  } finally {
    await file.close();
  }
}

/** Time in milliseconds that a concurrent put of the same MP3 gets to make it visible. */
const CONCURRENT_PUT_WAIT_MS = 2_000;

/**
 * Time in milliseconds that `storeMp3` keeps trying while the MP3's id is taken by a blob without
 * metadata. It exceeds the file store's 30 s bound after which such a file counts as abandoned.
 */
const EXISTING_MP3_WAIT_MS = 45_000;

/** Polls `stat` of `mp3s/<id>` until the blob is visible or `CONCURRENT_PUT_WAIT_MS` has passed. */
async function waitForVisibleBlob(store: BlobStore, id: string): Promise<boolean> {
  const deadline = Date.now() + CONCURRENT_PUT_WAIT_MS;
  for (;;) {
    if (await store.stat("mp3s", id)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function publishEvent(
  options: ConverterWorkerOptions,
  message: VideoMessage,
  fields: Omit<JobEvent, "job_id" | "at" | "request_id">,
): Promise<void> {
  const event: JobEvent = {
    job_id: message.job_id,
    ...fields,
    at: Date.now(),
    request_id: message.request_id,
  };
  await options.broker.publish(options.jobEventsQueue, encodeMessage(event), {
    messageId: `${message.job_id}.${fields.state}`,
  });
}

async function publishMp3Message(
  options: ConverterWorkerOptions,
  message: VideoMessage,
  result: Pick<Mp3Message, "mp3_fid" | "failure">,
): Promise<void> {
  const mp3Message: Mp3Message = {
    job_id: message.job_id,
    video_fid: message.video_fid,
    username: message.username,
    filename: message.filename,
    request_id: message.request_id,
    ...result,
  };
  await options.broker.publish(options.mp3Queue, encodeMessage(mp3Message), {
    messageId: message.job_id,
  });
}

async function publishSuccess(
  options: ConverterWorkerOptions,
  message: VideoMessage,
  result: JobResult,
): Promise<void> {
  await publishMp3Message(options, message, { mp3_fid: message.job_id });
  const event: Omit<JobEvent, "job_id" | "at" | "request_id"> = {
    state: "converted",
    mp3_fid: message.job_id,
    warnings: result.warnings,
  };
  if (result.durationSeconds !== undefined) event.duration_s = result.durationSeconds;
  await publishEvent(options, message, event);
}

async function publishFailure(
  options: ConverterWorkerOptions,
  message: VideoMessage,
  failure: Failure,
): Promise<void> {
  await publishMp3Message(options, message, { mp3_fid: null, failure });
  await publishEvent(options, message, { state: "failed", failure });
}
