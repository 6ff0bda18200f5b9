/**
 * Contract suite of the broker port, run against the in-process broker and against the RabbitMQ
 * server at `AMQP_TEST_URL` (default amqp://guest:guest@127.0.0.1:5672). Every run uses random
 * queue names and deletes its RabbitMQ queues afterwards.
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
import { createLogger } from "../log.ts";
import type { Broker, Delivery, DeliveryOutcome } from "../ports/broker.ts";
import { deadLetterQueueName } from "../ports/broker.ts";
import { AmqpBroker } from "./amqp-broker.ts";
import {
  BrokerClosedError,
  DEATH_QUEUE_HEADER,
  DEATH_REASON_HEADER,
  openBroker,
  QueueMismatchError,
} from "./broker.ts";
import { MemoryBroker } from "./memory-broker.ts";

const AMQP_TEST_URL = process.env.AMQP_TEST_URL ?? "amqp://guest:guest@127.0.0.1:5672";

/** Maximum wait for a condition in these tests, so a broken broker fails instead of hanging. */
const WAIT_DEADLINE_MS = 15_000;

// Above WAIT_DEADLINE_MS, so a failed wait reports what it waited for instead of a timeout.
setDefaultTimeout(30_000);

const silentLogger = createLogger({ service: "broker-test", level: "silent" });

/** Polls `condition` every 10 ms until it holds, failing with `what` after the deadline. */
async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_DEADLINE_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A promise with its resolve function, for handlers that wait for the test. */
function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

let queueCounter = 0;

/** Returns a queue name unique to this test run. */
function uniqueQueueName(label: string): string {
  queueCounter += 1;
  return `test-broker-${crypto.randomUUID().slice(0, 8)}-${label}-${queueCounter}`;
}

/** Records every delivery of a consumer, deciding each outcome with `decide`. */
async function collect(
  broker: Broker,
  queue: string,
  decide: (delivery: Delivery, index: number) => DeliveryOutcome | Promise<DeliveryOutcome> = () =>
    "ack",
  prefetch = 10,
) {
  const deliveries: Delivery[] = [];
  const subscription = await broker.consume(
    queue,
    async (delivery) => {
      deliveries.push(delivery);
      return decide(delivery, deliveries.length - 1);
    },
    { prefetch },
  );
  return { deliveries, subscription };
}

interface BrokerFixture {
  open(options?: { maxDeliveries?: number }): Promise<Broker>;
  /** Deletes the given work queues and their dead-letter queues after a test. */
  deleteQueues(queues: string[]): Promise<void>;
}

