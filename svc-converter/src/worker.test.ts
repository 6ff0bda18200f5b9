/**
 * Converter service tests on the in-process broker and a file blob store in a temporary
 * directory, with real ffmpeg runs on generated media.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { DEATH_REASON_HEADER, openBroker } from "@mp3converter/lib/adapters/broker";
import { openBlobStore } from "@mp3converter/lib/adapters/storage";
import { createLogger, type Logger } from "@mp3converter/lib/log";
import {
  decodeMessage,
  encodeMessage,
  type JobEvent,
  JobEventSchema,
  type Mp3Message,
  Mp3MessageSchema,
  type VideoMessage,
} from "@mp3converter/lib/messages";
import { type Broker, type Delivery, deadLetterQueueName } from "@mp3converter/lib/ports/broker";
import { BlobExistsError, type BlobStore } from "@mp3converter/lib/ports/storage";
import { readConverterConfig } from "./config.ts";
import { type ConverterService, startConverter } from "./service.ts";
import { CLIP_SECONDS, ffprobeJson, generateTestMedia, type TestMedia } from "./test-media.ts";
import { OWNER_FILE } from "./work-dir.ts";
import { mp3FileName } from "./worker.ts";

/** Maximum wait for a condition, so a broken worker fails the test instead of hanging it. */
const WAIT_DEADLINE_MS = 30_000;

// Above WAIT_DEADLINE_MS, so a failed wait reports what it waited for instead of a timeout.
setDefaultTimeout(60_000);

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_DEADLINE_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Creates a logger whose JSON lines the test can read back. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(JSON.parse(line));
      callback();
    },
  });
  const logger = createLogger({ service: "converter-test", level: "debug", destination });
  return { logger, lines };
}

let dir: string;
let workDir: string;
let media: TestMedia;
let broker: Broker;
let store: BlobStore;
let service: ConverterService;
let logLines: Record<string, unknown>[];
const mp3Messages: Mp3Message[] = [];
const events: JobEvent[] = [];
const deadLetters: Delivery[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "converter-worker-test-"));
  workDir = join(dir, "work");
  media = await generateTestMedia(dir);
  const captured = capturingLogger();
  logLines = captured.lines;
  broker = await openBroker("memory:", { logger: captured.logger });
  store = await openBlobStore(`file:${join(dir, "files")}`, { logger: captured.logger });

  const config = readConverterConfig({
    BROKER_URL: "memory:",
    STORAGE_URL: `file:${join(dir, "files")}`,
    HEALTH_PORT: "0",
    WORK_DIR: workDir,
  });
  service = await startConverter(config, { broker, store, logger: captured.logger });

  await broker.consume(
    config.mp3Queue,
    async (delivery) => {
      mp3Messages.push(decodeMessage(Mp3MessageSchema, delivery.body));
      return "ack";
    },
    { prefetch: 10 },
  );
  await broker.consume(
    config.jobEventsQueue,
    async (delivery) => {
      events.push(decodeMessage(JobEventSchema, delivery.body));
      return "ack";
    },
    { prefetch: 10 },
  );
  await broker.consume(
    deadLetterQueueName(config.videoQueue),
    async (delivery) => {
      deadLetters.push(delivery);
      return "ack";
    },
    { prefetch: 10 },
  );
}, 180_000);

