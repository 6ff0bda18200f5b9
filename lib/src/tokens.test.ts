import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { base64url, type JWK, SignJWT, UnsecuredJWT } from "jose";
import { AppError } from "./errors.ts";
import { type Server, serve } from "./runtime.ts";
import {
  createTokenVerifier,
  generateSigningKey,
  issueToken,
  loadSigningKeys,
  type PrivateSigningJwk,
  parseSigningKeySet,
  type SigningKeys,
  type TokenVerifier,
} from "./tokens.ts";

const ISSUER = "mp3converter-auth";
const AUDIENCE = "mp3converter";
const SUBJECT = { userId: "user-1", email: "alice@example.com", admin: false };
const SIGNER = { issuer: ISSUER, audience: AUDIENCE, ttlSeconds: 3600 };

let key: PrivateSigningJwk;
let keys: SigningKeys;
let verifier: TokenVerifier;

beforeAll(async () => {
  key = await generateSigningKey("key-1");
  keys = await loadSigningKeys({ keys: [key] });
  verifier = createTokenVerifier({ jwks: keys.publicJwks, issuer: ISSUER, audience: AUDIENCE });
});

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Standard claims of a valid token, to be overridden one at a time. */
function validClaims(): Record<string, unknown> {
  const iat = nowSeconds();
  return {
    sub: "user-1",
    email: "alice@example.com",
    admin: false,
    iss: ISSUER,
    aud: AUDIENCE,
    iat,
    exp: iat + 600,
    jti: "jti-1",
  };
}

/** Signs `claims` with the test key, or another key that claims the same kid. */
async function signWith(claims: Record<string, unknown>, jwk: JWK = key): Promise<string> {
  const { importJWK } = await import("jose");
  const privateKey = await importJWK(jwk, "EdDSA");
  return new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", kid: "key-1" }).sign(privateKey);
}

