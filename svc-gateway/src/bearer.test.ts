/**
 * Bearer token checks as clients see them: the status, the JSON code and the RFC 6750
 * `WWW-Authenticate` challenge of every rejected token, on a route of the gateway app.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateSigningKey } from "@mp3converter/lib/tokens";
import { base64url, importJWK, SignJWT, UnsecuredJWT } from "jose";
import { AUDIENCE, BASE, createHarness, type Harness, ISSUER } from "./test-helpers.ts";

const REALM = 'Bearer realm="mp3converter"';

let h: Harness;

beforeAll(async () => {
  h = await createHarness();
});

afterAll(async () => {
  await h.close();
});

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
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
    ...overrides,
  };
}

/** Signs `payload` with the key the gateway trusts. */
function signed(payload: Record<string, unknown>): Promise<string> {
  return h.keys.signJwt(payload, { kid: h.keys.signingKid });
}

/** Signs `payload` with a key the gateway does not know, under `kid`. */
async function signedByStranger(payload: Record<string, unknown>, kid: string): Promise<string> {
  const stranger = await importJWK(await generateSigningKey(kid), "EdDSA");
  return new SignJWT(payload).setProtectedHeader({ alg: "EdDSA", kid }).sign(stranger);
}

/** Signs an HS256 token with the gateway's public key as HMAC secret (key confusion). */
function signedWithPublicKeyAsSecret(payload: Record<string, unknown>): Promise<string> {
  const publicKey = base64url.decode(h.keys.publicJwks.keys[0]?.x ?? "");
  return new SignJWT(payload)
    .setProtectedHeader({ alg: "HS256", kid: h.keys.signingKid })
    .sign(publicKey);
}

function getJobs(authorization?: string): Promise<Response> {
  const headers: Record<string, string> = authorization ? { authorization } : {};
  return h.app.handle(new Request(`${BASE}/jobs`, { headers }));
}

describe("bearer tokens at the gateway", () => {
  test("valid token is accepted", async () => {
    const response = await getJobs(`Bearer ${await signed(claims())}`);
    expect(response.status).toBe(200);
  });

  test("token within clock skew is accepted", async () => {
    const response = await getJobs(`Bearer ${await signed(claims({ exp: nowSeconds() - 5 }))}`);
    expect(response.status).toBe(200);
  });

  test("missing token is 401 without an error code", async () => {
    const response = await getJobs();
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe(REALM);
    expect(((await response.json()) as { code: string }).code).toBe("unauthenticated");
  });

  test.each([
    ["another scheme", "Basic YWxpY2U6c2VjcmV0"],
    ["a bare scheme", "Bearer"],
    ["two tokens", "Bearer abc def"],
    ["characters outside token68", "Bearer <abc>"],
  ])("%s is 401 invalid_request", async (_case, authorization) => {
    const response = await getJobs(authorization);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe(`${REALM}, error="invalid_request"`);
    expect(((await response.json()) as { code: string }).code).toBe("invalid_request");
  });

  const now = nowSeconds();
  test.each([
    ["an expired token", () => signed(claims({ iat: now - 7200, exp: now - 3600 })), "expired"],
    ["a token not valid yet", () => signed(claims({ nbf: now + 600 })), "not valid yet"],
    [
      "a token issued in the future",
      () => signed(claims({ iat: now + 600, exp: now + 1200 })),
      "issued in the future",
    ],
    ["a token for another audience", () => signed(claims({ aud: "other-api" })), "audience"],
    ["a token from another issuer", () => signed(claims({ iss: "someone" })), "issuer"],
    ["a token without exp", () => signed(claims({ exp: undefined })), "exp"],
    ["a token without iat", () => signed(claims({ iat: undefined })), "iat"],
    ["an unsigned token (alg none)", async () => new UnsecuredJWT(claims()).encode(), "EdDSA"],
    [
      "an HS256 token keyed with the public key",
      () => signedWithPublicKeyAsSecret(claims()),
      "not signed with EdDSA",
    ],
    [
      "a token signed by another key under a known kid",
      () => signedByStranger(claims(), h.keys.signingKid),
      "signature",
    ],
    ["a token with an unknown kid", () => signedByStranger(claims(), "stranger"), "unknown key"],
    ["a token that is not a JWT", async () => "not.a.jwt", "malformed"],
  ])("%s is 401 invalid_token", async (_case, makeToken, description) => {
    const token = await makeToken();
    const response = await getJobs(`Bearer ${token}`);
    expect(response.status).toBe(401);
    const challenge = response.headers.get("www-authenticate") ?? "";
    expect(challenge).toStartWith(`${REALM}, error="invalid_token", error_description="`);
    expect(challenge).toContain(description);
    const body = (await response.json()) as { code: string; message: string };
    expect(body.code).toBe("invalid_token");
    expect(JSON.stringify(body)).not.toContain(token);
  });
});
