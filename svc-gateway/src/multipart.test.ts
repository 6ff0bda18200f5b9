import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBlobStore } from "@mp3converter/lib/adapters/storage";
import { AppError } from "@mp3converter/lib/errors";
import { createLogger } from "@mp3converter/lib/log";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import { receiveSingleFile } from "./multipart.ts";
import { PART_HEADER_MAX_BYTES, PartScanner } from "./multipart-delimiters.ts";
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

function receive(body: Uint8Array | null, chunkBytes = 64 * 1024, contentType = MULTIPART_TYPE) {
  const request = new Request("http://localhost/upload", {
    method: "POST",
    headers: { "content-type": contentType },
    body: body === null ? null : chunked(body, chunkBytes),
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
  return rawBodyWith(BOUNDARY, parts);
}

function rawBodyWith(boundary: string, parts: string[]): Uint8Array {
  const text = parts.map((part) => `--${boundary}\r\n${part}\r\n`).join("");
  return new TextEncoder().encode(`${text}--${boundary}--\r\n`);
}

/** A well-formed file part, to put beside a malformed one. */
const FILE_PART =
  'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nvideo bytes';

/** Returns `details.reason` of a form rejection. */
function reasonOf(error: AppError): unknown {
  return (error.details as { reason?: unknown } | undefined)?.reason;
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

  const besideFile: Array<[string, string[]]> = [
    ["no Content-Disposition after the file", [FILE_PART, "Content-Type: text/plain\r\n\r\nx"]],
    ["no Content-Disposition before the file", ["Content-Type: text/plain\r\n\r\nx", FILE_PART]],
    [
      "an unescaped quote after the file",
      [FILE_PART, 'Content-Disposition: form-data; name="a"b"\r\n\r\nx'],
    ],
    [
      "a disposition other than form-data",
      [FILE_PART, 'Content-Disposition: attachment; name="a"\r\n\r\nx'],
    ],
  ];

  test.each(besideFile)("%s is malformed", async (_case, parts) => {
    for (const chunkBytes of [1, 7, 64 * 1024]) {
      const error = await rejection(receive(rawBody(...parts), chunkBytes));

      expect(error.code).toBe("invalid_argument");
      expect(reasonOf(error)).toBe("malformed_part");
      expect(error.message).toContain(MALFORMED_HEADER);
      expect(await readdir(join(dir, "videos"))).toEqual([]);
    }
  });

  test("characters after a delimiter are malformed", async () => {
    // busboy does not read a part whose delimiter line has transport padding or other bytes.
    const text =
      `--${BOUNDARY}\r\n${FILE_PART}\r\n--${BOUNDARY}  \r\n` +
      'Content-Disposition: form-data; name="title"\r\n\r\ntalk\r\n' +
      `--${BOUNDARY}--\r\n`;
    const error = await rejection(receive(new TextEncoder().encode(text), 3));

    expect(reasonOf(error)).toBe("malformed_part");
    expect(await readdir(join(dir, "videos"))).toEqual([]);
  });

  test("bad header line after the file is malformed", async () => {
    const error = await rejection(receive(rawBody(FILE_PART, "Not a header line\r\n\r\nx")));

    expect(reasonOf(error)).toBe("malformed_part");
    expect(error.message).toContain("malformed header block");
    expect(await readdir(join(dir, "videos"))).toEqual([]);
  });

  test.each([
    ["after the file part", `--${BOUNDARY}\r\n${FILE_PART}\r\n`],
    ["after a delimiter", `--${BOUNDARY}\r\n${FILE_PART}\r\n--${BOUNDARY}\r\n`],
    ["inside the close delimiter", `--${BOUNDARY}\r\n${FILE_PART}\r\n--${BOUNDARY}-`],
  ])("body ending %s is incomplete", async (_case, text) => {
    const error = await rejection(receive(new TextEncoder().encode(text), 5));

    expect(error.code).toBe("invalid_argument");
    expect(reasonOf(error)).toBe("incomplete_body");
    expect(error.message).toContain("close delimiter");
    expect(await readdir(join(dir, "videos"))).toEqual([]);
  });

  test.each([
    ["a text field", ["Content-Disposition: form-data\r\n\r\nx", FILE_PART]],
    ["a file part", ['Content-Disposition: form-data; filename="a.mp4"\r\n\r\nvideo bytes']],
    ["an empty name", [FILE_PART, 'Content-Disposition: form-data; name=""\r\n\r\nx']],
  ])("part without a name is rejected: %s", async (_case, parts) => {
    const error = await rejection(receive(rawBody(...parts)));

    expect(error.code).toBe("invalid_argument");
    expect(reasonOf(error)).toBe("unnamed_part");
    expect(await readdir(join(dir, "videos"))).toEqual([]);
  });

  test("text field over the size limit is rejected", async () => {
    const longField = `Content-Disposition: form-data; name="title"\r\n\r\n${"x".repeat(1025)}`;
    const error = await rejection(receive(rawBody(FILE_PART, longField)));

    expect(reasonOf(error)).toBe("field_too_long");
    expect(error.message).toContain('"title"');
    expect(await readdir(join(dir, "videos"))).toEqual([]);
  });

  test("text field of exactly the size limit is accepted", async () => {
    const field = `Content-Disposition: form-data; name="title"\r\n\r\n${"x".repeat(1024)}`;
    const received = await receive(rawBody(field, FILE_PART));

    expect(received.blob.size).toBe("video bytes".length);
  });

  test("file in base64 transfer encoding is rejected", async () => {
    const encoded =
      'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n' +
      "Content-Transfer-Encoding: base64\r\n\r\ndmlkZW8gYnl0ZXM=";
    const error = await rejection(receive(rawBody(encoded)));

    expect(reasonOf(error)).toBe("unsupported_encoding");
    expect(await readdir(join(dir, "videos"))).toEqual([]);
  });

  test.each([
    ["binary then base64", ["binary", "base64"]],
    ["binary twice", ["binary", "binary"]],
    ["binary then a folded base64", ["binary", "\r\n base64"]],
  ])("repeated transfer encoding is rejected: %s", async (_case, encodings) => {
    const headers = encodings.map((encoding) => `Content-Transfer-Encoding: ${encoding}\r\n`);
    const part =
      'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n' +
      `${headers.join("")}\r\nvideo bytes`;
    for (const chunkBytes of [1, 7, 64 * 1024]) {
      const error = await rejection(receive(rawBody(part), chunkBytes));

      expect(reasonOf(error)).toBe("unsupported_encoding");
      expect(error.message).toContain("Content-Transfer-Encoding headers");
      expect(await readdir(join(dir, "videos"))).toEqual([]);
    }
  });

  test("repeated transfer encoding on a text field is ignored", async () => {
    const field =
      'Content-Disposition: form-data; name="title"\r\n' +
      "Content-Transfer-Encoding: binary\r\nContent-Transfer-Encoding: base64\r\n\r\ntalk";
    const received = await receive(rawBody(field, FILE_PART));

    expect(received.blob.size).toBe("video bytes".length);
  });

  test("binary transfer encoding is accepted", async () => {
    const binary =
      'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n' +
      "Content-Transfer-Encoding: binary\r\n\r\nvideo bytes";
    const received = await receive(rawBody(binary));

    expect(received.blob.size).toBe("video bytes".length);
  });

  test("preamble and epilogue are ignored", async () => {
    // The epilogue repeats the delimiter, which must not count as a part that busboy skipped.
    const text =
      `preamble\r\n--${BOUNDARY}\r\n${FILE_PART}\r\n--${BOUNDARY}--\r\n` +
      `epilogue\r\n--${BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--${BOUNDARY}--\r\n`;
    for (const chunkBytes of [1, 7, 64 * 1024]) {
      const received = await receive(new TextEncoder().encode(text), chunkBytes);

      expect(received.blob.size).toBe("video bytes".length);
    }
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

describe("receiveSingleFile boundary", () => {
  const ATTACHMENT_PART = 'Content-Disposition: attachment; name="a"\r\n\r\nx';

  test("boundary inside a quoted parameter is not used", async () => {
    // A pattern match on the raw header finds "zzz" inside x's value, counts no delimiters and
    // misses the part busboy skips.
    const contentType = 'multipart/form-data; x="; boundary=zzz"; boundary=XyZb0undary';
    const body = rawBodyWith("XyZb0undary", [FILE_PART, ATTACHMENT_PART]);
    for (const chunkBytes of [1, 7, 64 * 1024]) {
      const error = await rejection(receive(body, chunkBytes, contentType));

      expect(reasonOf(error)).toBe("malformed_part");
      expect(await readdir(join(dir, "videos"))).toEqual([]);
    }
  });

  test.each([
    ["a repeated boundary", "multipart/form-data; boundary=abc; boundary=abc", "more than one"],
    ["a repeat in other case", "multipart/form-data; boundary=abc; BOUNDARY=xyz", "more than one"],
    ["no boundary", "multipart/form-data; charset=utf-8", "no boundary"],
    ["an empty boundary", 'multipart/form-data; boundary=""', "empty"],
    ["a 71-character boundary", `multipart/form-data; boundary=${"b".repeat(71)}`, "71 char"],
    ["a character outside bchars", "multipart/form-data; boundary=a%b", "does not allow"],
    ["a quoted @", 'multipart/form-data; boundary="a@b"', "does not allow"],
    ["a trailing space", 'multipart/form-data; boundary="abc "', "ends with a space"],
    ["an unclosed quote", 'multipart/form-data; boundary="abc', "malformed"],
    ["space around =", "multipart/form-data; boundary = abc", "malformed"],
    ["a comma list", "multipart/form-data; boundary=abc, text/plain", "malformed"],
  ])("rejects %s", async (_case, contentType, problem) => {
    const body = rawBodyWith("abc", [FILE_PART]);
    const error = await rejection(receive(body, 64 * 1024, contentType));

    expect(error.code).toBe("invalid_argument");
    expect(reasonOf(error)).toBe("invalid_boundary");
    expect(error.message).toContain(problem);
    expect(await readdir(join(dir, "videos"))).toEqual([]);
  });

  const BCHARS = "0123456789abcXYZ'()+_,-./:= ?";
  test.each([
    ["a 70-character boundary", "b".repeat(70), `multipart/form-data; boundary=${"b".repeat(70)}`],
    ["every bchar", BCHARS, `multipart/form-data; boundary="${BCHARS}"`],
    ["an escaped letter", "abc", 'multipart/form-data; boundary="a\\bc"'],
    ["names and type in upper case", "abc", "Multipart/Form-Data; BOUNDARY=abc"],
    ["whitespace and empty parameters", "abc", "multipart/form-data ;; boundary=abc ;\t"],
    ["another quoted parameter first", "abc", 'multipart/form-data; x="a;b=\\"c"; boundary=abc'],
  ])("accepts %s", async (_case, boundary, contentType) => {
    const body = rawBodyWith(boundary, [FILE_PART, ATTACHMENT_PART]);
    // busboy and the delimiter count must agree on the boundary, so the skipped part is found.
    const error = await rejection(receive(body, 5, contentType));
    expect(reasonOf(error)).toBe("malformed_part");

    const received = await receive(rawBodyWith(boundary, [FILE_PART]), 5, contentType);
    expect(received.blob.size).toBe("video bytes".length);
  });

  test("request without a body is incomplete", async () => {
    const error = await rejection(receive(null));

    expect(reasonOf(error)).toBe("incomplete_body");
    expect(error.message).toContain("no body");
  });

  test("empty body is incomplete", async () => {
    const error = await rejection(receive(new Uint8Array(0)));

    expect(reasonOf(error)).toBe("incomplete_body");
  });
});

describe("PartScanner", () => {
  const body = rawBody(
    'Content-Disposition: form-data; name="title"\r\n\r\ntalk',
    'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nvideo bytes',
  );

  test.each([1, 2, 3, 17, body.length])("counts parts in chunks of %d bytes", (chunkBytes) => {
    const counter = new PartScanner(BOUNDARY);
    for (let offset = 0; offset < body.length; offset += chunkBytes) {
      counter.push(body.subarray(offset, offset + chunkBytes));
    }

    expect(counter.count).toBe(3);
    expect(counter.parts).toBe(2);
  });

  test.each([1, 2, 3, 17, body.length])(
    "stops at the close delimiter in %d-byte chunks",
    (size) => {
      const epilogue = new TextEncoder().encode(`\r\n--${BOUNDARY}\r\n--${BOUNDARY}--\r\n`);
      const whole = Buffer.concat([body, epilogue]);
      const counter = new PartScanner(BOUNDARY);
      for (let offset = 0; offset < whole.length; offset += size) {
        counter.push(whole.subarray(offset, offset + size));
      }

      expect(counter.closed).toBe(true);
      expect(counter.count).toBe(3);
      expect(counter.parts).toBe(2);
    },
  );

  test("waits for the bytes after a delimiter", () => {
    const counter = new PartScanner("xyz");
    counter.push(new TextEncoder().encode("--xyz\r\na\r\n--xyz"));

    expect(counter.count).toBe(1);
    counter.push(new TextEncoder().encode("-"));
    expect(counter.count).toBe(1);
    counter.push(new TextEncoder().encode("-"));
    expect(counter.count).toBe(2);
    expect(counter.closed).toBe(true);
  });

  test("counts a body without its close delimiter as open", () => {
    const counter = new PartScanner("xyz");
    counter.push(new TextEncoder().encode("--xyz\r\na\r\n--xyz\r\nb"));

    expect(counter.closed).toBe(false);
    expect(counter.parts).toBe(2);
  });

  test("ignores the boundary without its leading dashes", () => {
    const counter = new PartScanner("xyz");
    counter.push(new TextEncoder().encode("--xyz\r\n\r\nxyz -xyz\r\n-xyz\r\n--xyz--\r\n"));

    expect(counter.count).toBe(2);
  });
});

describe("PartScanner headers", () => {
  function scan(text: string, chunkBytes: number): PartScanner {
    const bytes = new TextEncoder().encode(text);
    const scanner = new PartScanner("xyz");
    for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
      scanner.push(bytes.subarray(offset, offset + chunkBytes));
    }
    return scanner;
  }

  test.each([1, 2, 3, 5, 1000])("reads each part's headers in %d-byte chunks", (chunkBytes) => {
    const scanner = scan(
      "--xyz\r\nContent-Disposition: form-data; name=a\r\nX-Long:  one\r\n\ttwo\r\n\r\n" +
        "body\r\n\r\nA: not a header\r\n--xyz\r\n\r\nno headers\r\n--xyz\r\nB:1\r\n\r\n\r\n--xyz--",
      chunkBytes,
    );

    expect(scanner.parts).toBe(3);
    expect(scanner.headersOf(0)).toEqual([
      { name: "content-disposition", value: "form-data; name=a" },
      { name: "x-long", value: "one two" },
    ]);
    expect(scanner.headersOf(1)).toEqual([]);
    expect(scanner.headersOf(2)).toEqual([{ name: "b", value: "1" }]);
  });

  test("leaves a header block without its end undefined", () => {
    const scanner = scan("--xyz\r\nA: 1\r\n--xyz\r\nB: 2\r\n\r\nx\r\n--xyz--", 4);

    expect(scanner.headersOf(0)).toBeUndefined();
    expect(scanner.headersOf(1)).toEqual([{ name: "b", value: "2" }]);
  });

  test("leaves a header block over 16 KiB undefined", () => {
    const long = `A: ${"x".repeat(PART_HEADER_MAX_BYTES)}\r\nContent-Transfer-Encoding: base64`;
    const scanner = scan(`--xyz\r\n${long}\r\n\r\nx\r\n--xyz--`, 1000);

    expect(scanner.parts).toBe(1);
    expect(scanner.headersOf(0)).toBeUndefined();
  });
});
