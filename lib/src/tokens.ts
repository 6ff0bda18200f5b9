/**
 * EdDSA (Ed25519) JSON Web Tokens. Auth signs with the first key of its private JWK set and
 * publishes the public half of every key, so a retired key keeps verifying until it leaves the
 * set. Other services verify locally with `createTokenVerifier`.
 */
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
  jwtVerify,
  SignJWT,
} from "jose";
import { AppError } from "./errors.ts";

/** The only JWS algorithm that tokens use. Verifiers accept no other. */
export const TOKEN_ALGORITHM = "EdDSA";
/** Realm named in every `WWW-Authenticate` challenge. */
export const AUTH_REALM = "mp3converter";
/** Default allowance for clocks that differ between auth and the verifying service. */
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;

/** Claims of every access token. */
export const TokenClaimsSchema = Type.Object({
  /** User id. */
  sub: Type.String({ minLength: 1 }),
  email: Type.String({ minLength: 3, maxLength: 254 }),
  admin: Type.Boolean(),
  iss: Type.String({ minLength: 1 }),
  aud: Type.Union([Type.String(), Type.Array(Type.String())]),
  iat: Type.Integer(),
  exp: Type.Integer(),
  jti: Type.String({ minLength: 1 }),
});
export type TokenClaims = Static<typeof TokenClaimsSchema>;

/** The user a token is issued to. */
export interface TokenSubject {
  userId: string;
  email: string;
  admin: boolean;
}

export interface SignedToken {
  token: string;
  expiresInSeconds: number;
  claims: TokenClaims;
}

// Signing side (auth)

/** A private Ed25519 JWK as stored in `JWT_SIGNING_KEYS`. */
export interface PrivateSigningJwk extends JWK {
  kty: "OKP";
  crv: "Ed25519";
  kid: string;
  d: string;
  x: string;
}

/** Generates a new private signing JWK whose `kid` defaults to its RFC 7638 thumbprint. */
export async function generateSigningKey(kid?: string): Promise<PrivateSigningJwk> {
  const { privateKey } = await generateKeyPair(TOKEN_ALGORITHM, {
    crv: "Ed25519",
    extractable: true,
  });
  const jwk = await exportJWK(privateKey);
  const keyId = kid ?? (await calculateJwkThumbprint(publicMembers(jwk)));
  return { ...jwk, kid: keyId, alg: TOKEN_ALGORITHM, use: "sig" } as PrivateSigningJwk;
}

/**
 * Parses and checks a JWK set of private Ed25519 keys, as JSON text or an object. Throws an
 * Error naming the first bad key by index, without echoing key material.
 */
export function parseSigningKeySet(input: string | unknown): PrivateSigningJwk[] {
  let set: unknown = input;
  if (typeof input === "string") {
    try {
      set = JSON.parse(input);
    } catch {
      throw new Error(
        'the signing key set is not valid JSON: expected {"keys":[{"kty":"OKP","crv":"Ed25519",...}]}',
      );
    }
  }
  const keys = (set as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new Error(
      'the signing key set must be a JWK set with at least one key, as in {"keys":[...]}',
    );
  }
  const kids = new Set<string>();
  return keys.map((key: unknown, index) => {
    const jwk = key as Partial<PrivateSigningJwk> | null;
    const where = `key ${index}`;
    if (jwk?.kty !== "OKP" || jwk.crv !== "Ed25519") {
      throw new Error(`${where} is not an Ed25519 key; expected "kty":"OKP","crv":"Ed25519"`);
    }
    if (typeof jwk.d !== "string" || typeof jwk.x !== "string") {
      throw new Error(`${where} lacks its private part "d" or public part "x"`);
    }
    if (typeof jwk.kid !== "string" || jwk.kid === "") throw new Error(`${where} has no "kid"`);
    if (kids.has(jwk.kid)) throw new Error(`${where} repeats the kid "${jwk.kid}"`);
    kids.add(jwk.kid);
    return jwk as PrivateSigningJwk;
  });
}

/** Returns the public members of an Ed25519 JWK, so that the private `d` stays in auth. */
function publicMembers(jwk: JWK): JWK {
  const result: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  if (jwk.kid !== undefined) result.kid = jwk.kid;
  return result;
}

export interface SigningKeys {
  /** Kid of the key that signs new tokens. */
  readonly signingKid: string;
  /** Public JWK set to serve at `/.well-known/jwks.json`: every key, public members only. */
  readonly publicJwks: JSONWebKeySet;
  /** Signs `claims` with the first key. */
  signJwt(claims: Record<string, unknown>, header: { kid: string }): Promise<string>;
}

