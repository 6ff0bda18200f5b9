/**
 * The login and signup proxy against a small upstream on 127.0.0.1 that records what reached it
 * and responds as auth does. Also `/readyz`, which checks auth's JWK set.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createLogger } from "@mp3converter/lib/log";
import { type Server, serve } from "@mp3converter/lib/runtime";
import { createGatewayApp } from "./app.ts";
import { gatewayReadinessChecks } from "./readiness.ts";
import { BASE, createHarness, type Harness } from "./test-helpers.ts";

interface Received {
  method: string;
  path: string;
  headers: Headers;
  body: string;
}

let upstream: Server;
let received: Received[] = [];
let harness: Harness;

/** Responds like auth: 200 with a token for `/login`, 429 with Retry-After for `/login?busy`. */
async function fakeAuth(request: Request): Promise<Response> {
  const url = new URL(request.url);
  received.push({
    method: request.method,
    path: url.pathname,
    headers: request.headers,
    body: await request.text(),
  });
  if (url.pathname === "/.well-known/jwks.json") {
    return Response.json({ keys: [{ kty: "OKP", crv: "Ed25519", x: "AAAA", kid: "k1" }] });
  }
  if (request.headers.get("authorization") === "Basic YnVzeTpidXN5") {
    return Response.json(
      { code: "too_many_requests", message: "Too many attempts. Wait 60 seconds." },
      { status: 429, headers: { "retry-after": "60", "x-internal": "hidden" } },
    );
  }
  if (url.pathname === "/login" && !request.headers.get("authorization")) {
    return Response.json(
      { code: "unauthenticated", message: "Send HTTP Basic credentials." },
      { status: 401, headers: { "www-authenticate": 'Basic realm="mp3converter"' } },
    );
  }
  if (url.pathname === "/signup") return Response.json({ id: "user-1" }, { status: 201 });
  return Response.json({ token: "t", token_type: "Bearer" });
}

beforeAll(async () => {
  upstream = await serve(fakeAuth, { port: 0, hostname: "127.0.0.1" });
});

afterAll(async () => {
  await upstream.stop();
});

beforeEach(async () => {
  received = [];
  await harness?.close();
  harness = await createHarness({ authUrl: `http://127.0.0.1:${upstream.port}` });
});

function post(path: string, init: RequestInit = {}): Promise<Response> {
  return harness.app.handle(new Request(`${BASE}${path}`, { method: "POST", ...init }));
}

describe("POST /login", () => {
  test("forwards credentials, request id and Accept", async () => {
    const response = await post("/login", {
      headers: {
        authorization: "Basic YWxpY2U6cHc=",
        "x-request-id": "req-login-1",
        accept: "application/json",
      },
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ token: "t", token_type: "Bearer" });
    expect(response.headers.get("x-request-id")).toBe("req-login-1");
    expect(received).toHaveLength(1);
    const [call] = received;
    expect(call?.path).toBe("/login");
    expect(call?.method).toBe("POST");
    expect(call?.headers.get("authorization")).toBe("Basic YWxpY2U6cHc=");
    expect(call?.headers.get("x-request-id")).toBe("req-login-1");
    expect(call?.headers.get("accept")).toBe("application/json");
  });

  test("relays Retry-After and the status", async () => {
    const response = await post("/login", { headers: { authorization: "Basic YnVzeTpidXN5" } });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("60");
    expect(response.headers.get("x-internal")).toBeNull();
    expect(((await response.json()) as { code: string }).code).toBe("too_many_requests");
  });

  test("relays WWW-Authenticate", async () => {
    const response = await post("/login");
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Basic realm="mp3converter"');
  });

  test("answers 503 when auth is down", async () => {
    const down = await createHarness({ authUrl: "http://127.0.0.1:9" });
    const response = await down.app.handle(
      new Request(`${BASE}/login`, { method: "POST", headers: { authorization: "Basic eDp5" } }),
    );
    await down.close();
    expect(response.status).toBe(503);
    const body = (await response.json()) as { code: string; message: string };
    expect(body.code).toBe("unavailable");
    expect(body.message).not.toContain("127.0.0.1");
  });
});

