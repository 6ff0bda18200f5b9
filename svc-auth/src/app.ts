/** The auth HTTP API: login, token validation, sign-up, the public JWK set and health. */
import type { ReadinessCheck } from "@mp3converter/lib/health";
import { healthRoutes } from "@mp3converter/lib/health";
import { createHttpApp } from "@mp3converter/lib/http";
import { type Logger, maskEmail } from "@mp3converter/lib/log";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import {
  createTokenVerifier,
  type SigningKeys,
  type TokenSignerOptions,
} from "@mp3converter/lib/tokens";
import type { SignupMode, ThrottleSettings } from "./config.ts";
import { login } from "./login.ts";
import { PasswordVerifier } from "./passwords.ts";
import { clientAddress, prefersPlainText, readJsonObject } from "./requests.ts";
import { authorizeSignup, signup } from "./signup.ts";
import { LoginThrottle } from "./throttle.ts";
import { createUserStore } from "./users.ts";

/** How long clients and proxies may cache the public JWK set, in seconds. */
const JWKS_MAX_AGE_SECONDS = 300;

export interface AuthAppDeps {
  logger: Logger;
  db: SqlDatabase;
  keys: SigningKeys;
  token: TokenSignerOptions;
  signupMode: SignupMode;
  trustProxy: boolean;
  throttle: ThrottleSettings;
  /** Milliseconds since the epoch; tests pass a fake clock to move the throttle window. */
  clock?: () => number;
}

/** Creates the Elysia app; it neither opens nor closes the database. */
export function createAuthApp(deps: AuthAppDeps) {
  const users = createUserStore(deps.db);
  const verifier = createTokenVerifier({
    jwks: deps.keys.publicJwks,
    issuer: deps.token.issuer,
    audience: deps.token.audience,
  });
  const loginDeps = {
    users,
    passwords: new PasswordVerifier(),
    throttle: new LoginThrottle(deps.throttle, deps.clock),
    keys: deps.keys,
    token: deps.token,
  };
  const signupDeps = { users, verifier, mode: deps.signupMode };
  const checks: Record<string, ReadinessCheck> = { database: () => deps.db.ping() };

  return createHttpApp("svc-auth", deps.logger)
    .use(healthRoutes(deps.logger, checks))
    .get("/.well-known/jwks.json", ({ set }) => {
      set.headers["cache-control"] = `public, max-age=${JWKS_MAX_AGE_SECONDS}`;
      return deps.keys.publicJwks;
    })
    .post(
      "/login",
      async ({ request, set, log }) => {
        const signed = await login(loginDeps, {
          authorization: request.headers.get("authorization"),
          address: clientAddress(request, deps.trustProxy),
          log,
        });
        set.headers["cache-control"] = "no-store";
        if (prefersPlainText(request.headers.get("accept"))) {
          set.headers["content-type"] = "text/plain; charset=utf-8";
          return signed.token;
        }
        return { token: signed.token, token_type: "Bearer", expires_in: signed.expiresInSeconds };
      },
      { parse: "none" },
    )
    .post(
      "/validate",
      ({ request, set }) => {
        set.headers["cache-control"] = "no-store";
        return verifier.verifyAuthorizationHeader(request.headers.get("authorization"));
      },
      { parse: "none" },
    )
    .post(
      "/signup",
      async ({ request, set, log }) => {
        await authorizeSignup(signupDeps, request.headers.get("authorization"));
        const user = await signup(signupDeps, await readJsonObject(request));
        log.info({ user_id: user.id, email: maskEmail(user.email) }, "user signed up");
        set.status = 201;
        return { id: user.id, email: user.email };
      },
      { parse: "none" },
    );
}

export type AuthApp = ReturnType<typeof createAuthApp>;