/** Registers the contract tests that every broker adapter must pass. */
function brokerContract(name: string, fixture: () => BrokerFixture) {
  describe(`${name} broker contract`, () => {
    const brokers: Broker[] = [];
    const queues: string[] = [];

    async function open(options?: { maxDeliveries?: number }): Promise<Broker> {
      const broker = await fixture().open(options);
      brokers.push(broker);
      return broker;
    }

    async function openWithQueue(options?: { maxDeliveries?: number }) {
      const broker = await open(options);
      const queue = uniqueQueueName("q");
      queues.push(queue);
      await broker.declareQueues([queue]);
      return { broker, queue };
    }

    afterEach(async () => {
      await Promise.all(brokers.splice(0).map((broker) => broker.close()));
      await fixture().deleteQueues(queues.splice(0));
    });

    test("publish delivers body, id and headers", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.publish(queue, Buffer.from("hello"), {
        messageId: "m-1",
        headers: { "x-request-id": "r-1" },
      });
      const { deliveries } = await collect(broker, queue);
      await waitFor("one delivery", () => deliveries.length === 1);
      const delivery = deliveries[0] as Delivery;
      expect(delivery.queue).toBe(queue);
      expect(delivery.body.toString()).toBe("hello");
      expect(Buffer.isBuffer(delivery.body)).toBe(true);
      expect(delivery.messageId).toBe("m-1");
      expect(delivery.headers["x-request-id"]).toBe("r-1");
      expect(delivery.redelivered).toBe(false);
      expect(delivery.deliveryCount).toBe(0);
    });

    test("declareQueues twice is safe", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.declareQueues([queue]);
      await broker.publish(queue, Buffer.from("after redeclare"));
      const { deliveries } = await collect(broker, queue);
      await waitFor("one delivery", () => deliveries.length === 1);
      expect(deliveries[0]?.body.toString()).toBe("after redeclare");
    });

    test("publish to undeclared queue rejects", async () => {
      const broker = await open();
      const queue = uniqueQueueName("undeclared");
      await expect(broker.publish(queue, Buffer.from("lost"))).rejects.toThrow(queue);
    });

    test("ack removes the message", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.publish(queue, Buffer.from("first"));
      const first = await collect(broker, queue);
      await waitFor("first delivery", () => first.deliveries.length === 1);
      await first.subscription.cancel();

      await broker.publish(queue, Buffer.from("sentinel"));
      const second = await collect(broker, queue);
      await waitFor("sentinel delivery", () => second.deliveries.length === 1);
      expect(second.deliveries[0]?.body.toString()).toBe("sentinel");
    });

    test("requeue redelivers with count", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.publish(queue, Buffer.from("again"), { messageId: "m-again" });
      const { deliveries } = await collect(broker, queue, (_, index) =>
        index < 2 ? "requeue" : "ack",
      );
      await waitFor("three deliveries", () => deliveries.length === 3);
      expect(deliveries.map((d) => d.redelivered)).toEqual([false, true, true]);
      expect(deliveries.map((d) => d.deliveryCount)).toEqual([0, 1, 2]);
      expect(deliveries.map((d) => d.body.toString())).toEqual(["again", "again", "again"]);
      expect(deliveries[2]?.messageId).toBe("m-again");
    });

    test("reject dead-letters with body and headers", async () => {
      const { broker, queue } = await openWithQueue();
      const body = Buffer.from([0, 1, 2, 250, 255]);
      await broker.publish(queue, body, { messageId: "m-bad", headers: { "x-job-id": "j-1" } });
      const work = await collect(broker, queue, () => "reject");
      const dead = await collect(broker, deadLetterQueueName(queue));
      await waitFor("dead-lettered delivery", () => dead.deliveries.length === 1);
      const delivery = dead.deliveries[0] as Delivery;
      expect(work.deliveries.length).toBe(1);
      expect(delivery.queue).toBe(deadLetterQueueName(queue));
      expect(delivery.body.equals(body)).toBe(true);
      expect(delivery.messageId).toBe("m-bad");
      expect(delivery.headers["x-job-id"]).toBe("j-1");
      expect(delivery.headers[DEATH_REASON_HEADER]).toBe("rejected");
      expect(delivery.headers[DEATH_QUEUE_HEADER]).toBe(queue);
      expect(delivery.deliveryCount).toBe(0);
    });

    test("throwing handler requeues the message", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.publish(queue, Buffer.from("flaky"));
      const { deliveries } = await collect(broker, queue, (_, index) => {
        if (index === 0) throw new Error("handler failure on purpose");
        return "ack";
      });
      await waitFor("redelivery", () => deliveries.length === 2);
      expect(deliveries[1]?.redelivered).toBe(true);
      expect(deliveries[1]?.deliveryCount).toBe(1);
      expect(deliveries[1]?.body.toString()).toBe("flaky");
    });

    test("delivery limit dead-letters the message", async () => {
      const { broker, queue } = await openWithQueue({ maxDeliveries: 2 });
      await broker.publish(queue, Buffer.from("poison"), { headers: { "x-job-id": "j-2" } });
      const work = await collect(broker, queue, () => "requeue");
      const dead = await collect(broker, deadLetterQueueName(queue));
      await waitFor("dead-lettered delivery", () => dead.deliveries.length === 1);
      // Two requeues are allowed, so the message is delivered three times.
      expect(work.deliveries.map((d) => d.deliveryCount)).toEqual([0, 1, 2]);
      const delivery = dead.deliveries[0] as Delivery;
      expect(delivery.body.toString()).toBe("poison");
      expect(delivery.headers["x-job-id"]).toBe("j-2");
      expect(delivery.headers[DEATH_REASON_HEADER]).toBe("delivery_limit");
      expect(delivery.headers[DEATH_QUEUE_HEADER]).toBe(queue);
    });

    test("delivery limit counts handler errors", async () => {
      const { broker, queue } = await openWithQueue({ maxDeliveries: 1 });
      await broker.publish(queue, Buffer.from("always fails"));
      const work = await collect(broker, queue, () => {
        throw new Error("handler failure on purpose");
      });
      const dead = await collect(broker, deadLetterQueueName(queue));
      await waitFor("dead-lettered delivery", () => dead.deliveries.length === 1);
      expect(work.deliveries.length).toBe(2);
      expect(dead.deliveries[0]?.headers[DEATH_REASON_HEADER]).toBe("delivery_limit");
    });

    test("prefetch bounds concurrent handlers", async () => {
      const { broker, queue } = await openWithQueue();
      const total = 9;
      for (let i = 0; i < total; i += 1) await broker.publish(queue, Buffer.from(`m${i}`));
      let active = 0;
      let maxActive = 0;
      let done = 0;
      let release = gate();
      await broker.consume(
        queue,
        async () => {
          active += 1;
          maxActive = Math.max(maxActive, active);
          await release.promise;
          active -= 1;
          done += 1;
          return "ack";
        },
        { prefetch: 3 },
      );
      while (done < total) {
        await waitFor("handlers to fill the prefetch", () => active === Math.min(3, total - done));
        // Gives a broker that ignores the prefetch the chance to start a fourth handler.
        await new Promise((resolve) => setTimeout(resolve, 100));
        const current = release;
        release = gate();
        current.open();
        const before = done;
        await waitFor("held handlers to finish", () => done > before);
      }
      expect(maxActive).toBe(3);
    });

    test("prefetch 1 keeps publish order", async () => {
      const { broker, queue } = await openWithQueue();
      const bodies = Array.from({ length: 50 }, (_, i) => `message-${i}`);
      for (const body of bodies) await broker.publish(queue, Buffer.from(body));
      const { deliveries } = await collect(broker, queue, () => "ack", 1);
      await waitFor("all deliveries", () => deliveries.length === bodies.length);
      expect(deliveries.map((d) => d.body.toString())).toEqual(bodies);
    });

    test("requeued message keeps its position", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.publish(queue, Buffer.from("first"));
      await broker.publish(queue, Buffer.from("second"));
      const { deliveries } = await collect(
        broker,
        queue,
        (_, index) => (index === 0 ? "requeue" : "ack"),
        1,
      );
      await waitFor("three deliveries", () => deliveries.length === 3);
      expect(deliveries.map((d) => d.body.toString())).toEqual(["first", "first", "second"]);
    });

    test("consumers of one queue share it", async () => {
      const { broker, queue } = await openWithQueue();
      const held = gate();
      const seen: string[] = [];
      const handler = (name: string) => async () => {
        seen.push(name);
        await held.promise;
        return "ack" as const;
      };
      await broker.consume(queue, handler("a"), { prefetch: 1 });
      await broker.consume(queue, handler("b"), { prefetch: 1 });
      await broker.publish(queue, Buffer.from("one"));
      await broker.publish(queue, Buffer.from("two"));
      await waitFor("both consumers busy", () => seen.length === 2);
      held.open();
      expect([...seen].sort()).toEqual(["a", "b"]);
    });

    test("deliveries do not share body buffers", async () => {
      const { broker, queue } = await openWithQueue();
      const published = Buffer.from("original");
      await broker.publish(queue, published);
      published.write("changed!");
      const seen: string[] = [];
      await broker.consume(
        queue,
        async (delivery) => {
          seen.push(delivery.body.toString());
          delivery.body.write("mutated!");
          return seen.length === 1 ? "requeue" : "ack";
        },
        { prefetch: 1 },
      );
      await waitFor("redelivery", () => seen.length === 2);
      expect(seen).toEqual(["original", "original"]);
    });

    test("cancel waits for the running handler", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.publish(queue, Buffer.from("slow"));
      await broker.publish(queue, Buffer.from("left"));
      const held = gate();
      let started = 0;
      let finished = false;
      const subscription = await broker.consume(
        queue,
        async () => {
          started += 1;
          await held.promise;
          finished = true;
          return "ack";
        },
        { prefetch: 1 },
      );
      await waitFor("handler start", () => started === 1);
      let cancelled = false;
      const cancelling = subscription.cancel().then(() => {
        cancelled = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(cancelled).toBe(false);
      held.open();
      await cancelling;
      expect(finished).toBe(true);
      expect(started).toBe(1);

      const rest = await collect(broker, queue);
      await waitFor("message left on the queue", () => rest.deliveries.length === 1);
      expect(rest.deliveries[0]?.body.toString()).toBe("left");
    });

    test("close waits for handlers", async () => {
      const { broker, queue } = await openWithQueue();
      await broker.publish(queue, Buffer.from("closing"));
      const held = gate();
      let started = false;
      let finished = false;
      await broker.consume(
        queue,
        async () => {
          started = true;
          await held.promise;
          finished = true;
          return "ack";
        },
        { prefetch: 1 },
      );
      await waitFor("handler start", () => started);
      const closing = broker.close();
      held.open();
      await closing;
      expect(finished).toBe(true);
      expect(broker.health().connected).toBe(false);
    });

    test("publish after close rejects", async () => {
      const { broker, queue } = await openWithQueue();
      expect(broker.health().connected).toBe(true);
      await broker.close();
      await expect(broker.publish(queue, Buffer.from("late"))).rejects.toBeInstanceOf(
        BrokerClosedError,
      );
      await expect(broker.consume(queue, async () => "ack", { prefetch: 1 })).rejects.toThrow(
        "closed",
      );
    });

    test("consume rejects invalid prefetch", async () => {
      const { broker, queue } = await openWithQueue();
      await expect(broker.consume(queue, async () => "ack", { prefetch: 0 })).rejects.toThrow(
        "prefetch=0",
      );
    });
  });
}

