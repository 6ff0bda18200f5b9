/**
 * Password policy and hashing: argon2id with the OWASP Password Storage Cheat Sheet's first
 * recommended setting (19 MiB of memory, 2 iterations, 1 lane).
 */
import { hash, verify } from "@node-rs/argon2";

export const PASSWORD_MIN_LENGTH = 10;
export const PASSWORD_MAX_LENGTH = 256;

/** A UTF-16 high surrogate without its low half, or a low surrogate without its high half. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** `Algorithm.Argon2id` of @node-rs/argon2, whose const enum isolated modules cannot import. */
const ARGON2ID = 2;

export const ARGON2_OPTIONS = {
  algorithm: ARGON2ID,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
} as const;

/**
 * Returns why a password breaks the policy, or null when it meets it. Length counts Unicode code
 * points, and a long password is rejected, never truncated.
 */
export function passwordProblem(password: string): string | null {
  // A lone surrogate has no UTF-8 encoding, so the hash would see U+FFFD in its place and a
  // different password would log in.
  if (LONE_SURROGATE.test(password)) {
    return "The password contains an invalid Unicode character (a lone surrogate). Remove it.";
  }
  const length = [...password].length;
  if (length >= PASSWORD_MIN_LENGTH && length <= PASSWORD_MAX_LENGTH) return null;
  return (
    `The password must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters long, ` +
    `but it has ${length}.`
  );
}

/** Hashes a password into a PHC string that records the algorithm, parameters and salt. */
export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS);
}

/**
 * Checks passwords against stored hashes. For an unknown account it verifies against a dummy
 * hash with the same parameters, so that both cases take about the same time.
 */
export class PasswordVerifier {
  /** Hashed at construction, so that the first unknown account costs a verification only. */
  readonly #dummyHash: Promise<string>;

  constructor() {
    this.#dummyHash = hashPassword(crypto.randomUUID());
    // A failure surfaces where the hash is awaited; this only keeps it from being unhandled.
    this.#dummyHash.catch(() => {});
  }

  /** Returns whether `password` matches `storedHash`; a corrupt hash counts as no match. */
  async verify(storedHash: string, password: string): Promise<boolean> {
    try {
      return await verify(storedHash, password);
    } catch {
      return false;
    }
  }

  /** Spends the work of one verification and returns false. */
  async verifyUnknownAccount(password: string): Promise<false> {
    await this.verify(await this.#dummyHash, password);
    return false;
  }
}
