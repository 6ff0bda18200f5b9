import { afterEach, describe, expect, test } from "bun:test";
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { createLogger } from "@mp3converter/lib/log";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import {
  generateSigningKey,
  loadSigningKeys,
  type PrivateSigningJwk,
  type SigningKeys,
} from "@mp3converter/lib/tokens";
import { importJWK, SignJWT, UnsecuredJWT } from "jose";
import { type AuthAppDeps, createAuthApp } from "./app.ts";
import { registerUser } from "./registration.ts";
import { createUserStore, USER_MIGRATIONS } from "./users.ts";

const logger = createLogger({ service: "svc-auth-test", level: "silent" });
const ISSUER = "mp3converter-auth";
const AUDIENCE = "mp3converter";
const PASSWORD = "correct horse battery";

interface Harness {
  app: ReturnType<typeof createAuthApp>;
  db: SqlDatabase;
  key: PrivateSigningJwk;
  keys: SigningKeys;
  clock: { now: number };
}

const databases: SqlDatabase[] = [];

afterEach(async () => {
  for (const db of databases.splice(0)) await db.close();
});

async function createHarness(overrides: Partial<AuthAppDeps> = {}): Promise<Harness> {
  const db = await openSqlDatabase("sqlite::memory:", { logger });
  databases.push(db);
  await db.migrate(USER_MIGRATIONS);
  const key = await generateSigningKey("test-key");
  const keys = await loadSigningKeys({ keys: [key] });
  const clock = { now: Date.parse("2030-01-01T00:00:00Z") };
  const app = createAuthApp({
    logger,
    db,
    keys,
    token: { issuer: ISSUER, audience: AUDIENCE, ttlSeconds: 3600 },
    signupMode: "open",
    trustProxy: false,
    throttle: { maxFailuresPerAccount: 5, maxAttemptsPerAddress: 100, windowSeconds: 900 },
    clock: () => clock.now,
    ...overrides,
  });
  return { app, db, key, keys, clock };
}