/**
 * Imports a private JWK set. Each key signs and verifies a probe, so that a key whose `d` and
 * `x` do not belong together is caught at start, not at the first login.
 */
export async function loadSigningKeys(input: string | unknown): Promise<SigningKeys> {
  const jwks = parseSigningKeySet(input);
  const publicKeys = jwks.map((jwk) => ({
    ...publicMembers(jwk),
    alg: TOKEN_ALGORITHM,
    use: "sig",
  }));
  for (const [index, jwk] of jwks.entries()) await checkKeyPair(jwk, index);
  const [first] = jwks as [PrivateSigningJwk, ...PrivateSigningJwk[]];
  const signingKey = await importJWK({ ...first, alg: TOKEN_ALGORITHM }, TOKEN_ALGORITHM);
  return {
    signingKid: first.kid,
    publicJwks: { keys: publicKeys },
    signJwt: (claims, header) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: "JWT", kid: header.kid })
        .sign(signingKey),
  };
}

async function checkKeyPair(jwk: PrivateSigningJwk, index: number): Promise<void> {
  try {
    const privateKey = await importJWK({ ...jwk, alg: TOKEN_ALGORITHM }, TOKEN_ALGORITHM);
    const publicKey = await importJWK(publicMembers(jwk), TOKEN_ALGORITHM);
    const probe = await new SignJWT({})
      .setProtectedHeader({ alg: TOKEN_ALGORITHM })
      .sign(privateKey);
    await jwtVerify(probe, publicKey, { algorithms: [TOKEN_ALGORITHM] });
  } catch (cause) {
    throw new Error(`key ${index} (kid "${jwk.kid}") is not a valid Ed25519 key pair`, { cause });
  }
}

export interface TokenSignerOptions {
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

/** Issues an access token for `subject` with a fresh `jti`. */
export async function issueToken(
  keys: SigningKeys,
  subject: TokenSubject,
  options: TokenSignerOptions,
): Promise<SignedToken> {
  const iat = Math.floor(Date.now() / 1000);
  const claims: TokenClaims = {
    sub: subject.userId,
    email: subject.email,
    admin: subject.admin,
    iss: options.issuer,
    aud: options.audience,
    iat,
    exp: iat + options.ttlSeconds,
    jti: crypto.randomUUID(),
  };
  const token = await keys.signJwt(claims, { kid: keys.signingKid });
  return { token, expiresInSeconds: options.ttlSeconds, claims };
}

// Verifying side (gateway, and auth's /validate)

/** Remote JWK set fetch settings; see jose's `createRemoteJWKSet`. */
const JWKS_FETCH_TIMEOUT_MS = 5_000;
const JWKS_CACHE_MAX_AGE_MS = 10 * 60_000;
/**
 * Minimum time between two fetches caused by an unknown `kid`. It bounds the load that tokens
 * with made-up kids put on auth. A token signed by a key newer than the cached set can be
 * rejected for up to this long.
 */
export const DEFAULT_JWKS_COOLDOWN_MS = 10_000;

export interface TokenVerifierOptions {
  /** URL of auth's `/.well-known/jwks.json`, fetched on first use and cached. */
  jwksUrl?: string | URL;
  /** A public JWK set to verify against, in place of `jwksUrl`. */
  jwks?: JSONWebKeySet;
  issuer: string;
  audience: string;
  clockToleranceSeconds?: number;
  /** Minimum milliseconds between refetches for an unknown `kid`. Defaults to 10 s. */
  jwksCooldownMs?: number;
}

export interface TokenVerifier {
  /**
   * Verifies the value of an `Authorization` header and returns the token's claims. Throws
   * `AppError` with status 401 and a `WWW-Authenticate` challenge for any token problem, or
   * `unavailable` (503) when the remote JWK set cannot be fetched.
   */
  verifyAuthorizationHeader(header: string | null | undefined): Promise<TokenClaims>;
  /** Verifies a bare token; throws like `verifyAuthorizationHeader`. */
  verifyToken(token: string): Promise<TokenClaims>;
}

/** `Bearer` and a token68 value (RFC 6750 section 2.1). The scheme is case-insensitive. */
const BEARER_HEADER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** Creates a verifier that accepts only EdDSA tokens from `issuer` for `audience`. */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const getKey = keyResolverOf(options);
  const remote = options.jwks === undefined;
  const tolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;