brokerContract("memory", () => ({
  open: (options) => openBroker("memory:", { logger: silentLogger, ...options }),
  deleteQueues: async () => {},
}));

describe("amqp", () => {
  let admin: AmqpBroker;

  beforeAll(async () => {
    admin = await AmqpBroker.connect(AMQP_TEST_URL, {
      logger: silentLogger,
      maxDeliveries: 5,
      connectionName: `broker-test-admin-${crypto.randomUUID()}`,
    });
  });

  afterAll(async () => {
    await admin.close();
  });

  test("amqp broker reports itself durable", async () => {
    expect(admin.durable).toBe(true);
  });

  brokerContract("amqp", () => ({
    open: (options) =>
      openBroker(AMQP_TEST_URL, {
        logger: silentLogger,
        connectionName: `broker-test-${crypto.randomUUID()}`,
        ...options,
      }),
    deleteQueues: (queues) => admin.deleteQueues(queues),
  }));
});

describe("memory broker", () => {
  test("serves consumers round-robin", async () => {
    const broker = await openBroker("memory:", { logger: silentLogger });
    const queue = uniqueQueueName("round-robin");
    await broker.declareQueues([queue]);
    const order: string[] = [];
    for (const name of ["a", "b", "c"]) {
      await broker.consume(
        queue,
        async () => {
          order.push(name);
          return "ack";
        },
        { prefetch: 10 },
      );
    }
    for (let i = 0; i < 6; i += 1) await broker.publish(queue, Buffer.from(`m${i}`));
    await waitFor("six deliveries", () => order.length === 6);
    expect(order).toEqual(["a", "b", "c", "a", "b", "c"]);
    await broker.close();
  });

  test("rejects a work queue named like a dead-letter queue", async () => {
    const broker = await openBroker("memory:", { logger: silentLogger });
    const queue = uniqueQueueName("clash");
    await broker.declareQueues([queue]);
    await expect(broker.declareQueues([deadLetterQueueName(queue)])).rejects.toBeInstanceOf(
      QueueMismatchError,
    );
    await broker.close();
  });

  test("drops a message rejected on a dead-letter queue", async () => {
    const broker = await openBroker("memory:", { logger: silentLogger });
    const queue = uniqueQueueName("dlq-reject");
    await broker.declareQueues([queue]);
    await broker.publish(deadLetterQueueName(queue), Buffer.from("dropped"));
    const dead = await collect(broker, deadLetterQueueName(queue), () => "reject");
    await waitFor("dead-letter delivery", () => dead.deliveries.length === 1);
    await dead.subscription.cancel();

    await broker.publish(deadLetterQueueName(queue), Buffer.from("sentinel"));
    const again = await collect(broker, deadLetterQueueName(queue));
    await waitFor("sentinel delivery", () => again.deliveries.length === 1);
    expect(again.deliveries[0]?.body.toString()).toBe("sentinel");
    await broker.close();
  });
});

