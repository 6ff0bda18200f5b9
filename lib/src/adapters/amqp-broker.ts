/**
 * RabbitMQ adapter (`amqp:`, `amqps:`) through amqplib. Work queues are quorum queues with a
 * delivery limit and at-least-once dead-lettering into `<queue>.dlq`, so RabbitMQ itself counts
 * redeliveries, including those caused by a consumer that crashed. amqplib does not reconnect by
 * default, so this adapter reconnects, declares its queues again and restarts its consumers.
 */
import * as amqp from "amqplib";
import { errorFields, type Logger } from "../log.ts";
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
  type BrokerOptions,
  checkPrefetch,
  checkQueueName,
  handlerErrorBackoffMs,
  QueueMismatchError,
  runHandler,
  sleep,
} from "./broker.ts";

/** Heartbeat interval asked of RabbitMQ unless the URL sets `heartbeat`, in seconds. */
export const DEFAULT_HEARTBEAT_SECONDS = 30;

/** Maximum time for the TCP connect and AMQP handshake of one connection attempt. */
export const CONNECT_TIMEOUT_MS = 5_000;

/** Maximum time `publish` waits for the broker's confirm before it rejects. */
export const PUBLISH_CONFIRM_TIMEOUT_MS = 5_000;

/** Maximum time `close` waits for RabbitMQ to acknowledge closing the connection. */
export const CLOSE_TIMEOUT_MS = 5_000;

/** Delay before the first reconnection attempt; it doubles with each failed attempt. */
export const RECONNECT_INITIAL_DELAY_MS = 500;

/** Upper bound of the reconnection delay. */
export const RECONNECT_MAX_DELAY_MS = 30_000;

/** Header in which RabbitMQ quorum queues report how many times a message was returned. */
const DELIVERY_COUNT_HEADER = "x-delivery-count";

/** AMQP reply code of a declaration whose arguments differ from the existing queue's. */
const PRECONDITION_FAILED = 406;

/**
 * Returns the delay before reconnection attempt `attempt` (0 for the first): exponential, capped,
 * with "equal jitter" (a random value in the upper half) so that many clients do not reconnect
 * in step.
 */
export function reconnectDelayMs(attempt: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt, 0), 20);
  const capped = Math.min(RECONNECT_INITIAL_DELAY_MS * 2 ** exponent, RECONNECT_MAX_DELAY_MS);
  return Math.round(capped / 2 + (capped / 2) * random());
}

/** Raised by `publish` and `declareQueues` while the adapter has no connection to RabbitMQ. */
export class BrokerUnavailableError extends Error {
  constructor(operation: string, reason: string) {
    super(
      `broker ${operation} failed: not connected to RabbitMQ (${reason}); ` +
        "the adapter is reconnecting, so retry later",
    );
    this.name = "BrokerUnavailableError";
  }
}

/**
 * Raised by `connect` when the first connection to RabbitMQ fails. The message names the broker's
 * host and port but never the URL, which may carry a password. `code` is the cause's, such as
 * `ECONNREFUSED`.
 */
export class BrokerConnectError extends Error {
  readonly code: string | undefined;

  constructor(endpoint: string, cause: unknown) {
    super(`connecting to the broker at ${endpoint} failed: ${describe(cause)}`, { cause });
    this.name = "BrokerConnectError";
    const code = (cause as { code?: unknown } | null)?.code;
    this.code = typeof code === "string" ? code : undefined;
  }
}

type ConnectionState = "connected" | "disconnected" | "reconnecting" | "closed";

interface PendingPublish {
  queue: string;
  messageId: string;
  /** Set when RabbitMQ returned the message as unroutable, before its confirm arrives. */
  returned: boolean;
  fail(error: Error): void;
}

class AmqpSubscription implements Subscription {
  readonly queue: string;
  readonly handler: MessageHandler;
  readonly prefetch: number;
  readonly inFlight = new Set<Promise<void>>();
  /** Aborted by `cancel()` to cut short the backoff of a failed delivery. */
  readonly abort = new AbortController();
  /** The channel of the current consumer; null while disconnected. */
  channel: amqp.Channel | null = null;
  consumerTag: string | null = null;
  #cancelling: Promise<void> | undefined;
  readonly #stop: (subscription: AmqpSubscription) => Promise<void>;