/** Returns the AppError that `promise` rejects with, and fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

async function expectInvalidToken(token: string, description: string): Promise<void> {
  const error = await rejection(verifier.verifyAuthorizationHeader(`Bearer ${token}`));
  expect(error.status).toBe(401);
  expect(error.code).toBe("invalid_token");
  expect(error.headers["www-authenticate"]).toBe(
    `Bearer realm="mp3converter", error="invalid_token", error_description="${description}"`,
  );
}

describe("signing keys", () => {
  test("generateSigningKey makes a private Ed25519 JWK", async () => {
    const generated = await generateSigningKey();
    expect(generated.kty).toBe("OKP");
    expect(generated.crv).toBe("Ed25519");
    expect(typeof generated.d).toBe("string");
    expect(generated.alg).toBe("EdDSA");
    expect(generated.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await generateSigningKey("chosen")).kid).toBe("chosen");
  });

  test("public JWKS has no private members", async () => {
    const second = await generateSigningKey("key-2");
    const loaded = await loadSigningKeys(JSON.stringify({ keys: [second, key] }));
    expect(loaded.signingKid).toBe("key-2");
    expect(loaded.publicJwks.keys.map((jwk) => jwk.kid)).toEqual(["key-2", "key-1"]);
    for (const jwk of loaded.publicJwks.keys) {
      expect(Object.keys(jwk).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"]);
    }
    expect(JSON.stringify(loaded.publicJwks)).not.toContain(key.d);
  });

  test("parseSigningKeySet rejects bad sets", () => {
    const cases: Array<[unknown, string]> = [
      ["{not json", "is not valid JSON"],
      [{ keys: [] }, "at least one key"],
      [{ keys: [{ ...key, crv: "P-256" }] }, "key 0 is not an Ed25519 key"],
      [{ keys: [{ ...key, d: undefined }] }, 'key 0 lacks its private part "d"'],
      [{ keys: [{ ...key, kid: "" }] }, 'key 0 has no "kid"'],
      [{ keys: [key, key] }, 'key 1 repeats the kid "key-1"'],
    ];
    for (const [input, message] of cases) {
      expect(() => parseSigningKeySet(input)).toThrow(message);
    }
  });

  test("parse errors never echo the private key", () => {
    const input = { keys: [{ ...key, crv: "X25519" }] };
    expect(() => parseSigningKeySet(input)).not.toThrow(key.d);
  });

  test("loadSigningKeys rejects a mismatched pair", async () => {
    const other = await generateSigningKey("other");
    const mismatched = { ...key, x: other.x };
    await expect(loadSigningKeys({ keys: [mismatched] })).rejects.toThrow(
      'key 0 (kid "key-1") is not a valid Ed25519 key pair',
    );
  });
});

describe("token verifier", () => {
  test("issued token verifies with typed claims", async () => {
    const signed = await issueToken(keys, { ...SUBJECT, admin: true }, SIGNER);
    expect(signed.expiresInSeconds).toBe(3600);
    const claims = await verifier.verifyAuthorizationHeader(`Bearer ${signed.token}`);
    expect(claims.sub).toBe("user-1");
    expect(claims.email).toBe("alice@example.com");
    expect(claims.admin).toBe(true);
    expect(claims.iss).toBe(ISSUER);
    expect(claims.aud).toBe(AUDIENCE);
    expect(claims.exp - claims.iat).toBe(3600);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("header has kid and EdDSA", async () => {
    const { token } = await issueToken(keys, SUBJECT, SIGNER);
    const header = JSON.parse(
      new TextDecoder().decode(base64url.decode(token.split(".")[0] ?? "")),
    );
    expect(header).toEqual({ alg: "EdDSA", typ: "JWT", kid: "key-1" });
  });

  test("bearer scheme is case-insensitive", async () => {
    const { token } = await issueToken(keys, SUBJECT, SIGNER);
    const claims = await verifier.verifyAuthorizationHeader(`bearer ${token}`);
    expect(claims.sub).toBe("user-1");
  });

  test("missing header is unauthenticated", async () => {
    for (const header of [undefined, null, "", "   "]) {
      const error = await rejection(verifier.verifyAuthorizationHeader(header));
      expect(error.status).toBe(401);
      expect(error.code).toBe("unauthenticated");
      expect(error.headers["www-authenticate"]).toBe('Bearer realm="mp3converter"');
    }
  });

  test("malformed header is invalid_request", async () => {
    for (const header of ["Basic YTpi", "Bearer", "Bearer a b", "Token abc", "Bearer <abc>"]) {
      const error = await rejection(verifier.verifyAuthorizationHeader(header));
      expect(error.status).toBe(401);
      expect(error.code).toBe("invalid_request");
      expect(error.headers["www-authenticate"]).toBe(
        'Bearer realm="mp3converter", error="invalid_request"',
      );
    }
  });

  test("garbage token is invalid_token", async () => {
    await expectInvalidToken("abc", "the token is malformed");
    await expectInvalidToken("a.b.c", "the token is malformed");
  });

  test("bad signature is rejected", async () => {
    const impostor = await generateSigningKey("key-1");
    await expectInvalidToken(
      await signWith(validClaims(), impostor),
      "the token signature is invalid",
    );
  });

  test("tampered payload is rejected", async () => {
    const token = await signWith(validClaims());
    const [header, , signature] = token.split(".");
    const payload = base64url.encode(JSON.stringify({ ...validClaims(), admin: true }));
    await expectInvalidToken(`${header}.${payload}.${signature}`, "the token signature is invalid");
  });

  test("expired token is rejected", async () => {
    const claims = { ...validClaims(), iat: nowSeconds() - 7200, exp: nowSeconds() - 3600 };
    await expectInvalidToken(await signWith(claims), "the token has expired");
  });

  test("expiry within clock tolerance passes", async () => {
    const claims = { ...validClaims(), exp: nowSeconds() - 10 };
    const verified = await verifier.verifyToken(await signWith(claims));
    expect(verified.sub).toBe("user-1");
  });

  test("future nbf is rejected", async () => {
    const claims = { ...validClaims(), nbf: nowSeconds() + 600 };
    await expectInvalidToken(await signWith(claims), "the token is not valid yet");
  });

  test("future iat is rejected", async () => {
    const claims = { ...validClaims(), iat: nowSeconds() + 600, exp: nowSeconds() + 1200 };
    await expectInvalidToken(await signWith(claims), "the token is issued in the future");
  });

  test("wrong audience is rejected", async () => {
    const claims = { ...validClaims(), aud: "another-service" };
    await expectInvalidToken(await signWith(claims), "the token is for another audience");
  });

  test("wrong issuer is rejected", async () => {
    const claims = { ...validClaims(), iss: "someone-else" };
    await expectInvalidToken(await signWith(claims), "the token is from another issuer");
  });

  test("missing required claims are rejected", async () => {
    for (const claim of ["sub", "exp", "iat", "iss", "aud"]) {
      const claims = validClaims();
      delete claims[claim];
      const error = await rejection(verifier.verifyToken(await signWith(claims)));
      expect(error.code).toBe("invalid_token");
      expect(error.headers["www-authenticate"]).toContain(claim);
    }
  });

  test("mistyped claim is rejected", async () => {
    const claims = { ...validClaims(), admin: "yes" };
    await expectInvalidToken(await signWith(claims), "the admin claim is missing or invalid");
  });

  test("alg none is rejected", async () => {
    const token = new UnsecuredJWT(validClaims()).encode();
    await expectInvalidToken(token, "the token is not signed with EdDSA");
  });

  test("HS256 with the public key is rejected", async () => {
    const publicJwk = keys.publicJwks.keys[0] as JWK;
    for (const secret of [
      base64url.decode(publicJwk.x ?? ""),
      new TextEncoder().encode(JSON.stringify(publicJwk)),
    ]) {
      const token = await new SignJWT(validClaims())
        .setProtectedHeader({ alg: "HS256", kid: "key-1" })
        .sign(secret);
      await expectInvalidToken(token, "the token is not signed with EdDSA");
    }
  });

  test("unknown kid is rejected", async () => {
    const stranger = await generateSigningKey("stranger");
    const privateKey = await (await import("jose")).importJWK(stranger, "EdDSA");
    const token = await new SignJWT(validClaims())
      .setProtectedHeader({ alg: "EdDSA", kid: "stranger" })
      .sign(privateKey);
    await expectInvalidToken(token, "the token is signed with an unknown key");
  });

  test("old key verifies after rotation", async () => {
    const oldToken = (await issueToken(keys, SUBJECT, SIGNER)).token;
    const newKey = await generateSigningKey("key-2");
    const rotated = await loadSigningKeys({ keys: [newKey, key] });
    const newToken = (await issueToken(rotated, SUBJECT, SIGNER)).token;
    const rotatedVerifier = createTokenVerifier({
      jwks: rotated.publicJwks,
      issuer: ISSUER,
      audience: AUDIENCE,
    });

    expect((await rotatedVerifier.verifyToken(oldToken)).sub).toBe("user-1");
    expect((await rotatedVerifier.verifyToken(newToken)).sub).toBe("user-1");
    const header = JSON.parse(
      new TextDecoder().decode(base64url.decode(newToken.split(".")[0] ?? "")),
    );
    expect(header.kid).toBe("key-2");

    const retired = await loadSigningKeys({ keys: [newKey] });
    const retiredVerifier = createTokenVerifier({
      jwks: retired.publicJwks,
      issuer: ISSUER,
      audience: AUDIENCE,
    });
    const error = await rejection(retiredVerifier.verifyToken(oldToken));
    expect(error.code).toBe("invalid_token");
  });
});

describe("remote JWKS verifier", () => {
  let server: Server;
  let served: SigningKeys;
  let fetches = 0;

  beforeAll(async () => {
    served = keys;
    server = await serve(
      (request) => {
        if (new URL(request.url).pathname !== "/.well-known/jwks.json") {
          return new Response("not found", { status: 404 });
        }
        fetches += 1;
        return Response.json(served.publicJwks);
      },
      { port: 0, hostname: "127.0.0.1" },
    );
  });

  afterAll(async () => {
    await server.stop();
  });

  function remoteVerifier(path = "/.well-known/jwks.json") {
    return createTokenVerifier({
      jwksUrl: `http://127.0.0.1:${server.port}${path}`,
      issuer: ISSUER,
      audience: AUDIENCE,
      jwksCooldownMs: 0,
    });
  }

  test("fetches once and refetches for a new kid", async () => {
    const remote = remoteVerifier();
    fetches = 0;
    const first = (await issueToken(keys, SUBJECT, SIGNER)).token;
    await remote.verifyToken(first);
    await remote.verifyToken(first);
    expect(fetches).toBe(1);

    const newKey = await generateSigningKey("key-3");
    served = await loadSigningKeys({ keys: [newKey, key] });
    const rotatedToken = (await issueToken(served, SUBJECT, SIGNER)).token;
    expect((await remote.verifyToken(rotatedToken)).sub).toBe("user-1");
    expect(fetches).toBe(2);
    expect((await remote.verifyToken(first)).sub).toBe("user-1");
  });

  test("unreachable key set is unavailable", async () => {
    const remote = remoteVerifier("/missing");
    const token = (await issueToken(keys, SUBJECT, SIGNER)).token;
    const error = await rejection(remote.verifyToken(token));
    expect(error.code).toBe("unavailable");
    expect(error.status).toBe(503);
  });
});
