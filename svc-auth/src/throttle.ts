/**
 * Login throttling with sliding windows: failed logins per account and login attempts per client
 * address, each counted over the last `windowSeconds`.
 * NOTE: the counters live in this process, so each replica counts separately and N replicas
 * allow up to N times the configured attempts.
 */
import type { ThrottleSettings } from "./config.ts";

/** Maximum number of keys one limiter tracks; the least recently active key is dropped first. */
export const THROTTLE_MAX_TRACKED_KEYS = 10_000;

export interface SlidingWindowOptions {
  limit: number;
  windowMs: number;
  maxKeys?: number;
  clock?: () => number;
}

/** Counts events per key over a sliding window, in bounded memory. */
export class SlidingWindowLimiter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #clock: () => number;
  /** Event times per key, oldest first, at most `limit` of them; Map order is recency. */
  readonly #events = new Map<string, number[]>();

  constructor(options: SlidingWindowOptions) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxKeys = options.maxKeys ?? THROTTLE_MAX_TRACKED_KEYS;
    this.#clock = options.clock ?? Date.now;
  }

  /** Returns how many milliseconds `key` must wait, or 0 when it is under the limit. */
  retryAfterMs(key: string): number {
    const events = this.#current(key);
    if (events.length < this.#limit) return 0;
    const oldest = events[events.length - this.#limit] ?? 0;
    return Math.max(1, oldest + this.#windowMs - this.#clock());
  }

  record(key: string): void {
    const events = this.#current(key);
    events.push(this.#clock());
    if (events.length > this.#limit) events.splice(0, events.length - this.#limit);
    this.#events.delete(key);
    this.#events.set(key, events);
    this.#evictOverflow();
  }

  reset(key: string): void {
    this.#events.delete(key);
  }

  get trackedKeys(): number {
    return this.#events.size;
  }

  /** Returns the events of `key` inside the window, dropping older ones. */
  #current(key: string): number[] {
    const events = this.#events.get(key);
    if (events === undefined) return [];
    const start = this.#clock() - this.#windowMs;
    while (events.length > 0 && (events[0] ?? 0) <= start) events.shift();
    if (events.length === 0) this.#events.delete(key);
    return events;
  }

  #evictOverflow(): void {
    for (const key of this.#events.keys()) {
      if (this.#events.size <= this.#maxKeys) return;
      this.#events.delete(key);
    }
  }
}

/** Outcome of a throttle check: allowed, or blocked with a wait in whole seconds. */
export type ThrottleDecision =
  | { allowed: true }
  | { allowed: false; retryAfterSeconds: number; scope: "account" | "address" };

/** The two login limiters. Accounts are keyed by normalized email, whether or not it exists. */
export class LoginThrottle {
  readonly #accounts: SlidingWindowLimiter;
  readonly #addresses: SlidingWindowLimiter;

  constructor(settings: ThrottleSettings, clock?: () => number) {
    const windowMs = settings.windowSeconds * 1000;
    this.#accounts = new SlidingWindowLimiter({
      limit: settings.maxFailuresPerAccount,
      windowMs,
      clock,
    });
    this.#addresses = new SlidingWindowLimiter({
      limit: settings.maxAttemptsPerAddress,
      windowMs,
      clock,
    });
  }

  /** Checks the address first, then the account; a blocked request is not counted. */
  check(email: string, address: string): ThrottleDecision {
    const addressWait = this.#addresses.retryAfterMs(address);
    if (addressWait > 0) return blocked(addressWait, "address");
    const accountWait = this.#accounts.retryAfterMs(email);
    if (accountWait > 0) return blocked(accountWait, "account");
    return { allowed: true };
  }

  recordAttempt(address: string): void {
    this.#addresses.record(address);
  }

  recordFailure(email: string): void {
    this.#accounts.record(email);
  }

  recordSuccess(email: string): void {
    this.#accounts.reset(email);
  }
}

function blocked(waitMs: number, scope: "account" | "address"): ThrottleDecision {
  return { allowed: false, retryAfterSeconds: Math.ceil(waitMs / 1000), scope };
}
