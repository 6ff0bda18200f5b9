import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { MongoClient } from "mongodb";
import { createLogger } from "../log.ts";
import {
  BlobExistsError,
  type BlobStore,
  BlobTooLargeError,
  InvalidBlobIdError,
  type OpenedBlob,
} from "../ports/storage.ts";
import { fileStoreRoot } from "./file-store.ts";
import { databaseFromUrl } from "./gridfs-store.ts";
import { openBlobStore } from "./storage.ts";

const logger = createLogger({ service: "storage-test", level: "silent" });
const MiB = 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;

/** Byte at `offset` of the generated test content; cheap to recompute for any range. */
function patternByte(offset: number): number {
  return (offset * 131 + (offset >>> 11) * 7 + 13) & 0xff;
}

function patternBytes(start: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = patternByte(start + i);
  return bytes;
}

/** Generates `size` bytes of pattern content in chunks, so no test keeps a whole blob in memory. */
async function* generated(size: number, progress?: { pulled: number }) {
  for (let offset = 0; offset < size; offset += CHUNK_BYTES) {
    const chunk = patternBytes(offset, Math.min(CHUNK_BYTES, size - offset));
    if (progress) progress.pulled += chunk.byteLength;
    yield chunk;
  }
}

async function* failingAfter(bytes: number) {
  yield* generated(bytes);
  throw new Error("source failed mid-stream");
}

function sha256OfPattern(size: number): string {
  const hash = createHash("sha256");
  for (let offset = 0; offset < size; offset += CHUNK_BYTES) {
    hash.update(patternBytes(offset, Math.min(CHUNK_BYTES, size - offset)));
  }
  return hash.digest("hex");
}

async function sha256OfStream(stream: ReadableStream<Uint8Array>): Promise<[string, number]> {
  const hash = createHash("sha256");
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hash.update(value);
    size += value.byteLength;
  }
  return [hash.digest("hex"), size];
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Returns the stream of an opened blob, failing the test when the blob is missing. */
function streamOf(opened: OpenedBlob | null): ReadableStream<Uint8Array> {
  if (!opened) throw new Error("expected the blob to exist");
  return opened.stream;
}

function testId(): string {
  return `t-${randomBytes(8).toString("hex")}`;
}

const HOSTILE_IDS = [
  "",
  ".",
  "..",
  "../escape",
  "a/b",
  "a\\b",
  "/etc/passwd",
  "a\0b",
  "a b",
  "ä",
  "%2e%2e",
  "x".repeat(129),
];

interface ContractTarget {
  open(): Promise<BlobStore>;
  /** Files of writes in progress, for stores that keep them; checked to be empty after failures. */
  partialFiles?(): Promise<string[]>;
}

