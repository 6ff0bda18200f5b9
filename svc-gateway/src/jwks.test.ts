/**
 * The gateway started by `startGateway` against a stand-in for auth, which serves a JWK set and
 * counts every request. Tokens are verified locally from the cached set, a new signing key is
 * fetched when its kid first appears, and auth's `/validate` is never called.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@mp3converter/lib/log";
import { type Server, serve } from "@mp3converter/lib/runtime";
import {
  DEFAULT_JWKS_COOLDOWN_MS,
  generateSigningKey,
  issueToken,
  loadSigningKeys,
  type PrivateSigningJwk,
  type SigningKeys,
} from "@mp3converter/lib/tokens";
import { readGatewayConfig } from "./config.ts";
import { type RunningGateway, startGateway } from "./service.ts";
import { AUDIENCE, ISSUER } from "./test-helpers.ts";

const JWKS_PATH = "/.well-known/jwks.json";

let dir: string;
let auth: Server;
let gateway: RunningGateway;
let oldKey: PrivateSigningJwk;
/** The keys that auth signs with and publishes. The rotation test replaces them. */
let served: SigningKeys;
/** Requests auth received, by path. */
const hits = new Map<string, number>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mp3c-gateway-jwks-"));
  oldKey = await generateSigningKey("key-old");
  served = await loadSigningKeys({ keys: [oldKey] });
  auth = await serve(
    (request) => {
      const path = new URL(request.url).pathname;
      hits.set(path, (hits.get(path) ?? 0) + 1);
      if (path === JWKS_PATH) return Response.json(served.publicJwks);
      return new Response("not found", { status: 404 });
    },
    { port: 0, hostname: "127.0.0.1" },
  );
  const config = readGatewayConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: "sqlite::memory:",
    STORAGE_URL: `file:${join(dir, "files")}`,
    BROKER_URL: "memory:",
    AUTH_URL: `http://127.0.0.1:${auth.port}`,
  });
  gateway = await startGateway(config, {
    logger: createLogger({ service: "gateway-test", level: "silent" }),
  });
});

afterAll(async () => {
  await gateway?.stop();
  await auth?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function tokenSignedBy(keys: SigningKeys): Promise<string> {
  const subject = { userId: "user-1", email: "alice@example.com", admin: false };
  const signed = await issueToken(keys, subject, {
    issuer: ISSUER,
    audience: AUDIENCE,
    ttlSeconds: 600,
  });
  return signed.token;
}

function listJobs(token: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${gateway.port}/jobs`, {
    headers: { authorization: `Bearer ${token}` },
  });
}

describe("gateway token verification from the JWK set", () => {
  test("verifies locally with one key set fetch", async () => {
    const token = await tokenSignedBy(served);
    for (let request = 0; request < 5; request++) {
      expect((await listJobs(token)).status).toBe(200);
    }
    expect(hits.get(JWKS_PATH)).toBe(1);
    expect([...hits.keys()]).toEqual([JWKS_PATH]);
  });

  test(
    "accepts a rotated key and keeps old tokens",
    async () => {
      const oldToken = await tokenSignedBy(served);
      const newKey = await generateSigningKey("key-new");
      served = await loadSigningKeys({ keys: [newKey, oldKey] });
      const newToken = await tokenSignedBy(served);

      // An unknown kid refetches the set at most once per cooldown, which bounds what made-up
      // kids cost auth. After the cooldown, the new key is fetched on its first use.
      await Bun.sleep(DEFAULT_JWKS_COOLDOWN_MS + 500);
      expect((await listJobs(newToken)).status).toBe(200);
      expect(hits.get(JWKS_PATH)).toBe(2);
      expect((await listJobs(oldToken)).status).toBe(200);
      expect((await listJobs(newToken)).status).toBe(200);
      expect(hits.get(JWKS_PATH)).toBe(2);
      expect([...hits.keys()]).toEqual([JWKS_PATH]);
    },
    DEFAULT_JWKS_COOLDOWN_MS + 30_000,
  );

  test("rejects a stranger's kid without flooding auth", async () => {
    const stranger = await loadSigningKeys({ keys: [await generateSigningKey("stranger")] });
    const token = await tokenSignedBy(stranger);
    const before = hits.get(JWKS_PATH) ?? 0;
    for (let request = 0; request < 5; request++) {
      const response = await listJobs(token);
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toContain('error="invalid_token"');
    }
    expect((hits.get(JWKS_PATH) ?? 0) - before).toBeLessThanOrEqual(1);
  });
});