afterAll(async () => {
  await service?.stop();
  await broker?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

async function uploadVideo(
  id: string,
  path: string,
  filename: string,
  contentType = "video/mp4",
): Promise<void> {
  await store.put("videos", createReadStream(path), { id, filename, contentType });
}

function videoMessage(jobId: string, videoId: string, filename: string): VideoMessage {
  return {
    job_id: jobId,
    video_fid: videoId,
    mp3_fid: null,
    username: "alice@example.com",
    filename,
    request_id: `request-${jobId}`,
  };
}

async function publishVideo(message: VideoMessage): Promise<void> {
  await broker.publish("video", encodeMessage(message), { messageId: message.job_id });
}

function eventsOf(jobId: string): JobEvent[] {
  return events.filter((event) => event.job_id === jobId);
}

function mp3MessagesOf(jobId: string): Mp3Message[] {
  return mp3Messages.filter((message) => message.job_id === jobId);
}

describe("converter worker", () => {
  test("converts a video to a stored MP3", async () => {
    await uploadVideo("video-good", media.mp4MoovAtEnd, "holiday.mov");
    await publishVideo(videoMessage("job-good", "video-good", "holiday.mov"));
    await waitFor("converted event", () =>
      eventsOf("job-good").some((e) => e.state !== "converting"),
    );

    const jobEvents = eventsOf("job-good");
    expect(jobEvents.map((e) => e.state)).toEqual(["converting", "converted"]);
    const converted = jobEvents[1] as JobEvent;
    expect(converted.mp3_fid).toBe("job-good");
    expect(converted.warnings).toEqual([]);
    expect(converted.request_id).toBe("request-job-good");
    expect(Math.abs((converted.duration_s ?? 0) - CLIP_SECONDS)).toBeLessThanOrEqual(0.5);

    const messages = mp3MessagesOf("job-good");
    expect(messages).toHaveLength(1);
    expect(messages[0]?.mp3_fid).toBe("job-good");
    expect(messages[0]?.failure).toBeUndefined();
    expect(messages[0]?.username).toBe("alice@example.com");

    const info = await store.stat("mp3s", "job-good");
    expect(info?.filename).toBe("holiday.mp3");
    expect(info?.contentType).toBe("audio/mpeg");

    const blob = await store.open("mp3s", "job-good");
    const copy = join(dir, "stored.mp3");
    await pipeline(
      Readable.fromWeb(blob?.stream as unknown as NodeReadableStream<Uint8Array>),
      createWriteStream(copy),
    );
    const probed = await ffprobeJson(copy);
    expect(probed.streams[0]?.codec_name).toBe("mp3");
  });

  test("redelivery makes no second MP3", async () => {
    await waitFor("first job done", () => eventsOf("job-good").length >= 2);
    const before = await store.stat("mp3s", "job-good");
    // Without the video, a second conversion would fail, so a `converted` event proves the
    // handler found the MP3 and did not convert again.
    await store.delete("videos", "video-good");

    await publishVideo(videoMessage("job-good", "video-good", "holiday.mov"));
    await waitFor("second converted event", () => eventsOf("job-good").length >= 4);

    expect(eventsOf("job-good").map((e) => e.state)).toEqual([
      "converting",
      "converted",
      "converting",
      "converted",
    ]);
    expect(mp3MessagesOf("job-good")).toHaveLength(2);
    expect(mp3MessagesOf("job-good")[1]?.mp3_fid).toBe("job-good");
    const after = await store.stat("mp3s", "job-good");
    expect(after?.createdAt).toEqual(before?.createdAt as Date);
    const skipped = logLines.filter(
      (line) => line.job_id === "job-good" && String(line.msg).includes("conversion skipped"),
    );
    expect(skipped).toHaveLength(1);
  });

  test("video without audio fails with no_audio", async () => {
    await uploadVideo("video-silent", media.videoWithoutAudio, "screen.mp4");
    await publishVideo(videoMessage("job-silent", "video-silent", "screen.mp4"));
    await waitFor("failed event", () => eventsOf("job-silent").some((e) => e.state === "failed"));

    const failed = eventsOf("job-silent").at(-1) as JobEvent;
    expect(failed.failure?.code).toBe("no_audio");
    expect(failed.failure?.message).toContain("no audio track");
    const messages = mp3MessagesOf("job-silent");
    expect(messages).toHaveLength(1);
    expect(messages[0]?.mp3_fid).toBeNull();
    expect(messages[0]?.failure?.code).toBe("no_audio");
    expect(await store.stat("mp3s", "job-silent")).toBeNull();
  });

  test("missing video fails without an email", async () => {
    await publishVideo(videoMessage("job-lost", "video-never-stored", "lost.mp4"));
    await waitFor("failed event", () => eventsOf("job-lost").some((e) => e.state === "failed"));

    expect(eventsOf("job-lost").at(-1)?.failure?.code).toBe("video_missing");
    expect(mp3MessagesOf("job-lost")).toEqual([]);
  });

  test("invalid message is dead-lettered", async () => {
    await broker.publish("video", Buffer.from(JSON.stringify({ job_id: "job-bad" })), {
      messageId: "job-bad",
    });
    await waitFor("dead letter", () => deadLetters.some((d) => d.messageId === "job-bad"));

    const dead = deadLetters.find((d) => d.messageId === "job-bad") as Delivery;
    expect(dead.headers[DEATH_REASON_HEADER]).toBe("rejected");
    expect(eventsOf("job-bad")).toEqual([]);
    const logged = logLines.find((line) => line.msg === "invalid video message rejected");
    expect(logged).toBeDefined();
  });

  test("decides by content, not by name or type", async () => {
    const textName = "../../escape.txt";
    await uploadVideo("video-as-text", media.mp4Faststart, textName, "text/plain");
    await publishVideo(videoMessage("job-as-text", "video-as-text", textName));
    await uploadVideo("video-playlist", media.hlsPlaylist, "holiday.mp4");
    await publishVideo(videoMessage("job-playlist", "video-playlist", "holiday.mp4"));
    const finished = (jobId: string) => eventsOf(jobId).some((e) => e.state !== "converting");
    await waitFor("both jobs finished", () => finished("job-as-text") && finished("job-playlist"));

    expect(eventsOf("job-as-text").at(-1)?.state).toBe("converted");
    expect(eventsOf("job-playlist").at(-1)?.failure?.code).toBe("unsupported_format");
    // The name is never a path: nothing was written where it points from a job directory.
    expect(await readdir(dir)).not.toContain("escape.txt");
    expect(await readdir(dir)).not.toContain("escape.mp3");
  });

  test("logs mask the user's email", () => {
    const started = logLines.find((line) => line.msg === "conversion started");
    expect(started?.user).toBe("a***@example.com");
    expect(JSON.stringify(logLines)).not.toContain("alice@example.com");
  });

  test("leaves no temporary files", async () => {
    const instances = await readdir(workDir);
    expect(instances).toHaveLength(1);
    expect(await readdir(join(workDir, instances[0] ?? ""))).toEqual([OWNER_FILE]);
  });

  test("readyz reports ready", async () => {
    const response = await fetch(`http://127.0.0.1:${service.port}/readyz`);
    expect(response.status).toBe(200);
  });
});

describe("mp3FileName", () => {
  test("replaces the extension", () => {
    expect(mp3FileName("holiday.MOV")).toBe("holiday.mp3");
    expect(mp3FileName("mi korasón.flac")).toBe("mi korasón.mp3");
    expect(mp3FileName("archive.tar.gz")).toBe("archive.tar.mp3");
  });

  test("names a file without a usable name", () => {
    expect(mp3FileName("")).toBe("audio.mp3");
    expect(mp3FileName(".mp4")).toBe("audio.mp3");
    expect(mp3FileName("notes")).toBe("notes.mp3");
  });
});

/** Delegates to `store`, but its first `put` into `mp3s` fails as an unreachable store would. */
function storeFailingFirstMp3Put(store: BlobStore): BlobStore & { failedPuts: number } {
  const wrapper = {
    failedPuts: 0,
    put: async (...args: Parameters<BlobStore["put"]>) => {
      if (args[0] === "mp3s" && wrapper.failedPuts === 0) {
        wrapper.failedPuts += 1;
        throw new Error("storage unavailable");
      }
      return store.put(...args);
    },
    stat: (...args: Parameters<BlobStore["stat"]>) => store.stat(...args),
    open: (...args: Parameters<BlobStore["open"]>) => store.open(...args),
    delete: (...args: Parameters<BlobStore["delete"]>) => store.delete(...args),
    ping: () => store.ping(),
    close: () => store.close(),
  };
  return wrapper;
}

/** Wraps `store` so that the first MP3 put raises BlobExistsError and stores nothing. */
function storeClaimingFirstMp3(store: BlobStore): BlobStore & { failedPuts: number } {
  const wrapper = storeFailingFirstMp3Put(store);
  const put = wrapper.put;
  wrapper.put = async (...args: Parameters<BlobStore["put"]>) => {
    if (args[0] === "mp3s" && wrapper.failedPuts === 0) {
      wrapper.failedPuts += 1;
      throw new BlobExistsError("mp3s", args[2].id ?? "");
    }
    return put(...args);
  };
  return wrapper;
}

/**
 * Converts one M4A as job `job-<name>` through a converter whose store is `wrap` around a file
 * store, and returns what happened once the job is converted.
 */
async function convertThroughStore(
  name: string,
  wrap: (store: BlobStore) => BlobStore & { failedPuts: number },
) {
  const captured = capturingLogger();
  const ownBroker = await openBroker("memory:", { logger: captured.logger });
  const storageUrl = `file:${join(dir, `${name}-files`)}`;
  const fileStore = await openBlobStore(storageUrl, { logger: captured.logger });
  const wrapped = wrap(fileStore);
  const config = readConverterConfig({
    BROKER_URL: "memory:",
    STORAGE_URL: storageUrl,
    HEALTH_PORT: "0",
    WORK_DIR: workDir,
  });
  const service = await startConverter(config, {
    broker: ownBroker,
    store: wrapped,
    logger: captured.logger,
  });
  const states: string[] = [];
  try {
    await ownBroker.consume(
      config.jobEventsQueue,
      async (delivery) => {
        states.push(decodeMessage(JobEventSchema, delivery.body).state);
        return "ack";
      },
      { prefetch: 10 },
    );
    await fileStore.put("videos", createReadStream(media.m4aAudioOnly), {
      id: `video-${name}`,
      filename: "voice.m4a",
      contentType: "audio/mp4",
    });
    const message = videoMessage(`job-${name}`, `video-${name}`, "voice.m4a");
    await ownBroker.publish("video", encodeMessage(message), { messageId: message.job_id });
    await waitFor("converted event", () => states.includes("converted"));
    const mp3 = await fileStore.stat("mp3s", `job-${name}`);
    return { states, failedPuts: wrapped.failedPuts, lines: captured.lines, mp3 };
  } finally {
    await service.stop();
    await ownBroker.close();
    await fileStore.close();
  }
}

test("invisible existing mp3 is put again", async () => {
  const run = await convertThroughStore("claimed", storeClaimingFirstMp3);

  expect(run.failedPuts).toBe(1);
  expect(run.states).toEqual(["converting", "converted"]);
  expect(run.mp3).not.toBeNull();
});

test("mp3 orphan of a crashed put is taken over", async () => {
  const name = "orphan";
  const run = await convertThroughStore(name, (store) => {
    // The file store's layout: a data file `<root>/mp3s/<id>` without its metadata file is what
    // a put killed before its rename leaves. It is 27 s old, so it turns stale within 3 s.
    const mp3Dir = join(dir, `${name}-files`, "mp3s");
    const orphanWritten = mkdir(mp3Dir, { recursive: true })
      .then(() => writeFile(join(mp3Dir, `job-${name}`), "half an mp3"))
      .then(() => {
        const then = new Date(Date.now() - 27_000);
        return utimes(join(mp3Dir, `job-${name}`), then, then);
      });
    const wrapper = { ...storeFailingFirstMp3Put(store), failedPuts: 0 };
    wrapper.put = async (...args: Parameters<BlobStore["put"]>) => {
      await orphanWritten;
      try {
        return await store.put(...args);
      } catch (error) {
        if (error instanceof BlobExistsError) wrapper.failedPuts += 1;
        throw error;
      }
    };
    return wrapper;
  });

  expect(run.failedPuts).toBeGreaterThan(0);
  expect(run.states).toEqual(["converting", "converted"]);
  expect(run.mp3?.size).toBeGreaterThan("half an mp3".length);
}, 60_000);

test("storage error requeues the message", async () => {
  const run = await convertThroughStore("flaky", storeFailingFirstMp3Put);

  expect(run.failedPuts).toBe(1);
  expect(run.states).toEqual(["converting", "converting", "converted"]);
  expect(run.mp3).not.toBeNull();
  const interrupted = run.lines.filter((line) =>
    String(line.msg).startsWith("conversion interrupted"),
  );
  expect(interrupted).toHaveLength(1);
  expect(interrupted[0]?.job_id).toBe("job-flaky");
});

test("stop after the drain requeues the job", async () => {
  const captured = capturingLogger();
  const ownBroker = await openBroker("memory:", { logger: captured.logger });
  const config = readConverterConfig({
    BROKER_URL: "memory:",
    STORAGE_URL: `file:${join(dir, "files")}`,
    HEALTH_PORT: "0",
    WORK_DIR: workDir,
    CONVERTER_DRAIN_SECONDS: "0",
  });
  const drainingService = await startConverter(config, {
    broker: ownBroker,
    store,
    logger: captured.logger,
  });
  try {
    const states: string[] = [];
    await ownBroker.consume(
      config.jobEventsQueue,
      async (delivery) => {
        states.push(decodeMessage(JobEventSchema, delivery.body).state);
        return "ack";
      },
      { prefetch: 10 },
    );
    await uploadVideo("video-drained", media.mp4MoovAtEnd, "drained.mp4");
    const message = videoMessage("job-drained", "video-drained", "drained.mp4");
    await ownBroker.publish("video", encodeMessage(message), { messageId: message.job_id });
    await waitFor("converting event", () => states.includes("converting"));

    await drainingService.stop();

    expect(states).toEqual(["converting"]);
    expect(await store.stat("mp3s", "job-drained")).toBeNull();
    const stopped = captured.lines.filter((line) =>
      String(line.msg).startsWith("conversions still running after the drain time"),
    );
    expect(stopped).toHaveLength(1);
    const redelivered: Delivery[] = [];
    await ownBroker.consume(
      "video",
      async (delivery) => {
        redelivered.push(delivery);
        return "ack";
      },
      { prefetch: 1 },
    );
    await waitFor("redelivery", () => redelivered.length === 1);
    expect(redelivered[0]?.messageId).toBe("job-drained");
    expect(redelivered[0]?.redelivered).toBe(true);
  } finally {
    await drainingService.stop();
    await ownBroker.close();
  }
});

test("stop ends the wait for a taken mp3 id", async () => {
  const captured = capturingLogger();
  const ownBroker = await openBroker("memory:", { logger: captured.logger });
  const config = readConverterConfig({
    BROKER_URL: "memory:",
    STORAGE_URL: `file:${join(dir, "files")}`,
    HEALTH_PORT: "0",
    WORK_DIR: workDir,
    CONVERTER_DRAIN_SECONDS: "0",
  });
  // Every MP3 put finds the id taken and the blob never becomes visible, as with a fresh orphan.
  const takenStore = storeFailingFirstMp3Put(store);
  takenStore.put = async (...args: Parameters<BlobStore["put"]>) => {
    if (args[0] === "mp3s") throw new BlobExistsError("mp3s", args[2].id ?? "");
    return store.put(...args);
  };
  const service = await startConverter(config, {
    broker: ownBroker,
    store: takenStore,
    logger: captured.logger,
  });
  try {
    await uploadVideo("video-taken", media.m4aAudioOnly, "taken.m4a");
    const message = videoMessage("job-taken", "video-taken", "taken.m4a");
    await ownBroker.publish("video", encodeMessage(message), { messageId: message.job_id });
    await waitFor("wait for the taken id", () =>
      captured.lines.some((line) => String(line.msg).startsWith("mp3 id is taken")),
    );

    const started = Date.now();
    await service.stop();

    expect(Date.now() - started).toBeLessThan(10_000);
    const interrupted = captured.lines.filter((line) =>
      String(line.msg).startsWith("conversion interrupted"),
    );
    expect(interrupted).toHaveLength(1);
    expect(interrupted[0]?.job_id).toBe("job-taken");
  } finally {
    await service.stop();
    await ownBroker.close();
  }
}, 30_000);
