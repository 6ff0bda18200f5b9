/** `POST /signup`: creates an account, if the sign-up mode lets the caller do so. */
import { AppError } from "@mp3converter/lib/errors";
import type { TokenVerifier } from "@mp3converter/lib/tokens";
import type { SignupMode } from "./config.ts";
import { registerUser } from "./registration.ts";
import { requireStringField } from "./requests.ts";
import type { User, UserStore } from "./users.ts";

export interface SignupDeps {
  users: UserStore;
  verifier: TokenVerifier;
  mode: SignupMode;
}

/**
 * Checks that the caller may sign up in the current mode: anyone when open, an admin's token
 * when admin (401 without a valid token, 403 for a non-admin), nobody when closed (403).
 */
export async function authorizeSignup(deps: SignupDeps, authorization: string | null) {
  if (deps.mode === "open") return;
  if (deps.mode === "closed") {
    throw new AppError(
      "permission_denied",
      "Sign-up is closed. Ask an administrator for an account.",
    );
  }
  const claims = await deps.verifier.verifyAuthorizationHeader(authorization);
  if (!claims.admin) {
    throw new AppError("permission_denied", "Only an administrator can create accounts.");
  }
}

/** Creates the account described by a sign-up body. */
export function signup(deps: SignupDeps, body: Record<string, unknown>): Promise<User> {
  const email = requireStringField(body, "email");
  const password = requireStringField(body, "password");
  return registerUser(deps.users, { email, password, admin: false });
}