function blobStoreContract(target: ContractTarget) {
  let store: BlobStore;

  beforeEach(async () => {
    store = await target.open();
  });

  afterEach(async () => {
    await store.close();
  });

  async function expectNoPartials() {
    if (target.partialFiles) expect(await target.partialFiles()).toEqual([]);
  }

  test("round trip of a streamed multi-MiB blob", async () => {
    const size = 5 * MiB + 123;
    const id = testId();
    const info = await store.put("videos", generated(size), {
      id,
      filename: "clip ä.mp4",
      contentType: "video/mp4",
    });
    expect(info.id).toBe(id);
    expect(info.size).toBe(size);

    const stat = await store.stat("videos", id);
    expect(stat?.size).toBe(size);
    expect(stat?.filename).toBe("clip ä.mp4");
    expect(stat?.contentType).toBe("video/mp4");
    expect(stat?.bucket).toBe("videos");
    expect(stat?.createdAt).toBeInstanceOf(Date);

    const opened = await store.open("videos", id);
    expect(opened?.info.size).toBe(size);
    const [digest, read] = await sha256OfStream(streamOf(opened));
    expect(read).toBe(size);
    expect(digest).toBe(sha256OfPattern(size));
  });

  test("put without id makes a random URL-safe id", async () => {
    const first = await store.put("mp3s", generated(10), {
      filename: "a",
      contentType: "audio/mpeg",
    });
    const second = await store.put("mp3s", generated(10), {
      filename: "b",
      contentType: "audio/mpeg",
    });
    expect(first.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(second.id).not.toBe(first.id);
    expect((await store.stat("mp3s", first.id))?.size).toBe(10);
  });

  test("buckets are separate", async () => {
    const id = testId();
    await store.put("videos", generated(10), { id, filename: "v", contentType: "video/mp4" });
    expect(await store.stat("mp3s", id)).toBeNull();
    expect(await store.open("mp3s", id)).toBeNull();
  });

  test("open reads the requested ranges", async () => {
    const size = 3 * MiB + 7;
    const id = testId();
    await store.put("videos", generated(size), { id, filename: "r", contentType: "video/mp4" });
    const cases = [
      { name: "first byte", start: 0, end: 0 },
      { name: "last byte", start: size - 1, end: size - 1 },
      { name: "middle slice across chunks", start: CHUNK_BYTES - 5, end: 2 * MiB + 17 },
      { name: "whole blob", start: 0, end: size - 1 },
    ];
    for (const range of cases) {
      const opened = await store.open("videos", id, { start: range.start, end: range.end });
      expect(opened?.info.size).toBe(size);
      const bytes = await readAll(streamOf(opened));
      const expected = patternBytes(range.start, range.end - range.start + 1);
      expect({ range: range.name, length: bytes.length }).toEqual({
        range: range.name,
        length: expected.length,
      });
      expect(Buffer.from(bytes).equals(Buffer.from(expected))).toBe(true);
    }
  });

  test("empty blob round trip", async () => {
    const id = testId();
    const info = await store.put("mp3s", generated(0), {
      id,
      filename: "e",
      contentType: "audio/mpeg",
    });
    expect(info.size).toBe(0);
    const opened = await store.open("mp3s", id);
    expect((await readAll(streamOf(opened))).length).toBe(0);
  });

  test("size limit rejects and leaves nothing", async () => {
    const id = testId();
    const maxBytes = MiB;
    const progress = { pulled: 0 };
    const put = store.put("videos", generated(4 * MiB, progress), {
      id,
      filename: "big",
      contentType: "video/mp4",
      maxBytes,
    });
    await expect(put).rejects.toBeInstanceOf(BlobTooLargeError);
    // The put stops pulling as soon as the limit is passed.
    expect(progress.pulled).toBeLessThanOrEqual(maxBytes + CHUNK_BYTES);
    expect(await store.stat("videos", id)).toBeNull();
    expect(await store.open("videos", id)).toBeNull();
    await expectNoPartials();
  });

  test("size limit accepts exactly maxBytes", async () => {
    const id = testId();
    const info = await store.put("videos", generated(MiB), {
      id,
      filename: "exact",
      contentType: "video/mp4",
      maxBytes: MiB,
    });
    expect(info.size).toBe(MiB);
  });

  test("source error mid-stream leaves nothing", async () => {
    const id = testId();
    const put = store.put("videos", failingAfter(2 * MiB), {
      id,
      filename: "broken",
      contentType: "video/mp4",
    });
    await expect(put).rejects.toThrow("source failed mid-stream");
    expect(await store.stat("videos", id)).toBeNull();
    expect(await store.open("videos", id)).toBeNull();
    await expectNoPartials();
    // The id is free again, so a retry of the same upload succeeds.
    const retry = await store.put("videos", generated(100), {
      id,
      filename: "retry",
      contentType: "video/mp4",
    });
    expect(retry.size).toBe(100);
  });

  test("delete removes a blob once", async () => {
    const id = testId();
    await store.put("mp3s", generated(1000), { id, filename: "d", contentType: "audio/mpeg" });
    expect(await store.delete("mp3s", id)).toBe(true);
    expect(await store.stat("mp3s", id)).toBeNull();
    expect(await store.open("mp3s", id)).toBeNull();
    expect(await store.delete("mp3s", id)).toBe(false);
  });

  test("unknown id returns null", async () => {
    const id = testId();
    expect(await store.stat("videos", id)).toBeNull();
    expect(await store.open("videos", id)).toBeNull();
    expect(await store.open("videos", id, { start: 0, end: 0 })).toBeNull();
    expect(await store.delete("videos", id)).toBe(false);
  });

  test("hostile ids are rejected", async () => {
    for (const id of HOSTILE_IDS) {
      const options = { id, filename: "h", contentType: "video/mp4" };
      await expect(store.put("videos", generated(10), options)).rejects.toBeInstanceOf(
        InvalidBlobIdError,
      );
      await expect(store.stat("videos", id)).rejects.toBeInstanceOf(InvalidBlobIdError);
      await expect(store.open("videos", id)).rejects.toBeInstanceOf(InvalidBlobIdError);
      await expect(store.delete("videos", id)).rejects.toBeInstanceOf(InvalidBlobIdError);
    }
    await expectNoPartials();
  });

  test("put of an existing id raises BlobExistsError", async () => {
    const id = testId();
    await store.put("mp3s", generated(500), { id, filename: "one", contentType: "audio/mpeg" });
    const again = store.put("mp3s", generated(900), {
      id,
      filename: "two",
      contentType: "audio/mpeg",
    });
    await expect(again).rejects.toBeInstanceOf(BlobExistsError);
    const stat = await store.stat("mp3s", id);
    expect(stat?.size).toBe(500);
    expect(stat?.filename).toBe("one");
    await expectNoPartials();
  });

  test("concurrent puts of different ids", async () => {
    const blobs = [
      { id: testId(), size: 2 * MiB + 1 },
      { id: testId(), size: MiB + 3 },
    ];
    const infos = await Promise.all(
      blobs.map(({ id, size }) =>
        store.put("videos", generated(size), { id, filename: id, contentType: "video/mp4" }),
      ),
    );
    for (const [i, { id, size }] of blobs.entries()) {
      expect(infos[i]?.size).toBe(size);
      const opened = await store.open("videos", id);
      const [digest] = await sha256OfStream(streamOf(opened));
      expect(digest).toBe(sha256OfPattern(size));
    }
  });

  test("concurrent puts of one id: one wins", async () => {
    const id = testId();
    const results = await Promise.allSettled([
      store.put("mp3s", generated(MiB), { id, filename: "a", contentType: "audio/mpeg" }),
      store.put("mp3s", generated(MiB), { id, filename: "b", contentType: "audio/mpeg" }),
    ]);
    const fulfilled = results.filter((r) => r.status === "fulfilled");
    const rejected = results.filter((r) => r.status === "rejected");
    expect(fulfilled.length).toBe(1);
    expect(rejected.length).toBe(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(BlobExistsError);
    const opened = await store.open("mp3s", id);
    const [digest] = await sha256OfStream(streamOf(opened));
    expect(digest).toBe(sha256OfPattern(MiB));
    await expectNoPartials();
  });

  test("ping resolves", async () => {
    await store.ping();
  });

  test("blob, when offered, has the range's bytes", async () => {
    const size = 2 * MiB + 9;
    const id = testId();
    await store.put("mp3s", generated(size), { id, filename: "b", contentType: "audio/mpeg" });
    const cases = [
      { start: 0, end: size - 1 },
      { start: CHUNK_BYTES - 3, end: CHUNK_BYTES + 3 },
      { start: size - 1, end: size - 1 },
    ];
    for (const range of cases) {
      const opened = await store.open("mp3s", id, range);
      if (!opened?.blob) continue;
      const length = range.end - range.start + 1;
      expect({ range, size: opened.blob.size }).toEqual({ range, size: length });
      const bytes = new Uint8Array(await opened.blob.arrayBuffer());
      expect(Buffer.from(bytes).equals(Buffer.from(patternBytes(range.start, length)))).toBe(true);
    }
  });
}

/** Returns the number of open file descriptors of this process (Linux only). */
async function openFileCount(): Promise<number> {
  return (await readdir("/proc/self/fd")).length;
}

const hasProcFd = await readdir("/proc/self/fd").then(
  () => true,
  () => false,
);

describe("file blob store contract", () => {
  let parent: string;
  let root: string;

  beforeEach(async () => {
    parent = await mkdtemp(path.join(tmpdir(), "mp3converter-store-"));
    root = path.join(parent, "files");
  });

  afterEach(async () => {
    // Nothing may appear next to the root, whatever ids the tests used.
    expect(await readdir(parent)).toEqual(["files"]);
    await rm(parent, { recursive: true, force: true });
  });

  blobStoreContract({
    open: () => openBlobStore(`file:${root}`, { logger }),
    partialFiles: () => readdir(path.join(root, ".partial")),
  });
});

describe("file blob store", () => {
  let parent: string;

  beforeEach(async () => {
    parent = await mkdtemp(path.join(tmpdir(), "mp3converter-store-"));
  });

  afterEach(async () => {
    await rm(parent, { recursive: true, force: true });
  });

  test("lays out data and metadata files", async () => {
    const store = await openBlobStore(`file://${parent}`, { logger });
    await store.put("mp3s", generated(42), {
      id: "job-1",
      filename: "a",
      contentType: "audio/mpeg",
    });
    expect((await readdir(path.join(parent, "mp3s"))).sort()).toEqual(["job-1", "job-1.json"]);
    await store.close();
  });

  test("open sweeps stale partial and orphan files", async () => {
    // Older than the stale bound of 30 s, and younger than an hour.
    const old = new Date(Date.now() - 2 * 60 * 1000);
    await mkdir(path.join(parent, ".partial"), { recursive: true });
    await mkdir(path.join(parent, "videos"), { recursive: true });
    await writeFile(path.join(parent, ".partial", "stale"), "x");
    await utimes(path.join(parent, ".partial", "stale"), old, old);
    await writeFile(path.join(parent, ".partial", "fresh"), "x");
    await writeFile(path.join(parent, "videos", "old-orphan"), "x");
    await utimes(path.join(parent, "videos", "old-orphan"), old, old);
    // A data file without metadata whose modification time is recent may belong to a live put.
    await writeFile(path.join(parent, "videos", "recent-orphan"), "x");

    const store = await openBlobStore(`file:${parent}`, { logger });
    expect(await readdir(path.join(parent, ".partial"))).toEqual(["fresh"]);
    expect(await readdir(path.join(parent, "videos"))).toEqual(["recent-orphan"]);
    await store.close();
  });

  test("put takes over a stale orphan", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    // What a crash between the claim and the metadata rename leaves behind.
    const orphan = path.join(parent, "mp3s", "job-1");
    await writeFile(orphan, "left by a crashed put");
    const old = new Date(Date.now() - 2 * 60 * 1000);
    await utimes(orphan, old, old);

    const info = await store.put("mp3s", generated(1000), {
      id: "job-1",
      filename: "a.mp3",
      contentType: "audio/mpeg",
    });
    expect(info.size).toBe(1000);
    expect((await store.stat("mp3s", "job-1"))?.size).toBe(1000);
    const [hash, size] = await sha256OfStream(streamOf(await store.open("mp3s", "job-1")));
    expect(size).toBe(1000);
    expect(hash).toBe(sha256OfPattern(1000));
    expect(await readdir(path.join(parent, ".partial"))).toEqual([]);
    await store.close();
  });

  test("put keeps a recent orphan", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    // A data file without metadata and a fresh modification time may be a live put's claim.
    await writeFile(path.join(parent, "mp3s", "job-2"), "claimed by a live put");
    const put = store.put("mp3s", generated(10), {
      id: "job-2",
      filename: "a.mp3",
      contentType: "audio/mpeg",
    });
    await expect(put).rejects.toBeInstanceOf(BlobExistsError);
    expect(await readdir(path.join(parent, "mp3s"))).toEqual(["job-2"]);
    await store.close();
  });

  test("concurrent takeovers of one orphan: one wins", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    const orphan = path.join(parent, "mp3s", "job-3");
    await writeFile(orphan, "left by a crashed put");
    const old = new Date(Date.now() - 2 * 60 * 1000);
    await utimes(orphan, old, old);

    const options = { id: "job-3", filename: "a.mp3", contentType: "audio/mpeg" };
    const results = await Promise.allSettled([
      store.put("mp3s", generated(100), options),
      store.put("mp3s", generated(200), options),
    ]);
    const won = results.filter((result) => result.status === "fulfilled");
    const lost = results.filter((result) => result.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(BlobExistsError);
    const size = (won[0] as PromiseFulfilledResult<{ size: number }>).value.size;
    const [, readSize] = await sha256OfStream(streamOf(await store.open("mp3s", "job-3")));
    expect(readSize).toBe(size);
    await store.close();
  });

  test("stalled put keeps its partial file", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    const partialDir = path.join(parent, ".partial");
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    async function* stalled() {
      yield patternBytes(0, 10);
      await released;
      yield patternBytes(10, 10);
    }
    const put = store.put("videos", stalled(), {
      id: "slow",
      filename: "s",
      contentType: "video/mp4",
    });
    try {
      let names: string[] = [];
      while (names.length === 0) {
        names = await readdir(partialDir);
        await Bun.sleep(10);
      }
      const partial = path.join(partialDir, names[0] ?? "");
      const old = new Date(Date.now() - 2 * 60 * 1000);
      await utimes(partial, old, old);
      // The put touches its file every 5 s although the source sends nothing.
      const deadline = Date.now() + 10_000;
      while ((await stat(partial)).mtimeMs < Date.now() - 60_000 && Date.now() < deadline) {
        await Bun.sleep(100);
      }
      expect((await stat(partial)).mtimeMs).toBeGreaterThan(Date.now() - 60_000);

      // A second store on the same root sweeps at open, as a restarted process would.
      const other = await openBlobStore(`file:${parent}`, { logger });
      await other.close();
      expect(await readdir(partialDir)).toEqual(names);
    } finally {
      release();
    }
    expect((await put).size).toBe(20);
    expect(await readdir(partialDir)).toEqual([]);
    await store.close();
  });

  test("rejects ids ending in .json", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    const put = store.put("videos", generated(1), {
      id: "a.json",
      filename: "a",
      contentType: "video/mp4",
    });
    await expect(put).rejects.toBeInstanceOf(InvalidBlobIdError);
    await store.close();
  });

  test("offers the bytes as a Blob on Bun", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    await store.put("mp3s", generated(1000), { id: "b", filename: "b", contentType: "audio/mpeg" });

    const opened = await store.open("mp3s", "b", { start: 10, end: 19 });
    expect(opened?.blob?.size).toBe(10);
    const bytes = Buffer.from((await opened?.blob?.arrayBuffer()) ?? new ArrayBuffer(0));
    expect(bytes.equals(Buffer.from(patternBytes(10, 10)))).toBe(true);
    await store.close();
  });

  test.skipIf(!hasProcFd)("unread opens hold no file", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    await store.put("mp3s", generated(MiB), { id: "f", filename: "f", contentType: "audio/mpeg" });
    const before = await openFileCount();

    const unread = [];
    for (let i = 0; i < 50; i++) unread.push(await store.open("mp3s", "f"));
    expect(await openFileCount()).toBe(before);

    for (const opened of unread.slice(0, 25)) await opened?.blob?.arrayBuffer();
    for (const opened of unread.slice(25)) await readAll(streamOf(opened));
    const reader = streamOf(await store.open("mp3s", "f")).getReader();
    await reader.read();
    await reader.cancel();
    expect(await openFileCount()).toBe(before);
    await store.close();
  });

  test("stream read goes on after a delete", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    const size = 4 * CHUNK_BYTES;
    await store.put("mp3s", generated(size), { id: "d", filename: "d", contentType: "audio/mpeg" });

    const reader = streamOf(await store.open("mp3s", "d")).getReader();
    const first = await reader.read();
    expect(await store.delete("mp3s", "d")).toBe(true);
    let read = first.value?.byteLength ?? 0;
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      read += chunk.value.byteLength;
    }
    expect(read).toBe(size);
    await store.close();
  });

  test("methods reject after close", async () => {
    const store = await openBlobStore(`file:${parent}`, { logger });
    await store.close();
    await expect(store.stat("videos", "a")).rejects.toThrow("is closed");
  });

  test("parses file: URL forms", () => {
    expect(fileStoreRoot("file:/srv/blobs")).toBe("/srv/blobs");
    expect(fileStoreRoot("file:///srv/my%20blobs")).toBe("/srv/my blobs");
    expect(fileStoreRoot("file:./.data/files")).toBe(path.resolve(".data/files"));
    expect(() => fileStoreRoot("file:")).toThrow("names no directory");
  });

  test("unknown scheme is rejected", async () => {
    await expect(openBlobStore("s3://bucket", { logger })).rejects.toThrow("s3: is not supported");
  });
});

