/**
 * Timing of the retries that the `mp3` handler makes itself when sending an email fails. Waiting
 * inside the handler keeps the delivery, so a mail outage shorter than the retry window does not
 * use up the queue's delivery limit, which the broker's short backoff reaches within seconds.
 */

/** Delay before the first retry of a failed send. */
export const SEND_RETRY_INITIAL_DELAY_MS = 1_000;

/** Upper bound of the delay between two sends, which doubles from the initial delay. */
export const SEND_RETRY_MAX_DELAY_MS = 60_000;

/** Timing of the send retries of one delivery. */
export interface SendRetryPolicy {
  /**
   * Time from the first send of a delivery until the handler stops retrying and hands the message
   * back to the broker, in milliseconds. With 0 the handler sends once, as the broker's requeue
   * then retries.
   */
  windowMs: number;
  /** Delay before the first retry, in milliseconds. */
  initialDelayMs: number;
  /** Upper bound of the delay, in milliseconds. */
  maxDelayMs: number;
}

/**
 * Returns the delay before retry `retry` (0 for the first): the initial delay doubled `retry`
 * times and capped. "Equal jitter" picks a value in the upper half of that, so the emails waiting
 * in several processes do not all reach the mail server at the same moment.
 */
export function sendRetryDelayMs(
  retry: number,
  policy: Pick<SendRetryPolicy, "initialDelayMs" | "maxDelayMs">,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(retry, 0), 30);
  const capped = Math.min(policy.initialDelayMs * 2 ** exponent, policy.maxDelayMs);
  return Math.round(capped / 2 + (capped / 2) * random());
}