  async function verifyToken(token: string): Promise<TokenClaims> {
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        algorithms: [TOKEN_ALGORITHM],
        issuer: options.issuer,
        audience: options.audience,
        clockTolerance: tolerance,
        requiredClaims: ["iss", "aud", "exp", "iat", "sub"],
      }));
    } catch (error) {
      throw verificationError(error, remote);
    }
    return checkClaims(payload, tolerance);
  }

  return {
    verifyToken,
    async verifyAuthorizationHeader(header) {
      return verifyToken(bearerTokenOf(header));
    },
  };
}

function keyResolverOf(options: TokenVerifierOptions): JWTVerifyGetKey {
  if (options.jwks !== undefined) return createLocalJWKSet(options.jwks);
  if (options.jwksUrl === undefined) {
    throw new Error("createTokenVerifier needs jwksUrl or jwks");
  }
  return createRemoteJWKSet(new URL(options.jwksUrl), {
    timeoutDuration: JWKS_FETCH_TIMEOUT_MS,
    cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
    cooldownDuration: options.jwksCooldownMs ?? DEFAULT_JWKS_COOLDOWN_MS,
  });
}

/** Extracts the token of a `Bearer` header, or throws the matching 401. */
export function bearerTokenOf(header: string | null | undefined): string {
  if (header === null || header === undefined || header.trim() === "") {
    throw new AppError(
      "unauthenticated",
      "Log in first with POST /login, then send Authorization: Bearer <token>.",
      {
        headers: { "www-authenticate": `Bearer realm="${AUTH_REALM}"` },
      },
    );
  }
  const token = BEARER_HEADER.exec(header)?.[1];
  if (token === undefined) {
    throw new AppError(
      "invalid_request",
      "The Authorization header is malformed; expected Authorization: Bearer <token>.",
      { headers: { "www-authenticate": `Bearer realm="${AUTH_REALM}", error="invalid_request"` } },
    );
  }
  return token;
}

/** Builds the 401 for a token that failed verification. `description` must not contain quotes. */
export function invalidTokenError(description: string, cause?: unknown): AppError {
  return new AppError(
    "invalid_token",
    `The token is invalid: ${description}. Log in again with POST /login.`,
    {
      cause,
      headers: {
        "www-authenticate":
          `Bearer realm="${AUTH_REALM}", error="invalid_token", ` +
          `error_description="${description}"`,
      },
    },
  );
}

/** Maps a jose failure to a client error. Only an unreachable remote JWK set is not a 401. */
function verificationError(error: unknown, remote: boolean): AppError {
  if (remote && isKeySetUnavailable(error)) {
    return new AppError(
      "unavailable",
      "Tokens cannot be checked right now because the signing keys are unavailable. Try again later.",
      { cause: error },
    );
  }
  if (error instanceof errors.JWTExpired) return invalidTokenError("the token has expired", error);
  if (error instanceof errors.JWTClaimValidationFailed) {
    return invalidTokenError(claimFailureDescription(error), error);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return invalidTokenError("the token is not signed with EdDSA", error);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return invalidTokenError("the token signature is invalid", error);
  }
  if (
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys
  ) {
    return invalidTokenError("the token is signed with an unknown key", error);
  }
  return invalidTokenError("the token is malformed", error);
}

function isKeySetUnavailable(error: unknown): boolean {
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return true;
  // A failed fetch throws a non-jose error, and jose reports a non-200 response as JOSEError.
  if (!(error instanceof errors.JOSEError)) return true;
  return error.code === "ERR_JOSE_GENERIC";
}

function claimFailureDescription(error: InstanceType<typeof errors.JWTClaimValidationFailed>) {
  switch (error.claim) {
    case "aud":
      return "the token is for another audience";
    case "iss":
      return "the token is from another issuer";
    case "nbf":
      return "the token is not valid yet";
    default:
      return error.reason === "missing"
        ? `the token lacks the ${error.claim} claim`
        : `the ${error.claim} claim is invalid`;
  }
}

/**
 * Checks the claim types and rejects an `iat` in the future, which jose checks only together
 * with `maxTokenAge`.
 */
function checkClaims(payload: unknown, toleranceSeconds: number): TokenClaims {
  if (!Value.Check(TokenClaimsSchema, payload)) {
    const first = Value.Errors(TokenClaimsSchema, payload).First();
    const claim = first?.path.replace(/^\//, "") || "claims";
    throw invalidTokenError(`the ${claim} claim is missing or invalid`);
  }
  const now = Math.floor(Date.now() / 1000);
  if (payload.iat > now + toleranceSeconds) {
    throw invalidTokenError("the token is issued in the future");
  }
  return payload;
}
