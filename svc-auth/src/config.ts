/** Settings of the auth service, read once from the environment at start. */
import { type Env, type EnvReader, loadConfig } from "@mp3converter/lib/config";
import { LOG_LEVELS } from "@mp3converter/lib/log";
import { type PrivateSigningJwk, parseSigningKeySet } from "@mp3converter/lib/tokens";

export const SIGNUP_MODES = ["open", "admin", "closed"] as const;
/** Who may call `POST /signup`: anyone, an admin's token only, or nobody. */
export type SignupMode = (typeof SIGNUP_MODES)[number];

export interface ThrottleSettings {
  maxFailuresPerAccount: number;
  maxAttemptsPerAddress: number;
  windowSeconds: number;
}

export interface AuthConfig {
  logLevel: string;
  port: number;
  host: string;
  databaseUrl: string;
  signingKeys: PrivateSigningJwk[];
  issuer: string;
  audience: string;
  tokenTtlSeconds: number;
  signupMode: SignupMode;
  /** Take the client address from the first `X-Forwarded-For` hop. */
  trustProxy: boolean;
  throttle: ThrottleSettings;
}

const ONE_YEAR_SECONDS = 365 * 24 * 3600;

function readSigningKeys(env: EnvReader): PrivateSigningJwk[] {
  const raw = env.string("JWT_SIGNING_KEYS", { example: '"$(bun run jwt:generate-key)"' });
  if (raw === undefined) return [];
  try {
    return parseSigningKeySet(raw);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    env.addProblem(
      `JWT_SIGNING_KEYS is invalid: ${reason}. Generate a key set with bun run jwt:generate-key`,
    );
    return [];
  }
}

function describeAuthConfig(env: EnvReader): AuthConfig {
  return {
    logLevel: env.oneOf("LOG_LEVEL", LOG_LEVELS, { default: "info" }),
    port: env.int("PORT", { default: 5000, min: 0, max: 65535 }),
    host: env.string("HOST", { default: "0.0.0.0" }),
    databaseUrl: env.url("DATABASE_URL", ["mysql", "sqlite"]),
    signingKeys: readSigningKeys(env),
    issuer: env.string("JWT_ISSUER", { default: "mp3converter-auth" }),
    audience: env.string("JWT_AUDIENCE", { default: "mp3converter" }),
    tokenTtlSeconds: env.int("JWT_TTL_SECONDS", {
      default: 86_400,
      min: 60,
      max: ONE_YEAR_SECONDS,
    }),
    signupMode: env.oneOf("SIGNUP_MODE", SIGNUP_MODES, { default: "open" }),
    trustProxy: env.bool("TRUST_PROXY", { default: false }),
    throttle: {
      maxFailuresPerAccount: env.int("LOGIN_MAX_FAILURES_PER_ACCOUNT", { default: 5, min: 1 }),
      maxAttemptsPerAddress: env.int("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", { default: 30, min: 1 }),
      windowSeconds: env.int("LOGIN_WINDOW_SECONDS", { default: 900, min: 1, max: 86_400 }),
    },
  };
}

/** Reads and checks the auth settings; throws `ConfigError` naming every bad variable. */
export function readAuthConfig(env: Env): Readonly<AuthConfig> {
  return loadConfig(describeAuthConfig, env);
}
