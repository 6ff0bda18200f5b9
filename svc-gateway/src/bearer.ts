/** Bearer token checks of the routes that act for a user. */
import type { TokenVerifier } from "@mp3converter/lib/tokens";

/** The user a verified token names; only `userId` (the token's `sub`) decides who owns a job. */
export interface Principal {
  userId: string;
  email: string;
}

/**
 * Returns the user of the request's bearer token. Rejects with the verifier's `AppError`: 401
 * with `WWW-Authenticate` for a missing, malformed or invalid token, 503 when the signing keys
 * cannot be fetched.
 */
export async function authenticate(request: Request, verifier: TokenVerifier): Promise<Principal> {
  const claims = await verifier.verifyAuthorizationHeader(request.headers.get("authorization"));
  return { userId: claims.sub, email: claims.email };
}
