/** Starts the auth service: database, migrations, signing keys and the HTTP server. */
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { createLogger, type Logger } from "@mp3converter/lib/log";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import { serve } from "@mp3converter/lib/runtime";
import { loadSigningKeys, type SigningKeys } from "@mp3converter/lib/tokens";
import { createAuthApp } from "./app.ts";
import type { AuthConfig } from "./config.ts";
import { USER_MIGRATIONS } from "./users.ts";

/** Largest request body the server accepts; auth takes small JSON bodies only. */
const MAX_REQUEST_BODY_BYTES = 64 * 1024;

export interface AuthOverrides {
  /** A database to use in place of `DATABASE_URL`; the caller keeps it open and closes it. */
  db?: SqlDatabase;
  logger?: Logger;
  /** Signing keys to use in place of `JWT_SIGNING_KEYS`. */
  keys?: SigningKeys;
}

export interface AuthService {
  port: number;
  stop(): Promise<void>;
}

export async function startAuth(
  config: Readonly<AuthConfig>,
  overrides: AuthOverrides = {},
): Promise<AuthService> {
  const logger = overrides.logger ?? createLogger({ service: "svc-auth", level: config.logLevel });
  const db = overrides.db ?? (await openSqlDatabase(config.databaseUrl, { logger }));
  const ownsDb = overrides.db === undefined;
  try {
    await db.migrate(USER_MIGRATIONS);
    const keys = overrides.keys ?? (await loadSigningKeys({ keys: config.signingKeys }));
    const app = createAuthApp({
      logger,
      db,
      keys,
      token: {
        issuer: config.issuer,
        audience: config.audience,
        ttlSeconds: config.tokenTtlSeconds,
      },
      signupMode: config.signupMode,
      trustProxy: config.trustProxy,
      throttle: config.throttle,
    });
    const server = await serve((request) => app.handle(request), {
      port: config.port,
      hostname: config.host,
      maxRequestBodyBytes: MAX_REQUEST_BODY_BYTES,
    });
    logger.info(
      { port: server.port, signing_kid: keys.signingKid, signup_mode: config.signupMode },
      "auth started",
    );
    return {
      port: server.port,
      async stop() {
        await server.stop();
        if (ownsDb) await db.close();
        logger.info("auth stopped");
      },
    };
  } catch (error) {
    if (ownsDb) await db.close();
    throw error;
  }
}