const mongoUrl = process.env.MONGODB_URL;
if (!mongoUrl) {
  console.warn("GridFS blob store contract skipped: set MONGODB_URL to a MongoDB server to run it");
}

describe.skipIf(!mongoUrl)("GridFS blob store contract (set MONGODB_URL to run)", () => {
  // Each run uses its own database, dropped at the end.
  const database = `mp3converter_test_${randomBytes(6).toString("hex")}`;
  const url = new URL(mongoUrl ?? "mongodb://127.0.0.1");
  url.pathname = `/${database}`;

  afterAll(async () => {
    const client = await MongoClient.connect(url.toString());
    try {
      await client.db(database).dropDatabase();
    } finally {
      await client.close();
    }
  });

  blobStoreContract({
    open: () => openBlobStore(url.toString(), { logger }),
    // Chunks without a file document and claims left behind are the partial state of GridFS.
    partialFiles: async () => {
      const client = await MongoClient.connect(url.toString());
      try {
        const db = client.db(database);
        const leftovers: string[] = [];
        for (const bucket of ["videos", "mp3s"]) {
          const fileIds = await db.collection(`${bucket}.files`).distinct("_id");
          const chunkIds = await db.collection(`${bucket}.chunks`).distinct("files_id");
          const known = new Set(fileIds.map(String));
          for (const id of chunkIds) {
            if (!known.has(String(id))) leftovers.push(`${bucket}.chunks of ${id}`);
          }
          const claims = await db.collection(`${bucket}.uploads`).find().toArray();
          for (const claim of claims) leftovers.push(`${bucket}.uploads ${claim._id}`);
        }
        return leftovers;
      } finally {
        await client.close();
      }
    },
  });
});

describe("GridFS blob store without a server", () => {
  test("open rejects when nothing listens", async () => {
    // Port 1 on the loopback interface has no listener, so server selection fails at once.
    const url = "mongodb://127.0.0.1:1/mp3converter?serverSelectionTimeoutMS=300";
    await expect(openBlobStore(url, { logger })).rejects.toThrow("ECONNREFUSED");
  });
});

describe("MongoDB connection strings", () => {
  test("database comes from the path", () => {
    const cases: Array<[string, string]> = [
      ["mongodb://127.0.0.1:27017/media", "media"],
      ["mongodb://u:p%2Fw@h1:27017,h2:27017/media?replicaSet=rs0", "media"],
      ["mongodb+srv://cluster.example.com/media?retryWrites=true", "media"],
      ["mongodb://127.0.0.1:27017", "mp3converter"],
      ["mongodb://127.0.0.1:27017/", "mp3converter"],
      ["mongodb://127.0.0.1:27017/?authSource=admin", "mp3converter"],
    ];
    for (const [url, database] of cases)
      expect({ url, database: databaseFromUrl(url) }).toEqual({ url, database });
  });
});
