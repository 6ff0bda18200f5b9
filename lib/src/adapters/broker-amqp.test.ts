/**
 * Tests of the RabbitMQ adapter that the in-process broker has no counterpart for: reconnection,
 * outages, heartbeats and queue declarations that conflict. The shared server at
 * `AMQP_TEST_URL` is never restarted. A test closes only its own connections, found by their
 * unique `connection_name` with `rabbitmqctl`, or sends them through a TCP proxy it starts itself.
 */
import {
  afterAll,
  afterEach,
  beforeAll,
  describe,
  expect,
  setDefaultTimeout,
  test,
} from "bun:test";
import { execFile } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import * as amqp from "amqplib";
import { createLogger } from "../log.ts";
import type { Broker, Delivery } from "../ports/broker.ts";
import { deadLetterQueueName } from "../ports/broker.ts";
import {
  AmqpBroker,
  BrokerConnectError,
  BrokerUnavailableError,
  RECONNECT_MAX_DELAY_MS,
  reconnectDelayMs,
} from "./amqp-broker.ts";
import { openBroker, QueueMismatchError } from "./broker.ts";

const AMQP_TEST_URL = process.env.AMQP_TEST_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const AMQP_PORT = Number(new URL(AMQP_TEST_URL).port || 5672);

/** Maximum wait for a condition, so a broken adapter fails instead of hanging. */
const WAIT_DEADLINE_MS = 20_000;

/** Maximum run time of one `rabbitmqctl` call. */
const RABBITMQCTL_TIMEOUT_MS = 30_000;

// Above WAIT_DEADLINE_MS plus a rabbitmqctl call, so a failed wait reports its condition.
setDefaultTimeout(60_000);

const run = promisify(execFile);

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_DEADLINE_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Creates a logger whose JSON lines the test can read back. */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    service: "broker-amqp-test",
    level: "debug",
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  const messages = () => lines.map((line) => String(line.msg));
  return { logger, lines, messages };
}

