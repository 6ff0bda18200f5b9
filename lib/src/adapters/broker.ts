/**
 * Opens the broker adapter that a URL's scheme selects, and contains the rules both adapters share:
 * the delivery limit, the backoff after a handler error, and how a handler's result becomes an
 * outcome.
 */
import type { Logger } from "../log.ts";
import { errorFields } from "../log.ts";
import type { Broker, Delivery, DeliveryOutcome, MessageHandler } from "../ports/broker.ts";

/** Maximum number of requeues of one message. The next requeue dead-letters it instead. */
export const DEFAULT_MAX_DELIVERIES = 5;

/** Backoff before a message whose handler threw goes back to the queue, for `deliveryCount` 0. */
export const HANDLER_ERROR_BACKOFF_BASE_MS = 100;

/** Upper bound of that backoff, which doubles with each earlier requeue. */
export const HANDLER_ERROR_BACKOFF_MAX_MS = 5_000;

/** Header that a dead-lettered message carries with the reason: `rejected` or `delivery_limit`. */
export const DEATH_REASON_HEADER = "x-first-death-reason";

/** Header that a dead-lettered message carries with the name of the queue it came from. */
export const DEATH_QUEUE_HEADER = "x-first-death-queue";

/**
 * Raised by `declareQueues` when a queue exists with other settings than the adapter declares,
 * for example a classic queue where a quorum queue is expected.
 */
export class QueueMismatchError extends Error {
  readonly queue: string;

  constructor(queue: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "QueueMismatchError";
    this.queue = queue;
  }
}

/** Raised by every call on a broker after `close()`. */
export class BrokerClosedError extends Error {
  constructor(operation: string) {
    super(`broker ${operation} failed: the broker is closed; open a new one with openBroker`);
    this.name = "BrokerClosedError";
  }
}

export interface BrokerOptions {
  /** Receives connection state changes, handler errors and dead-lettering events. */
  logger: Logger;
  /** Maximum number of requeues before dead-lettering, `DEFAULT_MAX_DELIVERIES` if absent. */
  maxDeliveries?: number;
  /**
   * Name the RabbitMQ management tools show for the connection (`connection_name`). The default
   * is `mp3converter-<pid>`, and the in-process broker ignores it.
   */
  connectionName?: string;
}

/**
 * Opens a broker: `amqp:` and `amqps:` connect to RabbitMQ, `memory:` creates an in-process
 * broker. Each `memory:` call creates a separate broker, so services that must share one in a
 * single process are given the same instance instead of the same URL.
 */
export async function openBroker(url: string, options: BrokerOptions): Promise<Broker> {
  const maxDeliveries = options.maxDeliveries ?? DEFAULT_MAX_DELIVERIES;
  if (!Number.isInteger(maxDeliveries) || maxDeliveries < 0) {
    throw new RangeError(`maxDeliveries=${maxDeliveries} is invalid; expected an integer >= 0`);
  }
  const scheme = schemeOf(url);
  const resolved = { ...options, maxDeliveries };
  switch (scheme) {
    case "memory": {
      const { MemoryBroker } = await import("./memory-broker.ts");
      return new MemoryBroker(resolved);
    }
    case "amqp":
    case "amqps": {
      const { AmqpBroker } = await import("./amqp-broker.ts");
      return AmqpBroker.connect(url, resolved);
    }
    default:
      throw new Error(
        `broker URL scheme ${scheme}: is not supported; use amqp:, amqps: or memory:`,
      );
  }
}

function schemeOf(url: string): string {
  try {
    return new URL(url).protocol.replace(/:$/, "");
  } catch {
    // The URL is not echoed because it may carry a password.
    throw new Error("broker URL is not a valid URL; expected for example amqp://host:5672");
  }
}

/** Returns the backoff in milliseconds before a failed delivery is requeued. */
export function handlerErrorBackoffMs(deliveryCount: number): number {
  const exponent = Math.min(Math.max(deliveryCount, 0), 20);
  return Math.min(HANDLER_ERROR_BACKOFF_BASE_MS * 2 ** exponent, HANDLER_ERROR_BACKOFF_MAX_MS);
}

/** Result of running a handler: the outcome, and whether the handler threw. */
export interface HandlerResult {
  outcome: DeliveryOutcome;
  failed: boolean;
}

const OUTCOMES: readonly string[] = ["ack", "requeue", "reject"];

/**
 * Runs a handler and turns a throw, a rejection or a value that is not an outcome into
 * `requeue`, logging the error with the ids of the delivery.
 */
export async function runHandler(
  handler: MessageHandler,
  delivery: Delivery,
  logger: Logger,
): Promise<HandlerResult> {
  const fields = {
    queue: delivery.queue,
    message_id: delivery.messageId,
    delivery_count: delivery.deliveryCount,
  };
  try {
    const outcome = await handler(delivery);
    if (OUTCOMES.includes(outcome)) return { outcome, failed: false };
    logger.error({ ...fields, outcome: String(outcome) }, "message handler returned no outcome");
  } catch (error) {
    logger.warn({ ...fields, err: errorFields(error) }, "message handler failed");
  }
  return { outcome: "requeue", failed: true };
}

/**
 * Waits `ms` milliseconds, or less when `signal` aborts. It never rejects, so a cancelled
 * consumer settles its delivery at once instead of finishing the backoff.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * Checks that a queue name is usable by both adapters. RabbitMQ limits names to 255 bytes, and
 * the dead-letter queue adds 4 to that.
 */
export function checkQueueName(queue: string): void {
  if (queue.length === 0 || Buffer.byteLength(queue) > 250 || queue.startsWith("amq.")) {
    throw new RangeError(
      `queue name "${queue}" is invalid; use 1 to 250 bytes that do not start with "amq."`,
    );
  }
}

/** Checks a consumer's prefetch, which both adapters need to be a positive integer. */
export function checkPrefetch(prefetch: number): void {
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535) {
    throw new RangeError(`prefetch=${prefetch} is invalid; expected an integer from 1 to 65535`);
  }
}