function basic(email: string, password: string): string {
  const bytes = new TextEncoder().encode(`${email}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

function post(path: string, init: { headers?: Record<string, string>; body?: unknown } = {}) {
  const headers = new Headers(init.headers);
  let body: string | undefined;
  if (init.body !== undefined) {
    body = typeof init.body === "string" ? init.body : JSON.stringify(init.body);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  return new Request(`http://localhost${path}`, { method: "POST", headers, body });
}

async function signupUser(harness: Harness, email: string, password = PASSWORD) {
  return harness.app.handle(post("/signup", { body: { email, password } }));
}

async function loginAs(harness: Harness, email: string, password = PASSWORD, headers = {}) {
  return harness.app.handle(
    post("/login", { headers: { authorization: basic(email, password), ...headers } }),
  );
}

async function tokenFor(harness: Harness, email: string): Promise<string> {
  const response = await loginAs(harness, email);
  expect(response.status).toBe(200);
  return ((await response.json()) as { token: string }).token;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** Returns the JSON error body without its per-request id. */
async function errorBodyOf(response: Response): Promise<Record<string, unknown>> {
  const { request_id: _requestId, ...rest } = (await response.json()) as Record<string, unknown>;
  return rest;
}

describe("signup and login", () => {
  test("signup creates a user", async () => {
    const harness = await createHarness();
    const response = await signupUser(harness, "  Alice@Example.COM ");
    expect(response.status).toBe(201);
    const body = (await response.json()) as { id: string; email: string };
    expect(body.email).toBe("alice@example.com");
    expect(body.id).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  test("login returns a JSON token", async () => {
    const harness = await createHarness();
    await signupUser(harness, "alice@example.com");
    const response = await loginAs(harness, "ALICE@example.com");
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const body = (await response.json()) as Record<string, unknown>;
    expect(body.token_type).toBe("Bearer");
    expect(body.expires_in).toBe(3600);
    expect(typeof body.token).toBe("string");

    const validated = await harness.app.handle(
      post("/validate", { headers: { authorization: `Bearer ${body.token}` } }),
    );
    expect(validated.status).toBe(200);
    const claims = (await validated.json()) as Record<string, unknown>;
    expect(claims.email).toBe("alice@example.com");
    expect(claims.admin).toBe(false);
    expect(claims.iss).toBe(ISSUER);
    expect(claims.aud).toBe(AUDIENCE);
    expect(typeof claims.sub).toBe("string");
    expect(typeof claims.jti).toBe("string");
  });

  test("login returns a bare token for text/plain", async () => {
    const harness = await createHarness();
    await signupUser(harness, "alice@example.com");
    const response = await loginAs(harness, "alice@example.com", PASSWORD, {
      accept: "text/plain, application/json;q=0.5",
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/plain");
    expect(await response.text()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  test("unknown email and wrong password look alike", async () => {
    const harness = await createHarness();
    await signupUser(harness, "alice@example.com");
    const wrongPassword = await loginAs(harness, "alice@example.com", "wrong password!");
    const unknownEmail = await loginAs(harness, "nobody@example.com", PASSWORD);
    expect(wrongPassword.status).toBe(401);
    expect(unknownEmail.status).toBe(401);
    expect(await errorBodyOf(wrongPassword)).toEqual(await errorBodyOf(unknownEmail));
    expect(wrongPassword.headers.get("www-authenticate")).toBe(
      unknownEmail.headers.get("www-authenticate"),
    );
  });

  test("unknown email takes as long as a wrong password", async () => {
    const harness = await createHarness({
      throttle: { maxFailuresPerAccount: 100, maxAttemptsPerAddress: 100, windowSeconds: 900 },
    });
    await signupUser(harness, "alice@example.com");
    const timed = async (email: string, password: string) => {
      const started = performance.now();
      expect((await loginAs(harness, email, password)).status).toBe(401);
      return performance.now() - started;
    };
    const wrongPassword: number[] = [];
    const unknownEmail: number[] = [];
    // Interleaved samples and medians, so load on the machine affects both sides alike.
    for (let round = 0; round < 7; round++) {
      wrongPassword.push(await timed("alice@example.com", `wrong password ${round}`));
      unknownEmail.push(await timed(`nobody${round}@example.com`, PASSWORD));
    }
    const ratio = median(unknownEmail) / median(wrongPassword);
    process.stderr.write(
      `login timing: wrong password ${median(wrongPassword).toFixed(1)} ms, ` +
        `unknown email ${median(unknownEmail).toFixed(1)} ms\n`,
    );
    // Without the dummy hash an unknown email returns in well under a tenth of the time.
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
  });

  test("login without credentials is 401", async () => {
    const harness = await createHarness();
    const missing = await harness.app.handle(post("/login"));
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as { code: string }).code).toBe("unauthenticated");
    expect(missing.headers.get("www-authenticate")).toStartWith("Basic realm=");

    const malformed = await harness.app.handle(
      post("/login", { headers: { authorization: "Basic %%%" } }),
    );
    expect(malformed.status).toBe(401);
    expect(((await malformed.json()) as { code: string }).code).toBe("invalid_request");
  });

  test("stored hash uses argon2id OWASP parameters", async () => {
    const harness = await createHarness();
    await signupUser(harness, "alice@example.com");
    const [row] = await harness.db.query<{ password_hash: string }>(
      "SELECT password_hash FROM users WHERE email = ?",
      ["alice@example.com"],
    );
    const parts = (row?.password_hash ?? "").split("$");
    expect(parts[1]).toBe("argon2id");
    expect(parts[2]).toBe("v=19");
    const parameters = Object.fromEntries(
      (parts[3] ?? "").split(",").map((pair) => pair.split("=") as [string, string]),
    );
    expect(parameters).toEqual({ m: "19456", t: "2", p: "1" });
    expect(row?.password_hash).not.toContain(PASSWORD);
  });
});

describe("signup validation", () => {
  test("taken email is a conflict", async () => {
    const harness = await createHarness();
    expect((await signupUser(harness, "alice@example.com")).status).toBe(201);
    const again = await signupUser(harness, " ALICE@example.com");
    expect(again.status).toBe(409);
    expect(((await again.json()) as { code: string }).code).toBe("conflict");
  });

  test("password policy counts code points", async () => {
    const harness = await createHarness();
    const cases: Array<[string, number]> = [
      ["a".repeat(9), 400],
      ["a".repeat(10), 201],
      ["🎵".repeat(10), 201],
      ["🎵".repeat(9), 400],
      ["b".repeat(256), 201],
      ["c".repeat(257), 400],
      ["🎶".repeat(256), 201],
    ];
    for (const [index, [password, status]] of cases.entries()) {
      const response = await signupUser(harness, `user${index}@example.com`, password);
      expect(response.status).toBe(status);
      if (status === 400) {
        const body = (await response.json()) as { message: string; details: unknown };
        expect(body.message).toContain("10 to 256 characters");
        expect(body.details).toEqual({ field: "password" });
      }
    }
  });

  test("password with a lone surrogate is rejected", async () => {
    const harness = await createHarness();
    for (const [index, password] of ["abcdefghij\uD800", "\uDC00abcdefghij"].entries()) {
      const response = await signupUser(harness, `lone${index}@example.com`, password);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { message: string }).message).toContain("surrogate");
    }
    const paired = await signupUser(harness, "paired@example.com", "abcdefghij\uD83C\uDFB5");
    expect(paired.status).toBe(201);
  });

  test("invalid UTF-8 in the body is rejected", async () => {
    const harness = await createHarness();
    const prefix = Buffer.from('{"email":"raw@example.com","password":"a long ');
    const suffix = Buffer.from(' passphrase"}');
    for (const invalid of [
      [0xed, 0xa0, 0x80],
      [0xff, 0xfe],
    ]) {
      const body = Buffer.concat([prefix, Buffer.from(invalid), suffix]);
      const response = await harness.app.handle(
        new Request("http://auth.local/signup", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        }),
      );
      expect(response.status).toBe(400);
      expect(((await response.json()) as { message: string }).message).toContain("UTF-8");
    }
  });

  test("long password is not truncated", async () => {
    const harness = await createHarness();
    const password = "x".repeat(256);
    await signupUser(harness, "long@example.com", password);
    expect((await loginAs(harness, "long@example.com", password)).status).toBe(200);
    const shorter = await loginAs(harness, "long@example.com", password.slice(0, 255));
    expect(shorter.status).toBe(401);
  });

  test("invalid emails are rejected", async () => {
    const harness = await createHarness();
    const local = "a".repeat(65);
    const lookalikes = ["\u212Aelvin@example.com", "\u0130nfo@example.com"];
    for (const email of [
      "",
      "plain",
      "a@b",
      "a b@example.com",
      `${local}@example.com`,
      ...lookalikes,
    ]) {
      const response = await signupUser(harness, email);
      expect(response.status).toBe(400);
      const body = (await response.json()) as { details: unknown };
      expect(body.details).toEqual({ field: "email" });
    }
    const long = `${"a".repeat(60)}@${["b", "c", "d", "e"].map((c) => c.repeat(60)).join(".")}.com`;
    expect(long.length).toBeGreaterThan(254);
    expect((await signupUser(harness, long)).status).toBe(400);
  });

  test("bad bodies name the problem", async () => {
    const harness = await createHarness();
    const badJson = await harness.app.handle(post("/signup", { body: "{not json" }));
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { message: string }).message).toContain("not valid JSON");

    const missing = await harness.app.handle(post("/signup", { body: { email: "a@example.com" } }));
    expect(missing.status).toBe(400);
    const missingBody = (await missing.json()) as { code: string; message: string };
    expect(missingBody.code).toBe("invalid_argument");
    expect(missingBody.message).toContain('"password"');

    const wrongType = await harness.app.handle(
      post("/signup", { body: { email: 42, password: PASSWORD } }),
    );
    expect(((await wrongType.json()) as { message: string }).message).toContain('"email"');

    const array = await harness.app.handle(post("/signup", { body: [1] }));
    expect(array.status).toBe(400);

    const form = await harness.app.handle(
      post("/signup", { body: "email=a", headers: { "content-type": "text/plain" } }),
    );
    expect(form.status).toBe(415);
  });
});

describe("signup modes", () => {
  test("closed mode rejects everyone", async () => {
    const harness = await createHarness({ signupMode: "closed" });
    const response = await signupUser(harness, "alice@example.com");
    expect(response.status).toBe(403);
    expect(((await response.json()) as { code: string }).code).toBe("permission_denied");
  });

  test("admin mode needs an admin token", async () => {
    const harness = await createHarness({ signupMode: "admin" });
    const users = createUserStore(harness.db);
    await registerUser(users, { email: "root@example.com", password: PASSWORD, admin: true });
    await registerUser(users, { email: "bob@example.com", password: PASSWORD, admin: false });
    const body = { email: "new@example.com", password: PASSWORD };

    const anonymous = await harness.app.handle(post("/signup", { body }));
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toBe('Bearer realm="mp3converter"');

    const forged = await harness.app.handle(
      post("/signup", { body, headers: { authorization: "Bearer not.a.jwt" } }),
    );
    expect(forged.status).toBe(401);
    expect(forged.headers.get("www-authenticate")).toContain('error="invalid_token"');

    const bobToken = await tokenFor(harness, "bob@example.com");
    const nonAdmin = await harness.app.handle(
      post("/signup", { body, headers: { authorization: `Bearer ${bobToken}` } }),
    );
    expect(nonAdmin.status).toBe(403);

    const rootToken = await tokenFor(harness, "root@example.com");
    const admin = await harness.app.handle(
      post("/signup", { body, headers: { authorization: `Bearer ${rootToken}` } }),
    );
    expect(admin.status).toBe(201);
  });
});

describe("validate", () => {
  async function validate(harness: Harness, authorization?: string) {
    const headers: Record<string, string> = authorization ? { authorization } : {};
    return harness.app.handle(post("/validate", { headers }));
  }

  async function signed(harness: Harness, claims: Record<string, unknown>, jwk?: object) {
    const key = await importJWK({ ...(jwk ?? harness.key) }, "EdDSA");
    return new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", kid: "test-key" }).sign(key);
  }

  function claims(overrides: Record<string, unknown> = {}) {
    const now = Math.floor(Date.now() / 1000);
    return {
      sub: "user-1",
      email: "alice@example.com",
      admin: false,
      iss: ISSUER,
      aud: AUDIENCE,
      iat: now,
      exp: now + 600,
      jti: "jti-1",
      ...overrides,
    };
  }

  async function expectChallenge(response: Response, code: string, challenge: string) {
    expect(response.status).toBe(401);
    expect(((await response.json()) as { code: string }).code).toBe(code);
    expect(response.headers.get("www-authenticate")).toStartWith(challenge);
  }

  test("missing header is 401", async () => {
    const harness = await createHarness();
    await expectChallenge(
      await validate(harness),
      "unauthenticated",
      'Bearer realm="mp3converter"',
    );
  });

  test("malformed header is 401", async () => {
    const harness = await createHarness();
    await expectChallenge(
      await validate(harness, "Token abc"),
      "invalid_request",
      'Bearer realm="mp3converter", error="invalid_request"',
    );
  });

  test("bad signature is 401", async () => {
    const harness = await createHarness();
    const impostor = await generateSigningKey("test-key");
    const token = await signed(harness, claims(), impostor);
    await expectChallenge(
      await validate(harness, `Bearer ${token}`),
      "invalid_token",
      'Bearer realm="mp3converter", error="invalid_token", error_description=',
    );
  });

  test("expired token is 401", async () => {
    const harness = await createHarness();
    const now = Math.floor(Date.now() / 1000);
    const token = await signed(harness, claims({ iat: now - 7200, exp: now - 3600 }));
    const response = await validate(harness, `Bearer ${token}`);
    await expectChallenge(response, "invalid_token", 'Bearer realm="mp3converter"');
    expect(response.headers.get("www-authenticate")).toContain("expired");
  });

  test("wrong audience is 401", async () => {
    const harness = await createHarness();
    const token = await signed(harness, claims({ aud: "somebody-else" }));
    const response = await validate(harness, `Bearer ${token}`);
    await expectChallenge(response, "invalid_token", 'Bearer realm="mp3converter"');
    expect(response.headers.get("www-authenticate")).toContain("audience");
  });

  test("alg none is 401", async () => {
    const harness = await createHarness();
    const token = new UnsecuredJWT(claims()).encode();
    await expectChallenge(
      await validate(harness, `Bearer ${token}`),
      "invalid_token",
      'Bearer realm="mp3converter", error="invalid_token"',
    );
  });
});

describe("login throttling", () => {
  test("account locks after failures", async () => {
    const harness = await createHarness({
      throttle: { maxFailuresPerAccount: 3, maxAttemptsPerAddress: 100, windowSeconds: 900 },
    });
    await signupUser(harness, "alice@example.com");
    for (let attempt = 0; attempt < 3; attempt++) {
      expect((await loginAs(harness, "alice@example.com", "wrong password")).status).toBe(401);
    }

    const locked = await loginAs(harness, "alice@example.com");
    expect(locked.status).toBe(429);
    expect(((await locked.json()) as { code: string }).code).toBe("too_many_requests");
    expect(locked.headers.get("retry-after")).toBe("900");

    harness.clock.now += 600_000;
    const later = await loginAs(harness, "alice@example.com");
    expect(later.status).toBe(429);
    expect(later.headers.get("retry-after")).toBe("300");

    harness.clock.now += 300_000;
    expect((await loginAs(harness, "alice@example.com")).status).toBe(200);
  });

  test("unknown accounts lock the same way", async () => {
    const harness = await createHarness({
      throttle: { maxFailuresPerAccount: 2, maxAttemptsPerAddress: 100, windowSeconds: 60 },
    });
    for (let attempt = 0; attempt < 2; attempt++) {
      expect((await loginAs(harness, "ghost@example.com")).status).toBe(401);
    }
    expect((await loginAs(harness, "ghost@example.com")).status).toBe(429);
  });

  test("success clears account failures", async () => {
    const harness = await createHarness({
      throttle: { maxFailuresPerAccount: 2, maxAttemptsPerAddress: 100, windowSeconds: 60 },
    });
    await signupUser(harness, "alice@example.com");
    expect((await loginAs(harness, "alice@example.com", "wrong password")).status).toBe(401);
    expect((await loginAs(harness, "alice@example.com")).status).toBe(200);
    expect((await loginAs(harness, "alice@example.com", "wrong password")).status).toBe(401);
    expect((await loginAs(harness, "alice@example.com")).status).toBe(200);
  });

  test("address limit uses X-Forwarded-For", async () => {
    const harness = await createHarness({
      trustProxy: true,
      throttle: { maxFailuresPerAccount: 100, maxAttemptsPerAddress: 2, windowSeconds: 60 },
    });
    await signupUser(harness, "alice@example.com");
    const from = (address: string) => ({ "x-forwarded-for": `${address}, 10.0.0.1` });
    expect(
      (await loginAs(harness, "alice@example.com", PASSWORD, from("198.51.100.7"))).status,
    ).toBe(200);
    expect((await loginAs(harness, "alice@example.com", "nope", from("198.51.100.7"))).status).toBe(
      401,
    );

    const blocked = await loginAs(harness, "alice@example.com", PASSWORD, from("198.51.100.7"));
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get("retry-after")).toBe("60");
    expect(
      (await loginAs(harness, "alice@example.com", PASSWORD, from("203.0.113.9"))).status,
    ).toBe(200);
  });
});

describe("keys and health", () => {
  test("JWKS has no private members", async () => {
    const harness = await createHarness();
    const response = await harness.app.handle(
      new Request("http://localhost/.well-known/jwks.json"),
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as { keys: Array<Record<string, unknown>> };
    expect(body.keys).toHaveLength(1);
    expect(Object.keys(body.keys[0] ?? {}).sort()).toEqual([
      "alg",
      "crv",
      "kid",
      "kty",
      "use",
      "x",
    ]);
    expect(JSON.stringify(body)).not.toContain(harness.key.d);
  });

  test("healthz and readyz answer", async () => {
    const harness = await createHarness();
    const health = await harness.app.handle(new Request("http://localhost/healthz"));
    expect(health.status).toBe(200);
    const ready = await harness.app.handle(new Request("http://localhost/readyz"));
    expect(ready.status).toBe(200);
    await harness.db.close();
    databases.splice(databases.indexOf(harness.db), 1);
    const down = await harness.app.handle(new Request("http://localhost/readyz"));
    expect(down.status).toBe(503);
  });
});
