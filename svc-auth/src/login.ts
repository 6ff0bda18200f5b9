/** `POST /login`: checks HTTP Basic credentials and issues an access token. */
import { AppError } from "@mp3converter/lib/errors";
import { type Logger, maskEmail } from "@mp3converter/lib/log";
import {
  issueToken,
  type SignedToken,
  type SigningKeys,
  type TokenSignerOptions,
} from "@mp3converter/lib/tokens";
import { BASIC_CHALLENGE, parseBasicCredentials } from "./credentials.ts";
import { normalizeEmail } from "./email.ts";
import type { PasswordVerifier } from "./passwords.ts";
import type { LoginThrottle } from "./throttle.ts";
import type { User, UserStore } from "./users.ts";

export interface LoginDeps {
  users: UserStore;
  passwords: PasswordVerifier;
  throttle: LoginThrottle;
  keys: SigningKeys;
  token: TokenSignerOptions;
}

export interface LoginRequest {
  authorization: string | null;
  address: string;
  log: Logger;
}

/** Same status and body for an unknown email and a wrong password. */
function invalidCredentials(): AppError {
  return new AppError("unauthenticated", "The email or password is incorrect.", {
    headers: { "www-authenticate": BASIC_CHALLENGE },
  });
}

/** Authenticates the request's credentials and returns a signed token, or throws 401 or 429. */
export async function login(deps: LoginDeps, request: LoginRequest): Promise<SignedToken> {
  const credentials = parseBasicCredentials(request.authorization);
  const email = normalizeEmail(credentials.email);
  const logFields = { email: maskEmail(email), client_address: request.address };

  const decision = deps.throttle.check(email, request.address);
  if (!decision.allowed) {
    request.log.warn({ ...logFields, scope: decision.scope }, "login throttled");
    throw new AppError(
      "too_many_requests",
      `Too many login attempts. Try again in ${decision.retryAfterSeconds} seconds.`,
      { headers: { "retry-after": String(decision.retryAfterSeconds) } },
    );
  }
  deps.throttle.recordAttempt(request.address);

  const user = await authenticate(deps, email, credentials.password);
  if (user === null) {
    deps.throttle.recordFailure(email);
    request.log.info(logFields, "login failed");
    throw invalidCredentials();
  }

  deps.throttle.recordSuccess(email);
  const signed = await issueToken(
    deps.keys,
    { userId: user.id, email: user.email, admin: user.admin },
    deps.token,
  );
  request.log.info({ ...logFields, user_id: user.id }, "login succeeded");
  return signed;
}

/** Returns the user whose password matches, spending the same work when there is none. */
async function authenticate(deps: LoginDeps, email: string, password: string) {
  const user: User | null = await deps.users.findByEmail(email);
  if (user === null) return deps.passwords.verifyUnknownAccount(password).then(() => null);
  return (await deps.passwords.verify(user.passwordHash, password)) ? user : null;
}
