/**
 * In-process broker (`memory:`) for the all-in-one mode. It keeps the semantics of the RabbitMQ
 * adapter: manual acknowledgement, bounded prefetch, redelivery counting, a delivery limit and
 * dead-letter queues. Messages live in memory only, so they are lost when the process exits
 * (`durable` is false).
 */
import type { Logger } from "../log.ts";
import type {
  Broker,
  BrokerHealth,
  ConsumeOptions,
  Delivery,
  DeliveryOutcome,
  MessageHandler,
  PublishOptions,
  Subscription,
} from "../ports/broker.ts";
import { deadLetterQueueName } from "../ports/broker.ts";
import {
  BrokerClosedError,
  checkPrefetch,
  checkQueueName,
  DEATH_QUEUE_HEADER,
  DEATH_REASON_HEADER,
  handlerErrorBackoffMs,
  QueueMismatchError,
  runHandler,
  sleep,
} from "./broker.ts";

interface StoredMessage {
  /** Publish order within the queue. A requeued message goes back to its place in that order. */
  sequence: number;
  body: Buffer;
  messageId: string | undefined;
  headers: Record<string, unknown>;
  deliveryCount: number;
  redelivered: boolean;
}

interface MemoryQueue {
  name: string;
  /** Ready messages ordered by `sequence`, without the messages being handled. */
  messages: StoredMessage[];
  consumers: MemoryConsumer[];
  /** Index in `consumers` where the round-robin search for the next consumer starts. */
  nextConsumer: number;
  /** Deliveries whose handler has not settled yet, including those of cancelled consumers. */
  unsettled: number;
  /** Null for a dead-letter queue, which has none of its own and no delivery limit. */
  deadLetterQueue: string | null;
}

/** A caller of `waitUntilIdle` that waits for all of `queues`. */
interface IdleWaiter {
  queues: readonly MemoryQueue[];
  resolve(): void;
}

function isIdle(queue: MemoryQueue): boolean {
  return queue.messages.length === 0 && queue.unsettled === 0;
}

class MemoryConsumer implements Subscription {
  readonly queue: MemoryQueue;
  readonly handler: MessageHandler;
  readonly prefetch: number;
  readonly inFlight = new Set<Promise<void>>();
  /** Aborted by `cancel()` to cut short the backoff of a failed delivery. */
  readonly abort = new AbortController();
  #cancelling: Promise<void> | undefined;
  readonly #onCancel: (consumer: MemoryConsumer) => void;

  constructor(
    queue: MemoryQueue,
    handler: MessageHandler,
    prefetch: number,
    onCancel: (consumer: MemoryConsumer) => void,
  ) {
    this.queue = queue;
    this.handler = handler;
    this.prefetch = prefetch;
    this.#onCancel = onCancel;
  }

  get cancelled(): boolean {
    return this.#cancelling !== undefined;
  }

  cancel(): Promise<void> {
    if (!this.#cancelling) {
      this.#onCancel(this);
      this.abort.abort();
      this.#cancelling = Promise.all(this.inFlight).then(() => undefined);
    }
    return this.#cancelling;
  }
}

/**
 * Broker inside one process. Queues are FIFO; several consumers of one queue are served
 * round-robin, each holding at most `prefetch` unsettled deliveries. A requeued message returns
 * to its original position (ahead of messages published after it), as RabbitMQ does where it
 * can. Every delivery gets its own copy of the body and headers, so a consumer cannot change
 * what another one receives.
 */
export class MemoryBroker implements Broker {
  readonly durable = false;
  readonly #logger: Logger;
  readonly #maxDeliveries: number;
  readonly #queues = new Map<string, MemoryQueue>();
  readonly #consumers = new Set<MemoryConsumer>();
  readonly #idleWaiters = new Set<IdleWaiter>();
  #sequence = 0;
  #closing: Promise<void> | undefined;

  constructor(options: { logger: Logger; maxDeliveries: number }) {
    this.#logger = options.logger;
    this.#maxDeliveries = options.maxDeliveries;
  }