describe("POST /signup", () => {
  test("forwards the JSON body and Authorization", async () => {
    const json = JSON.stringify({ email: "bob@example.com", password: "a long passphrase" });
    const response = await post("/signup", {
      headers: { "content-type": "application/json", authorization: "Bearer admin-token" },
      body: json,
    });
    expect(response.status).toBe(201);
    const [call] = received;
    expect(call?.body).toBe(json);
    expect(call?.headers.get("content-type")).toBe("application/json");
    expect(call?.headers.get("authorization")).toBe("Bearer admin-token");
  });

  test("rejects a body over 16 KiB with 413", async () => {
    const response = await post("/signup", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "x".repeat(20_000) }),
    });
    expect(response.status).toBe(413);
    expect(received).toHaveLength(0);
  });

  test("rejects a streamed body over 16 KiB with 413", async () => {
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(4096).fill(32));
      },
    });
    const response = await post("/signup", {
      headers: { "content-type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(413);
    expect(received).toHaveLength(0);
  });
});

describe("client address", () => {
  test("forwards the peer address through a real server", async () => {
    const server = await serve((request) => harness.app.handle(request), {
      port: 0,
      hostname: "127.0.0.1",
    });
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/login`, {
        method: "POST",
        headers: { authorization: "Basic YWxpY2U6cHc=", "x-forwarded-for": "203.0.113.9" },
      });
      expect(response.status).toBe(200);
      expect(received[0]?.headers.get("x-forwarded-for")).toBe("127.0.0.1");
    } finally {
      await server.stop();
    }
  });

  test("takes the last X-Forwarded-For entry behind a trusted proxy", async () => {
    const trusting = await createHarness({
      authUrl: `http://127.0.0.1:${upstream.port}`,
      trustProxy: true,
    });
    await trusting.app.handle(
      new Request(`${BASE}/login`, {
        method: "POST",
        headers: { "x-forwarded-for": "198.51.100.1, 203.0.113.9" },
      }),
    );
    await trusting.close();
    expect(received[0]?.headers.get("x-forwarded-for")).toBe("203.0.113.9");
  });
});

describe("GET /readyz", () => {
  function readyApp(jwksUrl: string) {
    const logger = createLogger({ service: "gateway-test", level: "silent" });
    return createGatewayApp({
      logger,
      jobs: harness.jobs,
      store: harness.store,
      broker: harness.broker,
      verifier: harness.verifier,
      readiness: gatewayReadinessChecks({
        db: harness.db,
        store: harness.store,
        broker: harness.broker,
        jwksUrl,
      }),
      authUrl: "http://127.0.0.1:9",
      publicUrl: "http://localhost:8080",
      uploadMaxBytes: 1024,
      maxActiveJobsPerUser: 10,
      videoQueue: harness.videoQueue,
      trustProxy: false,
    });
  }

  test("is ready when every dependency answers", async () => {
    const app = readyApp(`http://127.0.0.1:${upstream.port}/.well-known/jwks.json`);
    const response = await app.handle(new Request(`${BASE}/readyz`));
    expect(response.status).toBe(200);
  });

  test("names auth when its JWK set is unreachable", async () => {
    const app = readyApp("http://127.0.0.1:9/.well-known/jwks.json");
    const response = await app.handle(new Request(`${BASE}/readyz`));
    expect(response.status).toBe(503);
    const body = (await response.json()) as { details: Record<string, string> };
    expect(Object.keys(body.details)).toEqual(["auth"]);
  });

  test("stays ready and names a down broker", async () => {
    const app = readyApp(`http://127.0.0.1:${upstream.port}/.well-known/jwks.json`);
    harness.broker.publishDown = true;
    const response = await app.handle(new Request(`${BASE}/readyz`)).finally(() => {
      harness.broker.publishDown = false;
    });
    // Uploads wait in the outbox, so the gateway keeps serving while the broker is down.
    expect(response.status).toBe(200);
    const body = (await response.json()) as { status: string; details: Record<string, string> };
    expect(body.status).toBe("degraded");
    expect(Object.keys(body.details)).toEqual(["broker"]);
  });

  test("answers /healthz", async () => {
    const response = await harness.app.handle(new Request(`${BASE}/healthz`));
    expect(response.status).toBe(200);
  });
});

afterAll(async () => {
  await harness?.close();
});
