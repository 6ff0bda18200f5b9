/**
 * Message broker port. Production: RabbitMQ through amqplib (`amqp://`, `amqps://`). Embedded:
 * an in-process broker (`memory:`) with the same acknowledgement, prefetch, redelivery and
 * dead-letter behaviour, for the all-in-one mode and tests.
 */

/** Name of the dead-letter queue that belongs to a work queue. */
export function deadLetterQueueName(queue: string): string {
  return `${queue}.dlq`;
}

export interface PublishOptions {
  /** Stable id of the message, so that consumers can spot a duplicate. */
  messageId?: string;
  headers?: Record<string, string>;
}

/** One delivery of a message to a consumer. */
export interface Delivery {
  readonly queue: string;
  readonly body: Buffer;
  readonly messageId: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  /** Whether the broker delivered this message before (to this or another consumer). */
  readonly redelivered: boolean;
  /** How many earlier deliveries ended in a requeue; 0 on the first delivery. */
  readonly deliveryCount: number;
}

/**
 * What the consumer decided: `ack` removes the message, `requeue` puts it back for another try,
 * `reject` moves it to the queue's dead-letter queue. A handler that throws counts as `requeue`.
 * A message requeued more than `maxDeliveries` times is dead-lettered by the broker.
 */
export type DeliveryOutcome = "ack" | "requeue" | "reject";

export type MessageHandler = (delivery: Delivery) => Promise<DeliveryOutcome>;

export interface ConsumeOptions {
  /** Maximum number of unacknowledged deliveries this consumer holds at once. */
  prefetch: number;
}

export interface Subscription {
  /** Stops new deliveries and waits for the handlers in progress to finish. */
  cancel(): Promise<void>;
}

/** Connection state of a broker adapter, reported by `/readyz`. */
export interface BrokerHealth {
  connected: boolean;
  detail?: string;
}

export interface Broker {
  /**
   * Whether a queued message outlives a restart of the broker and of this process. RabbitMQ's
   * durable queues keep persistent messages, so this is true for it. The in-process broker keeps
   * messages in memory only, so this is false for it, and the gateway then republishes every
   * unfinished job at start-up.
   */
  readonly durable: boolean;
  /**
   * Declares durable work queues, each with its dead-letter queue. Safe to call again; adapters
   * declare the same queues again after a reconnect.
   */
  declareQueues(queues: readonly string[]): Promise<void>;
  /**
   * Publishes a persistent message and resolves once the broker has confirmed it. Rejects when
   * the broker is unreachable or refuses the message; the caller keeps it and retries later.
   */
  publish(queue: string, body: Buffer, options?: PublishOptions): Promise<void>;
  /** Starts consuming with manual acknowledgement; resumes by itself after a reconnect. */
  consume(queue: string, handler: MessageHandler, options: ConsumeOptions): Promise<Subscription>;
  health(): BrokerHealth;
  /** Cancels every consumer, waits for their handlers, and closes the connection. */
  close(): Promise<void>;
}