  constructor(
    queue: string,
    handler: MessageHandler,
    prefetch: number,
    stop: (subscription: AmqpSubscription) => Promise<void>,
  ) {
    this.queue = queue;
    this.handler = handler;
    this.prefetch = prefetch;
    this.#stop = stop;
  }

  get cancelled(): boolean {
    return this.#cancelling !== undefined;
  }

  cancel(): Promise<void> {
    this.#cancelling ??= this.#stop(this);
    return this.#cancelling;
  }
}

/** Settings of the adapter after `openBroker` filled in the defaults. */
export interface AmqpBrokerOptions extends BrokerOptions {
  maxDeliveries: number;
}

/** Broker backed by a RabbitMQ server, with its own reconnection. */
export class AmqpBroker implements Broker {
  /** Work queues are durable quorum queues and every message is published persistent. */
  readonly durable = true;
  readonly #url: string;
  readonly #endpoint: string;
  readonly #connectionName: string;
  readonly #logger: Logger;
  readonly #maxDeliveries: number;
  readonly #declared = new Set<string>();
  readonly #subscriptions = new Set<AmqpSubscription>();
  readonly #pending = new Set<PendingPublish>();
  /** Publishes waiting for their confirm, which `close()` lets finish. */
  readonly #publishing = new Set<Promise<void>>();
  #connection: amqp.ChannelModel | null = null;
  #publishChannel: amqp.ConfirmChannel | null = null;
  #state: ConnectionState = "disconnected";
  #stateDetail = "not connected yet";
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #closing: Promise<void> | undefined;