/** Finds the server-side process id of the connection named `name`, or null. */
async function connectionPid(name: string): Promise<string | null> {
  const { stdout } = await run(
    "rabbitmqctl",
    ["list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
    { timeout: RABBITMQCTL_TIMEOUT_MS },
  );
  for (const line of stdout.split("\n")) {
    if (line.includes(`{"connection_name","${name}"}`)) return line.split("\t")[0] ?? null;
  }
  return null;
}

/** Lists `timeout` (the negotiated heartbeat in seconds) of the connection named `name`. */
async function connectionHeartbeat(name: string): Promise<number | null> {
  const { stdout } = await run(
    "rabbitmqctl",
    ["list_connections", "timeout", "client_properties", "-q", "--no-table-headers"],
    { timeout: RABBITMQCTL_TIMEOUT_MS },
  );
  for (const line of stdout.split("\n")) {
    if (line.includes(`{"connection_name","${name}"}`)) return Number(line.split("\t")[0]);
  }
  return null;
}

/** Makes RabbitMQ close the connection named `name`, as an operator or a failover would. */
async function closeConnection(name: string): Promise<void> {
  let pid: string | null = null;
  await waitForAsync(`connection ${name} listed by rabbitmqctl`, async () => {
    pid = await connectionPid(name);
    return pid !== null;
  });
  await run("rabbitmqctl", ["close_connection", pid as unknown as string, "closed by a test"], {
    timeout: RABBITMQCTL_TIMEOUT_MS,
  });
}

async function waitForAsync(what: string, condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_DEADLINE_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_DEADLINE_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Starts a TCP proxy to RabbitMQ on an ephemeral port. `cut()` drops its connections and closes
 * new ones at once until `restore()`. `stall()` stops forwarding bytes but keeps the sockets.
 */
async function startProxy() {
  const sockets = new Set<net.Socket>();
  let closingNew = false;
  let stalled = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    if (closingNew) {
      client.destroy();
      return;
    }
    const upstream = net.connect(AMQP_PORT, "127.0.0.1");
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
      if (stalled) socket.pause();
    }
    client.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk) => client.write(chunk));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    /** Number of TCP connections the proxy has accepted so far. */
    accepted: () => accepted,
    cut() {
      closingNew = true;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      closingNew = false;
    },
    stall() {
      stalled = true;
      for (const socket of sockets) socket.pause();
    },
    unstall() {
      stalled = false;
      for (const socket of sockets) socket.resume();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let queueCounter = 0;

function uniqueQueueName(label: string): string {
  queueCounter += 1;
  return `test-broker-amqp-${crypto.randomUUID().slice(0, 8)}-${label}-${queueCounter}`;
}

function uniqueConnectionName(label: string): string {
  return `broker-amqp-test-${label}-${crypto.randomUUID()}`;
}

describe("amqp broker", () => {
  let admin: AmqpBroker;
  const brokers: Broker[] = [];
  const queues: string[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    admin = await AmqpBroker.connect(AMQP_TEST_URL, {
      logger: createLogger({ service: "broker-amqp-test", level: "silent" }),
      maxDeliveries: 5,
      connectionName: uniqueConnectionName("admin"),
    });
  });

  afterEach(async () => {
    await Promise.all(brokers.splice(0).map((broker) => broker.close()));
    for (const cleanup of cleanups.splice(0)) await cleanup();
    await admin.deleteQueues(queues.splice(0));
  });

  afterAll(async () => {
    await admin.close();
  });

  async function open(url: string, options: { connectionName?: string } = {}) {
    const capture = capturingLogger();
    const connectionName = options.connectionName ?? uniqueConnectionName("broker");
    const broker = await openBroker(url, { logger: capture.logger, connectionName });
    brokers.push(broker);
    return { broker, connectionName, ...capture };
  }

  function declaredQueue(label: string): string {
    const queue = uniqueQueueName(label);
    queues.push(queue);
    return queue;
  }

  test("consumer resumes after server closes connection", async () => {
    const { broker, connectionName, messages, lines } = await open(AMQP_TEST_URL);
    const queue = declaredQueue("resume");
    await broker.declareQueues([queue]);
    const deliveries: Delivery[] = [];
    await broker.consume(
      queue,
      async (delivery) => {
        deliveries.push(delivery);
        return "ack";
      },
      { prefetch: 2 },
    );
    await broker.publish(queue, Buffer.from("before"));
    await waitFor("delivery before the outage", () => deliveries.length === 1);

    await closeConnection(connectionName);
    await waitFor("reconnect", () => messages().includes("broker reconnected"));
    await waitFor("consumer restart", () => messages().includes("broker consumer resumed"));
    expect(broker.health().connected).toBe(true);

    await broker.publish(queue, Buffer.from("after"));
    await waitFor("delivery after the reconnect", () => deliveries.length === 2);
    expect(deliveries.map((d) => d.body.toString())).toEqual(["before", "after"]);

    const disconnected = lines.find((line) => line.msg === "broker disconnected");
    expect(String(disconnected?.reason)).toContain("CONNECTION_FORCED");
    const reconnecting = lines.find((line) => line.msg === "broker reconnecting");
    expect(typeof reconnecting?.delay_ms).toBe("number");
    expect(messages()).not.toContain("broker channel error");
    expect(messages()).not.toContain("broker channel closed; reconnecting");
  });

  test("consumer recovers from queue deletion", async () => {
    const { broker, messages } = await open(AMQP_TEST_URL);
    const queue = declaredQueue("deleted");
    await broker.declareQueues([queue]);
    const deliveries: Delivery[] = [];
    await broker.consume(
      queue,
      async (delivery) => {
        deliveries.push(delivery);
        return "ack";
      },
      { prefetch: 1 },
    );

    await admin.deleteQueues([queue]);
    await waitFor("consumer cancel", () => messages().includes("broker cancelled the consumer"));
    await waitFor("consumer restart", () => messages().includes("broker consumer resumed"));
    await broker.publish(queue, Buffer.from("after deletion"));
    await waitFor("delivery after the deletion", () => deliveries.length === 1);
    expect(deliveries[0]?.body.toString()).toBe("after deletion");
  });

  test("publish during outage rejects", async () => {
    const proxy = await startProxy();
    cleanups.push(() => proxy.close());
    const { broker, messages } = await open(proxy.url);
    const queue = declaredQueue("outage");
    await broker.declareQueues([queue]);
    const deliveries: Delivery[] = [];
    await broker.consume(
      queue,
      async (delivery) => {
        deliveries.push(delivery);
        return "ack";
      },
      { prefetch: 1 },
    );

    proxy.cut();
    await waitFor("disconnect", () => !broker.health().connected);
    const error = await broker.publish(queue, Buffer.from("during")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String((error as Error).message)).toContain(queue);
    expect(broker.health().detail).toContain("reconnecting in");
    await waitFor("failed reconnect", () => messages().includes("broker reconnect failed"));

    proxy.restore();
    await waitFor("reconnect", () => broker.health().connected);
    await waitFor("consumer restart", () => messages().includes("broker consumer resumed"));
    await broker.publish(queue, Buffer.from("after"));
    await waitFor("delivery after the outage", () => deliveries.length === 1);
    expect(deliveries[0]?.body.toString()).toBe("after");
  });

  test("close stops reconnecting", async () => {
    const proxy = await startProxy();
    cleanups.push(() => proxy.close());
    const { broker, messages } = await open(proxy.url);

    proxy.cut();
    await waitFor("failed reconnect", () => messages().includes("broker reconnect failed"));
    await broker.close();
    const accepted = proxy.accepted();
    proxy.restore();
    // Longer than the next scheduled delay (at most 1000 ms for the second attempt), so a timer
    // that close() missed would have fired by now.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(proxy.accepted()).toBe(accepted);
    expect(messages()).not.toContain("broker reconnected");
    expect(broker.health().connected).toBe(false);
    expect(broker.health().detail).toBe("closed by the application");
  });

  test("publish without confirm times out", async () => {
    const proxy = await startProxy();
    cleanups.push(() => proxy.close());
    const { broker } = await open(proxy.url);
    const queue = declaredQueue("stall");
    await broker.declareQueues([queue]);

    proxy.stall();
    const error = await broker.publish(queue, Buffer.from("unconfirmed")).catch((e: unknown) => e);
    proxy.unstall();
    expect(error).toBeInstanceOf(Error);
    expect(String((error as Error).message)).toContain("timed out");
  });

  test("redelivers message of a dead consumer", async () => {
    const first = await open(AMQP_TEST_URL);
    const second = await open(AMQP_TEST_URL);
    const queue = declaredQueue("survivor");
    await first.broker.declareQueues([queue]);

    const held = gate();
    const firstDeliveries: Delivery[] = [];
    await first.broker.consume(
      queue,
      async (delivery) => {
        firstDeliveries.push(delivery);
        if (firstDeliveries.length === 1) await held.promise;
        return "ack";
      },
      { prefetch: 1 },
    );
    await second.broker.publish(queue, Buffer.from("survivor"), { messageId: "m-survivor" });
    await waitFor("first consumer handling", () => firstDeliveries.length === 1);

    await closeConnection(first.connectionName);
    const secondDeliveries: Delivery[] = [];
    const secondSubscription = await second.broker.consume(
      queue,
      async (delivery) => {
        secondDeliveries.push(delivery);
        return "ack";
      },
      { prefetch: 1 },
    );
    await waitFor("redelivery to the second consumer", () => secondDeliveries.length === 1);
    const redelivered = secondDeliveries[0] as Delivery;
    expect(redelivered.body.toString()).toBe("survivor");
    expect(redelivered.messageId).toBe("m-survivor");
    expect(redelivered.redelivered).toBe(true);
    expect(redelivered.deliveryCount).toBe(1);

    // The first handler now finishes on a channel that no longer exists, so its ack is dropped.
    held.open();
    await waitFor("first consumer restart", () =>
      first.messages().includes("broker consumer resumed"),
    );
    expect(first.messages()).toContain(
      "delivery settled after its channel closed; RabbitMQ redelivers it",
    );
    expect(first.messages()).not.toContain("broker channel error");

    await secondSubscription.cancel();
    await second.broker.publish(queue, Buffer.from("next"));
    await waitFor("delivery to the restarted consumer", () => firstDeliveries.length === 2);
    expect(firstDeliveries[1]?.body.toString()).toBe("next");
    expect(secondDeliveries.length).toBe(1);
  });

  test("declareQueues reports a mismatched queue", async () => {
    const { broker } = await open(AMQP_TEST_URL);
    const queue = declaredQueue("classic");
    const connection = await amqp.connect(AMQP_TEST_URL);
    try {
      const channel = await connection.createChannel();
      await channel.assertQueue(queue, { durable: true });
    } finally {
      await connection.close();
    }

    const error = await broker.declareQueues([queue]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueMismatchError);
    expect((error as QueueMismatchError).queue).toBe(queue);
    expect(String((error as Error).message)).toContain(`delete_queue ${queue}`);

    // Only the declaration channel failed, so the connection stays usable.
    expect(broker.health().connected).toBe(true);
    const other = declaredQueue("after-mismatch");
    await broker.declareQueues([other]);
    await broker.publish(other, Buffer.from("still connected"));
  });

  test("heartbeat defaults to 30 seconds", async () => {
    const defaulted = await open(AMQP_TEST_URL);
    const explicit = await open(`${AMQP_TEST_URL}?heartbeat=10`);
    let defaultSeconds: number | null = null;
    let explicitSeconds: number | null = null;
    await waitForAsync("both connections listed", async () => {
      defaultSeconds = await connectionHeartbeat(defaulted.connectionName);
      explicitSeconds = await connectionHeartbeat(explicit.connectionName);
      return defaultSeconds !== null && explicitSeconds !== null;
    });
    expect(defaultSeconds as number | null).toBe(30);
    expect(explicitSeconds as number | null).toBe(10);
  });

  test("publish accepts a Uint8Array body", async () => {
    const { broker } = await open(AMQP_TEST_URL);
    const queue = declaredQueue("bytes");
    await broker.declareQueues([queue]);
    const bytes = new Uint8Array([104, 105]);
    await broker.publish(queue, bytes as Buffer);
    const deliveries: Delivery[] = [];
    await broker.consume(
      queue,
      async (delivery) => {
        deliveries.push(delivery);
        return "ack";
      },
      { prefetch: 1 },
    );
    await waitFor("delivery", () => deliveries.length === 1);
    expect(deliveries[0]?.body.toString()).toBe("hi");
  });

  test("dead-letter queue keeps RabbitMQ death headers", async () => {
    const { broker } = await open(AMQP_TEST_URL);
    const queue = declaredQueue("death");
    await broker.declareQueues([queue]);
    await broker.publish(queue, Buffer.from("dead"));
    await broker.consume(queue, async () => "reject", { prefetch: 1 });
    const dead: Delivery[] = [];
    await broker.consume(
      deadLetterQueueName(queue),
      async (delivery) => {
        dead.push(delivery);
        return "ack";
      },
      { prefetch: 1 },
    );
    await waitFor("dead-lettered delivery", () => dead.length === 1);
    const deaths = dead[0]?.headers["x-death"] as Array<Record<string, unknown>>;
    expect(deaths[0]?.reason).toBe("rejected");
    expect(deaths[0]?.queue).toBe(queue);
    expect(dead[0]?.headers["x-delivery-count"]).toBeUndefined();
  });

  test("openBroker rejects an unreachable server", async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const capture = capturingLogger();
    const opening = openBroker(`amqp://guest:s3cret-pw@127.0.0.1:${port}`, {
      logger: capture.logger,
    });
    const error = await opening.then(
      () => undefined,
      (reason: unknown) => reason,
    );

    expect(error).toBeInstanceOf(BrokerConnectError);
    expect((error as BrokerConnectError).message).toStartWith(
      `connecting to the broker at 127.0.0.1:${port} failed: `,
    );
    expect((error as BrokerConnectError).message).toContain("ECONNREFUSED");
    expect((error as BrokerConnectError).message).not.toContain("s3cret-pw");
    expect((error as BrokerConnectError).code).toBe("ECONNREFUSED");
  });
});

describe("reconnectDelayMs", () => {
  test("grows and stays within the cap", () => {
    expect(reconnectDelayMs(0, () => 0)).toBe(250);
    expect(reconnectDelayMs(0, () => 1)).toBe(500);
    expect(reconnectDelayMs(1, () => 1)).toBe(1000);
    expect(reconnectDelayMs(50, () => 1)).toBe(RECONNECT_MAX_DELAY_MS);
    expect(reconnectDelayMs(50, () => 0)).toBe(RECONNECT_MAX_DELAY_MS / 2);
  });
});
