/**
 * The whole gateway behind a real HTTP server on port 0, opened by `startGateway` from a config
 * on the embedded adapters. Includes a check that a 200 MB upload reaches storage while it is
 * still being sent; `bun run bench` measures the memory this takes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@mp3converter/lib/log";
import {
  createTokenVerifier,
  generateSigningKey,
  issueToken,
  loadSigningKeys,
} from "@mp3converter/lib/tokens";
import { readGatewayConfig } from "./config.ts";
import type { JobView } from "./job-views.ts";
import { type RunningGateway, startGateway } from "./service.ts";
import { AUDIENCE, BOUNDARY, ISSUER, MULTIPART_TYPE, partHead } from "./test-helpers.ts";

const UPLOAD_BYTES = 200 * 1024 * 1024;
/** Size of the chunks the client sends, as a browser or curl does. */
const CHUNK_BYTES = 64 * 1024;

let dir: string;
let gateway: RunningGateway;
let baseUrl: string;
let token: string;
/** Token of a user who uploads under `MAX_ACTIVE_JOBS_PER_USER`. */
let limitedToken: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mp3c-gateway-serve-"));
  const keys = await loadSigningKeys({ keys: [await generateSigningKey()] });
  const config = readGatewayConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: "sqlite::memory:",
    STORAGE_URL: `file:${join(dir, "files")}`,
    BROKER_URL: "memory:",
    AUTH_URL: "http://127.0.0.1:9",
    PUBLIC_URL: "http://localhost:8080",
    UPLOAD_MAX_BYTES: String(UPLOAD_BYTES + CHUNK_BYTES),
    MAX_ACTIVE_JOBS_PER_USER: "1",
  });
  gateway = await startGateway(config, {
    logger: createLogger({ service: "gateway-test", level: "silent" }),
    verifier: createTokenVerifier({ jwks: keys.publicJwks, issuer: ISSUER, audience: AUDIENCE }),
  });
  baseUrl = `http://127.0.0.1:${gateway.port}`;
  const signed = await issueToken(
    keys,
    { userId: "user-serve", email: "serve@example.com", admin: false },
    { issuer: ISSUER, audience: AUDIENCE, ttlSeconds: 3600 },
  );
  token = signed.token;
  const limited = await issueToken(
    keys,
    { userId: "user-limited", email: "limited@example.com", admin: false },
    { issuer: ISSUER, audience: AUDIENCE, ttlSeconds: 3600 },
  );
  limitedToken = limited.token;
});

afterAll(async () => {
  await gateway?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Bytes the gateway may hold between the socket and the store: socket and parser buffers. */
const IN_FLIGHT_MAX_BYTES = 32 * 1024 * 1024;

/** How long the upload waits at its midpoint for the stored bytes to catch up. */
const STORE_WAIT_MS = 30_000;

/** Returns the bytes in the file store's `.partial/` folder, where a put writes until done. */
async function partialBytes(): Promise<number> {
  const partialDir = join(dir, "files", ".partial");
  let total = 0;
  for (const name of await readdir(partialDir)) {
    total += (await stat(join(partialDir, name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/**
 * Waits until storage has all but `IN_FLIGHT_MAX_BYTES` of the `sent` bytes. A gateway that
 * buffered the body would store nothing before the end, so the wait fails with a reason.
 */
async function waitForStoredBytes(sent: number): Promise<void> {
  const deadline = Date.now() + STORE_WAIT_MS;
  let stored = await partialBytes();
  while (stored < sent - IN_FLIGHT_MAX_BYTES) {
    if (Date.now() > deadline) {
      throw new Error(
        `storage had ${stored} bytes after ${sent} were sent; the gateway buffers the upload`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    stored = await partialBytes();
  }
}

/**
 * Generates, as it is read, a multipart body of one file of `size` zero bytes. At the midpoint it
 * pauses until the stored bytes catch up, and errors the body when they do not.
 */
function generatedUpload(size: number): ReadableStream<Uint8Array> {
  let remaining = size;
  let headSent = false;
  let checkedMidpoint = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!headSent) {
        headSent = true;
        controller.enqueue(partHead({ name: "file", filename: "big.mp4" }));
      } else if (!checkedMidpoint && remaining <= size / 2) {
        checkedMidpoint = true;
        await waitForStoredBytes(size - remaining).catch((error) => controller.error(error));
      } else if (remaining > 0) {
        const length = Math.min(CHUNK_BYTES, remaining);
        remaining -= length;
        controller.enqueue(new Uint8Array(length));
      } else {
        controller.enqueue(new TextEncoder().encode(`\r\n--${BOUNDARY}--\r\n`));
        controller.close();
      }
    },
  });
}

/** Sends `request` on a new TCP connection and returns all the server sends until it closes. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

describe("gateway over HTTP", () => {
  test("answers /healthz", async () => {
    const response = await fetch(`${baseUrl}/healthz`);
    expect(response.status).toBe(200);
  });

  test("stores a 200 MB upload while receiving it", async () => {
    const response = await fetch(`${baseUrl}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": MULTIPART_TYPE },
      body: generatedUpload(UPLOAD_BYTES),
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };

    const videos = await readdir(join(dir, "files", "videos"));
    const dataFiles = videos.filter((name) => !name.endsWith(".json"));
    expect(dataFiles).toHaveLength(1);
    expect((await stat(join(dir, "files", "videos", dataFiles[0] ?? ""))).size).toBe(UPLOAD_BYTES);

    const status = await fetch(`${baseUrl}/jobs/${job_id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(((await status.json()) as JobView).state).toBe("queued");
  });

  test("answers a declared oversized upload with JSON 413", async () => {
    // Only the headers are sent, so the response must come from the declared length alone.
    const head =
      "POST /upload HTTP/1.1\r\n" +
      `Host: 127.0.0.1:${gateway.port}\r\n` +
      `Authorization: Bearer ${token}\r\n` +
      `Content-Type: ${MULTIPART_TYPE}\r\n` +
      `Content-Length: ${10 * 1024 ** 3}\r\n` +
      "Connection: close\r\n\r\n";
    const raw = await rawExchange(gateway.port, head);
    const [headers = "", body = ""] = raw.split("\r\n\r\n");
    expect(headers).toStartWith("HTTP/1.1 413");
    expect(headers.toLowerCase()).toContain("content-type: application/json");
    expect(body).toContain('"code":"payload_too_large"');
  });

  test("answers 429 at the job limit without reading the body", async () => {
    const form = new FormData();
    form.set("file", new Blob(["video bytes"]), "first.mp4");
    const first = await fetch(`${baseUrl}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${limitedToken}` },
      body: form,
    });
    expect(first.status).toBe(202);

    // Only the headers are sent, so the response must come before any byte of the body.
    const head =
      "POST /upload HTTP/1.1\r\n" +
      `Host: 127.0.0.1:${gateway.port}\r\n` +
      `Authorization: Bearer ${limitedToken}\r\n` +
      `Content-Type: ${MULTIPART_TYPE}\r\n` +
      `Content-Length: ${1024 * 1024}\r\n` +
      "Connection: close\r\n\r\n";
    const raw = await rawExchange(gateway.port, head);
    const [headers = "", body = ""] = raw.split("\r\n\r\n");
    expect(headers).toStartWith("HTTP/1.1 429");
    expect(headers.toLowerCase()).toContain("retry-after: 30");
    expect(headers.toLowerCase()).toContain("content-type: application/json");
    expect(body).toContain('"code":"too_many_active_jobs"');
  });

  test("rejects a missing token with 401", async () => {
    const response = await fetch(`${baseUrl}/jobs`);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toStartWith("Bearer");
  });
});