  private constructor(url: string, options: AmqpBrokerOptions) {
    const parsed = new URL(url);
    if (!parsed.searchParams.has("heartbeat")) {
      parsed.searchParams.set("heartbeat", String(DEFAULT_HEARTBEAT_SECONDS));
    }
    this.#url = parsed.toString();
    this.#endpoint = `${parsed.hostname}:${parsed.port || (parsed.protocol === "amqps:" ? 5671 : 5672)}`;
    this.#connectionName = options.connectionName ?? `mp3converter-${process.pid}`;
    this.#logger = options.logger.child({
      broker: this.#endpoint,
      connection_name: this.#connectionName,
    });
    this.#maxDeliveries = options.maxDeliveries;
  }

  /** Connects to RabbitMQ at `url`, or rejects with `BrokerConnectError` if the first try fails. */
  static async connect(url: string, options: AmqpBrokerOptions): Promise<AmqpBroker> {
    const broker = new AmqpBroker(url, options);
    try {
      await broker.#establish();
    } catch (error) {
      throw new BrokerConnectError(broker.#endpoint, error);
    }
    broker.#logger.info("broker connected");
    return broker;
  }

  async declareQueues(queues: readonly string[]): Promise<void> {
    this.#checkOpen("declareQueues");
    for (const name of queues) checkQueueName(name);
    const connection = this.#requireConnection("declareQueues");
    await this.#assertQueues(connection, queues);
    for (const name of queues) this.#declared.add(name);
  }

  async publish(queue: string, body: Buffer, options: PublishOptions = {}): Promise<void> {
    this.#checkOpen("publish");
    const channel = this.#publishChannel;
    if (!channel || this.#state !== "connected") {
      throw new BrokerUnavailableError(`publish to queue ${queue}`, this.#stateDetail);
    }
    const messageId = options.messageId ?? crypto.randomUUID();
    // amqplib writes Buffers only; a Uint8Array would fail inside the encoder.
    const content = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const confirmed = new Promise<void>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        settle(
          new Error(
            `publish to queue ${queue} timed out after ${PUBLISH_CONFIRM_TIMEOUT_MS} ms ` +
              "waiting for the broker's confirm; keep the message and retry",
          ),
        );
      }, PUBLISH_CONFIRM_TIMEOUT_MS);
      const pending: PendingPublish = { queue, messageId, returned: false, fail: settle };
      this.#pending.add(pending);

      function settle(error: Error | null) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      }

      const onConfirm = (error: unknown) => {
        this.#pending.delete(pending);
        if (error) {
          settle(new Error(`publish to queue ${queue} failed: ${describe(error)}`));
        } else if (pending.returned) {
          settle(
            new Error(
              `publish to queue ${queue} failed: RabbitMQ has no such queue; ` +
                "call declareQueues first",
            ),
          );
        } else {
          settle(null);
        }
      };
      try {
        channel.publish(
          "",
          queue,
          content,
          {
            persistent: true,
            mandatory: true,
            messageId,
            headers: { ...options.headers },
          },
          onConfirm,
        );
      } catch (error) {
        onConfirm(error);
      }
    });
    this.#publishing.add(confirmed);
    try {
      await confirmed;
    } finally {
      this.#publishing.delete(confirmed);
    }
  }

  async consume(
    queue: string,
    handler: MessageHandler,
    options: ConsumeOptions,
  ): Promise<Subscription> {
    this.#checkOpen("consume");
    checkPrefetch(options.prefetch);
    const connection = this.#requireConnection(`consume from queue ${queue}`);
    const subscription = new AmqpSubscription(queue, handler, options.prefetch, (s) =>
      this.#stopConsumer(s),
    );
    await this.#startConsumer(subscription, connection);
    this.#subscriptions.add(subscription);
    return subscription;
  }

  health(): BrokerHealth {
    return {
      connected: this.#state === "connected",
      detail: this.#stateDetail,
    };
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /**
   * Deletes work queues and their dead-letter queues, with any messages in them. Meant for tests
   * that declare queues with random names.
   */
  async deleteQueues(queues: readonly string[]): Promise<void> {
    const connection = this.#requireConnection("deleteQueues");
    const channel = await connection.createChannel();
    channel.on("error", () => {});
    try {
      for (const name of queues) {
        await channel.deleteQueue(name);
        await channel.deleteQueue(deadLetterQueueName(name));
      }
    } finally {
      await channel.close().catch(() => {});
    }
  }

  #checkOpen(operation: string): void {
    if (this.#closing) throw new BrokerClosedError(operation);
  }

  #requireConnection(operation: string): amqp.ChannelModel {
    if (!this.#connection || this.#state !== "connected") {
      throw new BrokerUnavailableError(operation, this.#stateDetail);
    }
    return this.#connection;
  }

  /** Opens a connection, declares every known queue and restarts every consumer on it. */
  async #establish(): Promise<void> {
    const connection = await amqp.connect(this.#url, {
      clientProperties: { connection_name: this.#connectionName },
      timeout: CONNECT_TIMEOUT_MS,
    });
    try {
      this.#watchConnection(connection);
      await this.#assertQueues(connection, [...this.#declared]);
      const publishChannel = await connection.createConfirmChannel();
      this.#watchChannel(
        connection,
        publishChannel,
        "publish",
        () => this.#publishChannel === publishChannel,
      );
      publishChannel.on("return", (message: amqp.Message) => this.#onReturn(message));
      this.#connection = connection;
      this.#publishChannel = publishChannel;
    } catch (error) {
      await closeQuietly(connection);
      throw error;
    }
    this.#state = "connected";
    this.#stateDetail = `connected to ${this.#endpoint}`;
    for (const subscription of this.#subscriptions) {
      void this.#resumeConsumer(subscription, connection);
    }
  }

  #watchConnection(connection: amqp.ChannelModel): void {
    connection.on("error", (error: Error) => {
      // A 'close' event follows, which starts the reconnection.
      this.#logger.warn({ err: errorFields(error) }, "broker connection error");
    });
    connection.on("close", (error?: Error) => {
      this.#onConnectionLost(connection, error ? describe(error) : "connection closed");
    });
    connection.on("blocked", (reason: string) => {
      this.#logger.warn({ reason }, "broker blocked publishing");
    });
    connection.on("unblocked", () => this.#logger.info("broker unblocked publishing"));
  }

  /**
   * Listens for the unexpected close of a channel. A closed channel loses its consumer or its
   * confirms, so the adapter closes the whole connection and recovers through a reconnect.
   */
  #watchChannel(
    connection: amqp.ChannelModel,
    channel: amqp.Channel,
    role: string,
    isCurrent: () => boolean,
  ): void {
    channel.on("error", (error: Error) => {
      this.#logger.warn({ err: errorFields(error), channel: role }, "broker channel error");
    });
    channel.on("close", () => {
      // amqplib closes the channels of a lost connection just before it emits the connection's
      // 'close', so the check waits a turn to skip the channels of a connection already lost.
      setTimeout(() => {
        if (this.#connection !== connection || this.#closing || !isCurrent()) return;
        this.#logger.warn({ channel: role }, "broker channel closed; reconnecting");
        void closeQuietly(connection);
      }, 0);
    });
  }

  #onConnectionLost(connection: amqp.ChannelModel, reason: string): void {
    if (this.#connection !== connection) return;
    this.#connection = null;
    this.#publishChannel = null;
    for (const subscription of this.#subscriptions) {
      subscription.channel = null;
      subscription.consumerTag = null;
    }
    for (const pending of this.#pending) {
      pending.fail(new BrokerUnavailableError(`publish to queue ${pending.queue}`, reason));
    }
    this.#pending.clear();
    if (this.#closing) return;
    this.#state = "disconnected";
    this.#stateDetail = reason;
    this.#logger.warn({ reason }, "broker disconnected");
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    const delayMs = reconnectDelayMs(this.#attempt);
    this.#attempt += 1;
    this.#state = "reconnecting";
    this.#stateDetail = `${this.#stateDetail}; reconnecting in ${delayMs} ms`;
    this.#logger.info({ delay_ms: delayMs, attempt: this.#attempt }, "broker reconnecting");
    this.#reconnectTimer = setTimeout(() => void this.#reconnect(), delayMs);
  }

  async #reconnect(): Promise<void> {
    this.#reconnectTimer = undefined;
    if (this.#closing) return;
    try {
      await this.#establish();
    } catch (error) {
      this.#logger.warn(
        { err: errorFields(error), attempt: this.#attempt },
        "broker reconnect failed",
      );
      this.#stateDetail = `reconnect failed: ${describe(error)}`;
      if (!this.#closing) this.#scheduleReconnect();
      return;
    }
    if (this.#closing) {
      await closeQuietly(this.#connection);
      return;
    }
    this.#logger.info({ attempts: this.#attempt }, "broker reconnected");
    this.#attempt = 0;
  }

  /**
   * Declares each queue's dead-letter queue, then the queue itself. RabbitMQ closes the channel
   * on a failed declaration, so a short-lived channel is used.
   */
  async #assertQueues(connection: amqp.ChannelModel, queues: readonly string[]): Promise<void> {
    if (queues.length === 0) return;
    const channel = await connection.createChannel();
    // Failed declarations arrive here as well as through the rejected promise below.
    channel.on("error", () => {});
    let current = "";
    try {
      for (const name of queues) {
        current = deadLetterQueueName(name);
        await channel.assertQueue(current, {
          durable: true,
          arguments: { "x-queue-type": "quorum" },
        });
        current = name;
        await channel.assertQueue(name, {
          durable: true,
          arguments: this.#workQueueArguments(name),
        });
      }
    } catch (error) {
      throw declarationError(current, error);
    } finally {
      await channel.close().catch(() => {});
    }
  }

  #workQueueArguments(name: string): Record<string, unknown> {
    return {
      "x-queue-type": "quorum",
      "x-delivery-limit": this.#maxDeliveries,
      "x-dead-letter-exchange": "",
      "x-dead-letter-routing-key": deadLetterQueueName(name),
      // At-least-once dead-lettering (RabbitMQ 3.10+) keeps a message until the dead-letter
      // queue has confirmed it; RabbitMQ requires reject-publish overflow with it.
      "x-dead-letter-strategy": "at-least-once",
      "x-overflow": "reject-publish",
    };
  }

  #onReturn(message: amqp.Message): void {
    const messageId = message.properties.messageId as string | undefined;
    for (const pending of this.#pending) {
      if (!pending.returned && pending.messageId === messageId) {
        pending.returned = true;
        break;
      }
    }
    this.#logger.warn(
      { queue: message.fields.routingKey, message_id: messageId },
      "broker returned an unroutable message",
    );
  }

  async #startConsumer(subscription: AmqpSubscription, connection: amqp.ChannelModel) {
    const channel = await connection.createChannel();
    channel.on("error", () => {});
    try {
      await channel.prefetch(subscription.prefetch);
      const reply = await channel.consume(
        subscription.queue,
        (message) => this.#onMessage(subscription, channel, message),
        { noAck: false },
      );
      subscription.channel = channel;
      subscription.consumerTag = reply.consumerTag;
    } catch (error) {
      await channel.close().catch(() => {});
      throw new Error(
        `consume from queue ${subscription.queue} failed: ${describe(error)}; ` +
          "declare the queue with declareQueues first",
        { cause: error },
      );
    }
    channel.removeAllListeners("error");
    this.#watchChannel(
      connection,
      channel,
      `consume ${subscription.queue}`,
      () => subscription.channel === channel,
    );
  }

  /**
   * Restarts a consumer on a new connection once the handlers from the lost channel are done.
   * RabbitMQ has already requeued their messages, and waiting keeps the number of running
   * handlers within the prefetch.
   */
  async #resumeConsumer(subscription: AmqpSubscription, connection: amqp.ChannelModel) {
    await Promise.all(subscription.inFlight);
    if (subscription.cancelled || this.#connection !== connection) return;
    try {
      await this.#startConsumer(subscription, connection);
      this.#logger.info({ queue: subscription.queue }, "broker consumer resumed");
    } catch (error) {
      this.#logger.error(
        { err: errorFields(error), queue: subscription.queue },
        "broker consumer resume failed; reconnecting",
      );
      await closeQuietly(connection);
    }
  }

  #onMessage(
    subscription: AmqpSubscription,
    channel: amqp.Channel,
    message: amqp.ConsumeMessage | null,
  ): void {
    if (message === null) {
      // RabbitMQ cancels a consumer when its queue is deleted. A reconnect declares the queue
      // again and restarts the consumer.
      this.#logger.warn({ queue: subscription.queue }, "broker cancelled the consumer");
      if (this.#connection) void closeQuietly(this.#connection);
      return;
    }
    // A delivery that arrives after cancel() stays unacknowledged, and RabbitMQ requeues it
    // when the channel closes.
    if (subscription.cancelled) return;
    const task = this.#handle(subscription, channel, message);
    subscription.inFlight.add(task);
    void task.then(() => subscription.inFlight.delete(task));
  }

  // NOTE: RabbitMQ closes a consumer's channel when one delivery stays unacknowledged longer
  // than its `consumer_timeout` (30 minutes by default in 3.10, set only in rabbitmq.conf).
  // The adapter then reconnects and the message is redelivered, so handlers must finish sooner.
  async #handle(
    subscription: AmqpSubscription,
    channel: amqp.Channel,
    message: amqp.ConsumeMessage,
  ) {
    const delivery = toDelivery(subscription.queue, message);
    const result = await runHandler(subscription.handler, delivery, this.#logger);
    if (result.failed) {
      await sleep(handlerErrorBackoffMs(delivery.deliveryCount), subscription.abort.signal);
    }
    this.#settle(subscription, channel, message, result.outcome, delivery);
  }

  #settle(
    subscription: AmqpSubscription,
    channel: amqp.Channel,
    message: amqp.ConsumeMessage,
    outcome: DeliveryOutcome,
    delivery: Delivery,
  ): void {
    const fields = { queue: delivery.queue, message_id: delivery.messageId, outcome };
    // Delivery tags belong to one channel. After a reconnect RabbitMQ has requeued the message,
    // and settling it on another channel would close that channel with an error.
    if (subscription.channel !== channel) {
      this.#logger.info(
        fields,
        "delivery settled after its channel closed; RabbitMQ redelivers it",
      );
      return;
    }
    try {
      if (outcome === "ack") channel.ack(message);
      // RabbitMQ counts the requeue and dead-letters the message past `x-delivery-limit`.
      else if (outcome === "requeue") channel.nack(message, false, true);
      else channel.nack(message, false, false);
    } catch (error) {
      this.#logger.warn({ ...fields, err: errorFields(error) }, "delivery settle failed");
    }
  }

  /** Cancels a consumer, waits for its handlers, then closes its channel. */
  async #stopConsumer(subscription: AmqpSubscription): Promise<void> {
    this.#subscriptions.delete(subscription);
    subscription.abort.abort();
    const channel = subscription.channel;
    if (channel && subscription.consumerTag) {
      await channel.cancel(subscription.consumerTag).catch((error: unknown) => {
        this.#logger.warn(
          { err: errorFields(error), queue: subscription.queue },
          "consumer cancel failed",
        );
      });
    }
    await Promise.all(subscription.inFlight);
    subscription.channel = null;
    subscription.consumerTag = null;
    // Closing the channel returns the deliveries that arrived after the cancel to the queue.
    if (channel) await channel.close().catch(() => {});
  }

  async #shutdown(): Promise<void> {
    clearTimeout(this.#reconnectTimer);
    await Promise.all([...this.#subscriptions].map((subscription) => subscription.cancel()));
    // Each publish rejects by itself after PUBLISH_CONFIRM_TIMEOUT_MS, so this wait is bounded.
    await Promise.allSettled([...this.#publishing]);
    const connection = this.#connection;
    this.#state = "closed";
    this.#stateDetail = "closed by the application";
    if (!connection) return;
    this.#connection = null;
    this.#publishChannel = null;
    for (const pending of this.#pending) pending.fail(new BrokerClosedError("publish"));
    this.#pending.clear();
    await closeQuietly(connection);
    this.#logger.info("broker closed");
  }
}

/** Converts an amqplib message into the port's delivery, reading RabbitMQ's delivery count. */
function toDelivery(queue: string, message: amqp.ConsumeMessage): Delivery {
  const headers: Record<string, unknown> = { ...message.properties.headers };
  const count = headers[DELIVERY_COUNT_HEADER];
  delete headers[DELIVERY_COUNT_HEADER];
  return Object.freeze({
    queue,
    body: message.content,
    messageId: (message.properties.messageId as string | undefined) ?? undefined,
    headers: Object.freeze(headers),
    redelivered: message.fields.redelivered,
    deliveryCount: typeof count === "number" && count > 0 ? count : 0,
  });
}

function declarationError(queue: string, error: unknown): Error {
  const code = (error as { code?: unknown }).code;
  if (code === PRECONDITION_FAILED) {
    return new QueueMismatchError(
      queue,
      `queue ${queue} exists with other arguments than a quorum queue with dead-lettering ` +
        `(${describe(error)}); move its messages elsewhere, delete it (rabbitmqctl delete_queue ` +
        `${queue}) and start again, or choose another queue name`,
      { cause: error },
    );
  }
  return new Error(`declaring queue ${queue} failed: ${describe(error)}`, { cause: error });
}

/**
 * Closes a connection within `CLOSE_TIMEOUT_MS`. A connection whose peer stopped responding never
 * acknowledges the close, so its socket is destroyed after the timeout.
 */
async function closeQuietly(connection: amqp.ChannelModel | null): Promise<void> {
  if (!connection) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), CLOSE_TIMEOUT_MS);
  });
  const result = await Promise.race([connection.close().catch(() => "failed" as const), timeout]);
  clearTimeout(timer);
  if (result === "timeout") {
    // NOTE: `connection.stream` is an amqplib internal (the socket); amqplib 2.3.1 offers no
    // public way to drop a connection that does not respond.
    const internal = connection.connection as unknown as { stream?: { destroy(): void } };
    internal.stream?.destroy();
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
