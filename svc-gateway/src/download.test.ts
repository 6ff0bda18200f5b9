/**
 * `GET /download` behind a real HTTP server, read from a raw socket so that the test checks the
 * framing the runtime chose (`Content-Length` or chunked), and its conditional requests.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { openBlobStore } from "@mp3converter/lib/adapters/storage";
import { httpDate } from "@mp3converter/lib/http-conditional";
import { createLogger } from "@mp3converter/lib/log";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import {
  createTokenVerifier,
  generateSigningKey,
  issueToken,
  loadSigningKeys,
} from "@mp3converter/lib/tokens";
import { readGatewayConfig } from "./config.ts";
import { blobValidators } from "./download.ts";
import { JobStore } from "./jobs-store.ts";
import { type RunningGateway, startGateway } from "./service.ts";
import { AUDIENCE, ISSUER } from "./test-helpers.ts";

/** Larger than one read of the file store, so a streamed body yields several chunks. */
const MP3_BYTES = 300 * 1024;
const mp3 = Uint8Array.from({ length: MP3_BYTES }, (_, i) => (i * 7 + 3) & 0xff);
const logger = createLogger({ service: "download-test", level: "silent" });

let dir: string;
let db: SqlDatabase;
let store: BlobStore;
let gateway: RunningGateway;
let token: string;
let fid: string;
let etag: string;
let lastModified: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mp3c-download-"));
  db = await openSqlDatabase("sqlite::memory:", { logger });
  store = await openBlobStore(`file:${join(dir, "files")}`, { logger });
  const keys = await loadSigningKeys({ keys: [await generateSigningKey()] });
  const config = readGatewayConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: "sqlite::memory:",
    STORAGE_URL: `file:${join(dir, "files")}`,
    BROKER_URL: "memory:",
    AUTH_URL: "http://127.0.0.1:9",
  });
  gateway = await startGateway(config, {
    db,
    store,
    logger,
    verifier: createTokenVerifier({ jwks: keys.publicJwks, issuer: ISSUER, audience: AUDIENCE }),
  });
  const signed = await issueToken(
    keys,
    { userId: "user-download", email: "download@example.com", admin: false },
    { issuer: ISSUER, audience: AUDIENCE, ttlSeconds: 3600 },
  );
  token = signed.token;

  fid = crypto.randomUUID();
  const jobs = new JobStore(db);
  await jobs.insert({
    id: fid,
    ownerId: "user-download",
    ownerEmail: "download@example.com",
    filename: "talk.mp4",
    videoFid: `video-${fid}`,
    requestId: "req-download",
    createdAt: Date.now(),
    publishLeaseUntil: 0,
  });
  const info = await store.put("mp3s", chunksOf(mp3), {
    id: fid,
    filename: "talk.mp3",
    contentType: "audio/mpeg",
  });
  await jobs.applyUpdate(fid, { state: "converted", mp3Fid: fid, durationS: 1, at: Date.now() });
  etag = blobValidators(info).etag;
  lastModified = httpDate(info.createdAt);
});

async function* chunksOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

afterAll(async () => {
  await gateway?.stop();
  await store?.close();
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

interface RawResponse {
  status: number;
  /** Header fields by lower-case name. */
  headers: Map<string, string>;
  body: Buffer;
}

/** Sends a GET of `/download` with `headers` on a new connection and reads the whole response. */
function rawDownload(headers: Record<string, string> = {}): Promise<RawResponse> {
  const fields = Object.entries({ authorization: `Bearer ${token}`, ...headers })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");
  const request =
    `GET /download?fid=${fid} HTTP/1.1\r\nHost: 127.0.0.1:${gateway.port}\r\n${fields}` +
    "Connection: close\r\n\r\n";
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(gateway.port, "127.0.0.1", () => socket.write(request));
    socket.setTimeout(10_000, () => socket.destroy(new Error("no response within 10 s")));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(parseResponse(Buffer.concat(chunks))));
  });
}