describe("memory broker durability", () => {
  test("reports itself not durable", async () => {
    const broker = await openBroker("memory:", { logger: silentLogger });
    expect(broker.durable).toBe(false);
    await broker.close();
  });
});

describe("memory broker idle wait", () => {
  test("waits for queued and running messages", async () => {
    const broker = new MemoryBroker({ logger: silentLogger, maxDeliveries: 5 });
    const queue = uniqueQueueName("idle");
    await broker.declareQueues([queue]);
    const release = gate();
    const handled: string[] = [];
    await broker.consume(
      queue,
      async (delivery) => {
        await release.promise;
        handled.push(delivery.body.toString());
        return "ack";
      },
      { prefetch: 1 },
    );
    for (const body of ["a", "b", "c"]) await broker.publish(queue, Buffer.from(body));

    let idle: boolean | undefined;
    const waiting = broker.waitUntilIdle([queue], WAIT_DEADLINE_MS).then((result) => {
      idle = result;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(idle).toBeUndefined();
    release.open();
    await waiting;
    expect(idle).toBe(true);
    expect(handled).toEqual(["a", "b", "c"]);
    await broker.close();
  });

  test("returns at once for an empty queue", async () => {
    const broker = new MemoryBroker({ logger: silentLogger, maxDeliveries: 5 });
    const queue = uniqueQueueName("idle-empty");
    await broker.declareQueues([queue]);
    expect(await broker.waitUntilIdle([queue], 0)).toBe(true);
    await broker.close();
  });

  test("times out on a queue without consumers", async () => {
    const broker = new MemoryBroker({ logger: silentLogger, maxDeliveries: 5 });
    const queue = uniqueQueueName("idle-stuck");
    await broker.declareQueues([queue]);
    await broker.publish(queue, Buffer.from("waiting"));
    const started = Date.now();
    expect(await broker.waitUntilIdle([queue], 100)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    await broker.close();
  });
});

describe("openBroker", () => {
  test("rejects an unknown scheme", async () => {
    await expect(openBroker("redis://127.0.0.1", { logger: silentLogger })).rejects.toThrow(
      "scheme redis:",
    );
  });

  test("rejects an invalid URL without echoing it", async () => {
    const error = await openBroker("not a url:secret", { logger: silentLogger }).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(String(error.message)).not.toContain("secret");
  });

  test("rejects a negative maxDeliveries", async () => {
    await expect(
      openBroker("memory:", { logger: silentLogger, maxDeliveries: -1 }),
    ).rejects.toThrow("maxDeliveries=-1");
  });
});