  async declareQueues(queues: readonly string[]): Promise<void> {
    this.#checkOpen("declareQueues");
    for (const name of queues) checkQueueName(name);
    for (const name of queues) {
      const deadLetter = deadLetterQueueName(name);
      this.#declare(deadLetter, null);
      this.#declare(name, deadLetter);
    }
  }

  async publish(queue: string, body: Buffer, options: PublishOptions = {}): Promise<void> {
    this.#checkOpen("publish");
    const target = this.#queueOrThrow(queue, "publish");
    this.#enqueue(target, {
      sequence: this.#sequence++,
      body: Buffer.from(body),
      messageId: options.messageId,
      headers: { ...options.headers },
      deliveryCount: 0,
      redelivered: false,
    });
  }

  async consume(
    queue: string,
    handler: MessageHandler,
    options: ConsumeOptions,
  ): Promise<Subscription> {
    this.#checkOpen("consume");
    checkPrefetch(options.prefetch);
    const source = this.#queueOrThrow(queue, "consume");
    const consumer = new MemoryConsumer(source, handler, options.prefetch, (c) =>
      this.#removeConsumer(c),
    );
    source.consumers.push(consumer);
    this.#consumers.add(consumer);
    this.#dispatch(source);
    return consumer;
  }

  /**
   * Waits until none of `queues` contains a ready or an unsettled message and returns true, or
   * returns false once `timeoutMs` has passed. The all-in-one runner calls it before it stops a
   * consumer, so that the messages already queued for that consumer are handled instead of being
   * lost at exit. A queue without consumers stays busy until the timeout.
   */
  async waitUntilIdle(queues: readonly string[], timeoutMs: number): Promise<boolean> {
    const targets = queues.map((name) => this.#queueOrThrow(name, "waitUntilIdle"));
    if (targets.every(isIdle)) return true;
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const waiter: IdleWaiter = { queues: targets, resolve: () => resolve(true) };
    this.#idleWaiters.add(waiter);
    const timer = setTimeout(() => resolve(false), timeoutMs);
    try {
      return await promise;
    } finally {
      clearTimeout(timer);
      this.#idleWaiters.delete(waiter);
    }
  }

  health(): BrokerHealth {
    if (this.#closing) return { connected: false, detail: "in-process broker is closed" };
    return { connected: true, detail: "in-process broker" };
  }

  close(): Promise<void> {
    if (!this.#closing) {
      const cancels = [...this.#consumers].map((consumer) => consumer.cancel());
      this.#closing = Promise.all(cancels).then(() => undefined);
    }
    return this.#closing;
  }

  #checkOpen(operation: string): void {
    if (this.#closing) throw new BrokerClosedError(operation);
  }

  #declare(name: string, deadLetterQueue: string | null): void {
    const existing = this.#queues.get(name);
    if (!existing) {
      this.#queues.set(name, {
        name,
        messages: [],
        consumers: [],
        nextConsumer: 0,
        unsettled: 0,
        deadLetterQueue,
      });
      return;
    }
    if (existing.deadLetterQueue !== deadLetterQueue) {
      const expected = deadLetterQueue === null ? "a dead-letter queue" : "a work queue";
      throw new QueueMismatchError(
        name,
        `queue ${name} exists with other settings; declaring it as ${expected} failed, ` +
          "so pick queue names that do not end in .dlq",
      );
    }
  }

  #queueOrThrow(name: string, operation: string): MemoryQueue {
    const queue = this.#queues.get(name);
    if (!queue) {
      throw new Error(
        `broker ${operation} failed: queue ${name} is not declared; call declareQueues first`,
      );
    }
    return queue;
  }

  #removeConsumer(consumer: MemoryConsumer): void {
    const consumers = consumer.queue.consumers;
    const index = consumers.indexOf(consumer);
    if (index >= 0) {
      consumers.splice(index, 1);
      if (consumer.queue.nextConsumer > index) consumer.queue.nextConsumer -= 1;
    }
    this.#consumers.delete(consumer);
  }

  /** Inserts a message by `sequence`, which puts a requeued message back at its old place. */
  #enqueue(queue: MemoryQueue, message: StoredMessage): void {
    const messages = queue.messages;
    let index = messages.length;
    while (index > 0 && (messages[index - 1]?.sequence ?? -1) > message.sequence) index -= 1;
    messages.splice(index, 0, message);
    this.#dispatch(queue);
  }

  /** Hands ready messages to consumers with free prefetch, round-robin. */
  #dispatch(queue: MemoryQueue): void {
    while (queue.messages.length > 0) {
      const consumer = this.#nextConsumer(queue);
      if (!consumer) return;
      const message = queue.messages.shift() as StoredMessage;
      this.#deliver(consumer, message);
    }
  }

  #nextConsumer(queue: MemoryQueue): MemoryConsumer | undefined {
    const count = queue.consumers.length;
    for (let step = 0; step < count; step += 1) {
      const index = (queue.nextConsumer + step) % count;
      const consumer = queue.consumers[index];
      if (consumer && !consumer.cancelled && consumer.inFlight.size < consumer.prefetch) {
        queue.nextConsumer = (index + 1) % count;
        return consumer;
      }
    }
    return undefined;
  }

  #deliver(consumer: MemoryConsumer, message: StoredMessage): void {
    const queue = consumer.queue;
    const delivery: Delivery = Object.freeze({
      queue: queue.name,
      body: Buffer.from(message.body),
      messageId: message.messageId,
      headers: Object.freeze(structuredClone(message.headers)),
      redelivered: message.redelivered,
      deliveryCount: message.deliveryCount,
    });
    queue.unsettled += 1;
    const task = this.#handle(consumer, message, delivery);
    consumer.inFlight.add(task);
    void task.then(() => {
      consumer.inFlight.delete(task);
      this.#dispatch(queue);
    });
  }

  /** Runs the handler and settles the message. Never rejects. */
  async #handle(consumer: MemoryConsumer, message: StoredMessage, delivery: Delivery) {
    // Yield first, so the handler never runs inside the publish or consume call that
    // triggered the delivery.
    await Promise.resolve();
    const result = await runHandler(consumer.handler, delivery, this.#logger);
    if (result.failed) {
      await sleep(handlerErrorBackoffMs(message.deliveryCount), consumer.abort.signal);
    }
    this.#settle(consumer.queue, message, result.outcome);
    consumer.queue.unsettled -= 1;
    this.#wakeIdleWaiters();
  }

  #wakeIdleWaiters(): void {
    for (const waiter of this.#idleWaiters) {
      if (waiter.queues.every(isIdle)) waiter.resolve();
    }
  }

  #settle(queue: MemoryQueue, message: StoredMessage, outcome: DeliveryOutcome): void {
    if (outcome === "ack") return;
    if (outcome === "reject") {
      this.#deadLetter(queue, message, "rejected");
      return;
    }
    if (queue.deadLetterQueue !== null && message.deliveryCount + 1 > this.#maxDeliveries) {
      this.#deadLetter(queue, message, "delivery_limit");
      return;
    }
    message.deliveryCount += 1;
    message.redelivered = true;
    this.#enqueue(queue, message);
  }

  #deadLetter(queue: MemoryQueue, message: StoredMessage, reason: string): void {
    const fields = {
      queue: queue.name,
      message_id: message.messageId,
      delivery_count: message.deliveryCount,
      reason,
    };
    const target =
      queue.deadLetterQueue === null ? undefined : this.#queues.get(queue.deadLetterQueue);
    if (!target) {
      // A dead-letter queue has none of its own, so RabbitMQ drops a message rejected there.
      this.#logger.warn(fields, "message rejected on a dead-letter queue and dropped");
      return;
    }
    const headers = { ...message.headers };
    // Only the first death is recorded, as RabbitMQ does for these headers.
    if (headers[DEATH_REASON_HEADER] === undefined) {
      headers[DEATH_REASON_HEADER] = reason;
      headers[DEATH_QUEUE_HEADER] = queue.name;
    }
    this.#logger.warn({ ...fields, dead_letter_queue: target.name }, "message dead-lettered");
    this.#enqueue(target, {
      sequence: this.#sequence++,
      body: message.body,
      messageId: message.messageId,
      headers,
      deliveryCount: 0,
      redelivered: false,
    });
  }
}