function parseResponse(raw: Buffer): RawResponse {
  const end = raw.indexOf("\r\n\r\n");
  const [statusLine = "", ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const payload = raw.subarray(end + 4);
  const chunked = headers.get("transfer-encoding")?.toLowerCase() === "chunked";
  return {
    status: Number(statusLine.split(" ")[1]),
    headers,
    body: chunked ? decodeChunked(payload) : payload,
  };
}

function decodeChunked(payload: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = payload.indexOf("\r\n", offset);
    const size = Number.parseInt(payload.subarray(offset, lineEnd).toString("latin1"), 16);
    if (!(size > 0)) return Buffer.concat(parts);
    parts.push(payload.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}

function expectWholeMp3(response: RawResponse) {
  expect(response.status).toBe(200);
  expect(response.headers.has("content-range")).toBe(false);
  expect(response.body.equals(Buffer.from(mp3))).toBe(true);
}

describe("GET /download over HTTP", () => {
  test("200 carries Content-Length", async () => {
    const response = await rawDownload();

    expectWholeMp3(response);
    expect(response.headers.get("content-length")).toBe(String(MP3_BYTES));
    expect(response.headers.has("transfer-encoding")).toBe(false);
    expect(response.headers.get("etag")).toBe(etag);
    expect(response.headers.get("last-modified")).toBe(lastModified);
  });

  test("206 carries Content-Length", async () => {
    const response = await rawDownload({ range: "bytes=1000-200999" });

    expect(response.status).toBe(206);
    expect(response.headers.get("content-length")).toBe("200000");
    expect(response.headers.has("transfer-encoding")).toBe(false);
    expect(response.headers.get("content-range")).toBe(`bytes 1000-200999/${MP3_BYTES}`);
    expect(response.headers.get("etag")).toBe(etag);
    expect(response.body.equals(Buffer.from(mp3.subarray(1000, 201000)))).toBe(true);
  });

  test("If-Range with the ETag gives 206", async () => {
    const response = await rawDownload({ range: "bytes=-10", "if-range": etag });

    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe(
      `bytes ${MP3_BYTES - 10}-${MP3_BYTES - 1}/${MP3_BYTES}`,
    );
    expect(response.body.equals(Buffer.from(mp3.subarray(MP3_BYTES - 10)))).toBe(true);
  });

  test("If-Range with Last-Modified gives 206", async () => {
    const response = await rawDownload({ range: "bytes=0-99", "if-range": lastModified });

    expect(response.status).toBe(206);
    expect(response.headers.get("content-length")).toBe("100");
  });

  test.each([
    ["another ETag", () => '"another-version"'],
    ["the weak ETag", () => `W/${etag}`],
    ["another date", () => "Thu, 01 Jan 1970 00:00:00 GMT"],
    ["no validator", () => "not a validator"],
  ])("If-Range with %s gives the whole MP3", async (_, ifRange) => {
    const response = await rawDownload({ range: "bytes=0-99", "if-range": ifRange() });

    expectWholeMp3(response);
  });

  test("ignored Range gives the whole MP3", async () => {
    const response = await rawDownload({ range: "bytes=0-9,20-29" });

    expectWholeMp3(response);
  });

  test("If-None-Match with the ETag gives 304", async () => {
    const response = await rawDownload({ "if-none-match": `"other", ${etag}` });

    expect(response.status).toBe(304);
    expect(response.headers.get("etag")).toBe(etag);
    expect(response.headers.get("last-modified")).toBe(lastModified);
    expect(response.headers.get("cache-control")).toBe("private, no-store");
    expect(response.body.length).toBe(0);
  });

  test("If-None-Match with another ETag gives 206", async () => {
    const response = await rawDownload({
      "if-none-match": '"another-version"',
      range: "bytes=0-9",
    });

    expect(response.status).toBe(206);
    expect(response.headers.get("content-length")).toBe("10");
  });

  test.each([
    ["the ETag", () => etag],
    ["a list with the ETag", () => `"other", ${etag}`],
    ["*", () => "*"],
  ])("If-Match with %s gives 200", async (_, ifMatch) => {
    const response = await rawDownload({ "if-match": ifMatch() });

    expectWholeMp3(response);
  });

  test.each([
    ["another ETag", () => '"another-version"'],
    ["the weak ETag", () => `W/${etag}`],
  ])("If-Match with %s gives 412", async (_, ifMatch) => {
    const response = await rawDownload({ "if-match": ifMatch(), range: "bytes=0-9" });

    expect(response.status).toBe(412);
    expect(response.headers.get("etag")).toBe(etag);
    expect(JSON.parse(response.body.toString()).code).toBe("precondition_failed");
  });

  test("If-Unmodified-Since before Last-Modified gives 412", async () => {
    const response = await rawDownload({ "if-unmodified-since": "Thu, 01 Jan 1970 00:00:00 GMT" });

    expect(response.status).toBe(412);
  });

  test("If-Unmodified-Since at Last-Modified gives 200", async () => {
    const response = await rawDownload({ "if-unmodified-since": lastModified });

    expectWholeMp3(response);
  });

  test("If-Modified-Since at Last-Modified gives 304", async () => {
    const response = await rawDownload({ "if-modified-since": lastModified });

    expect(response.status).toBe(304);
    expect(response.body.length).toBe(0);
  });

  test("If-Modified-Since before Last-Modified gives 200", async () => {
    const response = await rawDownload({ "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" });

    expectWholeMp3(response);
    expect(response.headers.get("content-length")).toBe(String(MP3_BYTES));
  });

  test("ETag changes when the blob is stored again", async () => {
    const info = await store.stat("mp3s", fid);
    if (!info) throw new Error("expected the MP3 to be stored");
    const later = { ...info, createdAt: new Date(info.createdAt.getTime() + 1) };

    expect(blobValidators(later).etag).not.toBe(etag);
    expect(blobValidators({ ...info }).etag).toBe(etag);
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
  });
});
