import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBlobStore } from "@mp3converter/lib/adapters/storage";
import { AppError } from "@mp3converter/lib/errors";
import { createLogger } from "@mp3converter/lib/log";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import { receiveSingleFile } from "./multipart.ts";
import { boundaryOf, DelimiterCounter } from "./multipart-delimiters.ts";
import { BOUNDARY, MULTIPART_TYPE, multipartBody } from "./test-helpers.ts";

const logger = createLogger({ service: "multipart-test", level: "silent" });
const MALFORMED_HEADER = "Content-Disposition header is missing or malformed";
const NO_FILE_PART = 'The form has no file part named "file".';

let dir: string;
let store: BlobStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mp3c-multipart-"));
  store = await openBlobStore(`file:${dir}`, { logger });
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** Streams `bytes` in chunks of `chunkBytes`, to split headers and delimiters anywhere. */
function chunked(bytes: Uint8Array, chunkBytes: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunkBytes));
      offset += chunkBytes;
    },
  });
}

function receive(body: Uint8Array, chunkBytes = 64 * 1024) {
  const request = new Request("http://localhost/upload", {
    method: "POST",
    headers: { "content-type": MULTIPART_TYPE },
    body: chunked(body, chunkBytes),
    duplex: "half",
  } as RequestInit);
  return receiveSingleFile(request, {
    store,
    bucket: "videos",
    maxBytes: 1024 * 1024,
    log: logger,
  });
}

/** Returns the AppError that `promise` rejects with, and throws on any other outcome. */
async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof AppError)) throw new Error(`expected an AppError, got ${error}`);
  return error;
}

/** Builds a body of raw text parts, each given with its complete header block. */
function rawBody(...parts: string[]): Uint8Array {
  const text = parts.map((part) => `--${BOUNDARY}\r\n${part}\r\n`).join("");
  return new TextEncoder().encode(`${text}--${BOUNDARY}--\r\n`);
}

describe("receiveSingleFile", () => {
  test.each([1, 7, 64 * 1024])(
    "unescaped filename quote is malformed (%d-byte chunks)",
    async (chunkBytes) => {
      const body = rawBody(
        'Content-Disposition: form-data; name="file"; filename="a"b.mp4"\r\n\r\nvideo bytes',
      );
      const error = await rejection(receive(body, chunkBytes));

      expect(error.code).toBe("invalid_argument");
      expect(error.message).toContain(MALFORMED_HEADER);
      expect(error.message).not.toContain(NO_FILE_PART);
      expect(await readdir(join(dir, "videos"))).toEqual([]);
    },
  );

  test("missing Content-Disposition is malformed", async () => {
    const body = rawBody("Content-Type: video/mp4\r\n\r\nvideo bytes");
    const error = await rejection(receive(body));

    expect(error.code).toBe("invalid_argument");
    expect(error.message).toContain(MALFORMED_HEADER);
  });

  test("text field alone means no file part", async () => {
    const body = multipartBody([{ name: "title", content: "talk" }]);
    const error = await rejection(receive(body));

    expect(error.code).toBe("invalid_argument");
    expect(error.message).toContain(NO_FILE_PART);
    expect(error.message).not.toContain(MALFORMED_HEADER);
  });

  test("escaped quote in filename is accepted", async () => {
    const body = rawBody(
      'Content-Disposition: form-data; name="file"; filename="a\\"b.mp4"\r\n\r\nvideo bytes',
    );
    const received = await receive(body, 5);

    expect(received.filename).toBe('a"b.mp4');
    expect(received.blob.size).toBe("video bytes".length);
  });
});

describe("DelimiterCounter", () => {
  const body = rawBody(
    'Content-Disposition: form-data; name="title"\r\n\r\ntalk',
    'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nvideo bytes',
  );

  test.each([1, 2, 3, 17, body.length])("counts parts in chunks of %d bytes", (chunkBytes) => {
    const counter = new DelimiterCounter(BOUNDARY);
    for (let offset = 0; offset < body.length; offset += chunkBytes) {
      counter.push(body.subarray(offset, offset + chunkBytes));
    }

    expect(counter.count).toBe(3);
    expect(counter.parts).toBe(2);
  });

  test("ignores the boundary without its leading dashes", () => {
    const counter = new DelimiterCounter("xyz");
    counter.push(new TextEncoder().encode("--xyz\r\n\r\nxyz -xyz\r\n-xyz\r\n--xyz--\r\n"));

    expect(counter.count).toBe(2);
  });
});

describe("boundaryOf", () => {
  test.each([
    ["multipart/form-data; boundary=abc", "abc"],
    ["multipart/form-data;boundary=abc; charset=utf-8", "abc"],
    ['multipart/form-data; BOUNDARY="a b\\"c"', 'a b"c'],
    ["multipart/form-data", undefined],
  ])("reads %j", (contentType, boundary) => {
    expect(boundaryOf(contentType)).toBe(boundary);
  });
});
