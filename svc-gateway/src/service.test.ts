/**
 * The whole gateway behind a real HTTP server on port 0, opened by `startGateway` from a config
 * on the embedded adapters. Includes the memory bound of a 200 MB upload.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
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
});

afterAll(async () => {
  await gateway?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A multipart body of one file of `size` zero bytes, generated as it is read. */
function generatedUpload(size: number): ReadableStream<Uint8Array> {
  let remaining = size;
  let headSent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!headSent) {
        headSent = true;
        controller.enqueue(partHead({ name: "file", filename: "big.mp4" }));
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

describe("gateway over HTTP", () => {
  test("answers /healthz", async () => {
    const response = await fetch(`${baseUrl}/healthz`);
    expect(response.status).toBe(200);
  });

  test("keeps memory well below a 200 MB upload", async () => {
    Bun.gc(true);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    let response: Response;
    try {
      response = await fetch(`${baseUrl}/upload`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": MULTIPART_TYPE },
        body: generatedUpload(UPLOAD_BYTES),
        duplex: "half",
      } as RequestInit);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    const growthMb = (peak - baseline) / 1024 / 1024;
    process.stderr.write(
      `200 MB upload: RSS baseline ${(baseline / 1024 / 1024).toFixed(0)} MB, ` +
        `peak ${(peak / 1024 / 1024).toFixed(0)} MB, growth ${growthMb.toFixed(0)} MB\n`,
    );
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };

    const videos = await readdir(join(dir, "files", "videos"));
    const dataFiles = videos.filter((name) => !name.endsWith(".json"));
    expect(dataFiles).toHaveLength(1);
    expect((await stat(join(dir, "files", "videos", dataFiles[0] ?? ""))).size).toBe(UPLOAD_BYTES);
    // A buffered upload would hold all 200 MB at least once. Streamed, the growth measured on
    // Bun 1.4.4 was 35 to 55 MB and did not grow with a 600 MB upload; the bound allows half.
    expect(growthMb).toBeLessThan(UPLOAD_BYTES / 1024 / 1024 / 2);

    const status = await fetch(`${baseUrl}/jobs/${job_id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(((await status.json()) as JobView).state).toBe("queued");
  });

  test("rejects a missing token with 401", async () => {
    const response = await fetch(`${baseUrl}/jobs`);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toStartWith("Bearer");
  });
});
