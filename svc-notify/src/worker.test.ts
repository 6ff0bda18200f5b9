/**
 * Notify service tests on the in-process broker and a real `.eml` outbox in a temporary
 * directory. Mailers that fail on purpose stand in for a broken mail server. One test runs on the
 * RabbitMQ server at `AMQP_TEST_URL`, in queues with random names that it deletes afterwards.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { AmqpBroker } from "@mp3converter/lib/adapters/amqp-broker";
import { DEATH_REASON_HEADER, openBroker } from "@mp3converter/lib/adapters/broker";
import { createLogger, type Logger } from "@mp3converter/lib/log";
import {
  decodeMessage,
  encodeMessage,
  type JobEvent,
  JobEventSchema,
  type Mp3Message,
} from "@mp3converter/lib/messages";
import { type Broker, type Delivery, deadLetterQueueName } from "@mp3converter/lib/ports/broker";
import {
  MailConfigurationError,
  type Mailer,
  type MailMessage,
  type SentMail,
} from "@mp3converter/lib/ports/mail";
import { type AddressObject, type ParsedMail, simpleParser } from "mailparser";
import { type NotifyConfig, readNotifyConfig } from "./config.ts";
import { type NotifyService, startNotify } from "./service.ts";

/** Maximum wait for a condition, so a broken worker fails the test instead of hanging it. */
const WAIT_DEADLINE_MS = 15_000;

// Above WAIT_DEADLINE_MS, so a failed wait reports what it waited for instead of a timeout.
setDefaultTimeout(30_000);

const PUBLIC_URL = "http://127.0.0.1:8080";

const AMQP_TEST_URL = process.env.AMQP_TEST_URL ?? "amqp://guest:guest@127.0.0.1:5672";

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_DEADLINE_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Creates a logger whose JSON lines the test can read back. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(JSON.parse(line));
      callback();
    },
  });
  return { logger: createLogger({ service: "notify-test", level: "debug", destination }), lines };
}

function uniqueName(label: string): string {
  return `test-notify-${crypto.randomUUID().slice(0, 8)}-${label}`;
}

function mp3Message(overrides: Partial<Mp3Message> = {}): Mp3Message {
  const jobId = overrides.job_id ?? uniqueName("job");
  return {
    job_id: jobId,
    video_fid: `video-${jobId}`,
    mp3_fid: `mp3-${jobId}`,
    username: "alice@example.com",
    filename: "talk.mp4",
    request_id: `req-${jobId}`,
    ...overrides,
  };
}

/** Delays of the send retries in tests, in place of 1 s doubling up to 60 s. */
const TEST_RETRY_DELAYS = { initialMs: 20, maxMs: 200 };

/** A running service with its queues, what reached them, and its outbox. */
interface Harness {
  service: NotifyService;
  config: Readonly<NotifyConfig>;
  broker: Broker;
  mp3Queue: string;
  events: JobEvent[];
  deadLetters: Delivery[];
  outbox: string;
  lines: Record<string, unknown>[];
  publish(message: unknown): Promise<void>;
  readyz(): Promise<{ status: number; body: Record<string, unknown> }>;
  stop(): Promise<void>;
}

interface HarnessOptions {
  mailer?: Mailer;
  maxDeliveries?: number;
  /** Value of MAIL_RETRY_SECONDS, 5 by default. */
  mailRetrySeconds?: number;
  sendRetryDelays?: { initialMs: number; maxMs: number };
}

async function startHarness(options: HarnessOptions = {}) {
  const { logger, lines } = capturingLogger();
  const outbox = mkdtempSync(join(tmpdir(), "notify-outbox-"));
  const mp3Queue = uniqueName("mp3");
  const jobEventsQueue = uniqueName("job-events");
  const broker = await openBroker("memory:", { logger, maxDeliveries: options.maxDeliveries ?? 2 });
  const config = readNotifyConfig({
    BROKER_URL: "memory:",
    MAIL_URL: `file:${outbox}`,
    PUBLIC_URL,
    MP3_QUEUE: mp3Queue,
    JOB_EVENTS_QUEUE: jobEventsQueue,
    HEALTH_PORT: "0",
    // One message at a time, so a test can wait for a later message and then look at all
    // effects of the earlier ones.
    NOTIFY_PREFETCH: "1",
    MAIL_RETRY_SECONDS: String(options.mailRetrySeconds ?? 5),
  });
  let service: NotifyService;
  try {
    service = await startNotify(config, {
      broker,
      logger,
      mailer: options.mailer,
      sendRetryDelays: options.sendRetryDelays ?? TEST_RETRY_DELAYS,
    });
  } catch (error) {
    await broker.close();
    rmSync(outbox, { recursive: true, force: true });
    throw error;
  }

  const events: JobEvent[] = [];
  const deadLetters: Delivery[] = [];
  await broker.consume(
    jobEventsQueue,
    async (delivery) => {
      events.push(decodeMessage(JobEventSchema, delivery.body));
      return "ack";
    },
    { prefetch: 10 },
  );
  await broker.consume(
    deadLetterQueueName(mp3Queue),
    async (delivery) => {
      deadLetters.push(delivery);
      return "ack";
    },
    { prefetch: 10 },
  );

  const harness: Harness = {
    service,
    config,
    broker,
    mp3Queue,
    events,
    deadLetters,
    outbox,
    lines,
    publish: (message) =>
      broker.publish(
        mp3Queue,
        Buffer.isBuffer(message) ? message : encodeMessage(message as object),
      ),
    async readyz() {
      const response = await fetch(`http://127.0.0.1:${service.port}/readyz`);
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    },
    async stop() {
      await service.stop();
      await broker.close();
      rmSync(outbox, { recursive: true, force: true });
    },
  };
  return harness;
}

function outboxFiles(outbox: string): string[] {
  return readdirSync(outbox)
    .filter((name) => name.endsWith(".eml"))
    .map((name) => join(outbox, name));
}

/** Parses every `.eml` in the outbox and keeps those about `jobId`. */
async function emailsFor(outbox: string, jobId: string): Promise<ParsedMail[]> {
  const parsed = await Promise.all(
    outboxFiles(outbox).map((file) => simpleParser(readFileSync(file))),
  );
  return parsed.filter((mail) => mail.messageId?.startsWith(`<${jobId}.`));
}

describe("notify worker on the file outbox", () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness();
  });

  afterAll(async () => {
    await harness?.stop();
  });

  test("ready MP3 sends one email", async () => {
    const message = mp3Message();
    await harness.publish(message);
    await waitFor("notified event", () => harness.events.some((e) => e.job_id === message.job_id));

    const mails = await emailsFor(harness.outbox, message.job_id);
    expect(mails).toHaveLength(1);
    const mail = mails[0] as ParsedMail;
    const link = `${PUBLIC_URL}/download?fid=${message.mp3_fid}`;
    expect(mail.subject).toBe("Your MP3 is ready: talk.mp3");
    expect(mail.messageId).toBe(`<${message.job_id}.ready@mp3converter>`);
    expect((mail.to as AddressObject).text).toBe("alice@example.com");
    expect(mail.text).toContain(link);
    expect(mail.text).toContain(
      `curl -H "Authorization: Bearer $TOKEN" -o talk.mp3 \\\n  "${link}"`,
    );
    expect(mail.text).toContain(`${PUBLIC_URL}/jobs/${message.job_id}`);
    expect(mail.html).toContain(`href="${link}"`);
    expect(mail.headers.get("auto-submitted")).toBe("auto-generated");
  });

  test("ready email text part is readable as is", async () => {
    const message = mp3Message();
    await harness.publish(message);
    await waitFor("notified event", () => harness.events.some((e) => e.job_id === message.job_id));

    const file = outboxFiles(harness.outbox).find((path) => path.includes(message.job_id));
    const raw = readFileSync(file ?? "", "utf8");
    const textPart = raw.slice(raw.indexOf("Content-Type: text/plain"));
    expect(textPart).toStartWith(
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit",
    );
    expect(raw).toContain(`${PUBLIC_URL}/download?fid=${message.mp3_fid}`);
  });

  test("ready MP3 publishes notified", async () => {
    const message = mp3Message();
    await harness.publish(message);
    await waitFor("notified event", () => harness.events.some((e) => e.job_id === message.job_id));

    const event = harness.events.find((e) => e.job_id === message.job_id) as JobEvent;
    expect(event.state).toBe("notified");
    expect(event.mp3_fid).toBe(message.mp3_fid as string);
    expect(event.request_id).toBe(message.request_id);
    expect(event.at).toBeGreaterThan(0);
  });

  test("ready MP3 logs the outbox line", async () => {
    const message = mp3Message();
    await harness.publish(message);
    await waitFor("notified event", () => harness.events.some((e) => e.job_id === message.job_id));

    const line = harness.lines.find(
      (l) => l.msg === "email written to outbox" && l.job_id === message.job_id,
    );
    expect(line).toBeDefined();
    expect(line?.to).toBe("a***@example.com");
    expect(line?.download_url).toBe(`${PUBLIC_URL}/download?fid=${message.mp3_fid}`);
    expect(String(line?.path)).toStartWith(harness.outbox);
    expect(outboxFiles(harness.outbox)).toContain(String(line?.path));
    expect(JSON.stringify(harness.lines)).not.toContain("alice@example.com");
  });

  test("redelivery keeps the Message-ID", async () => {
    const message = mp3Message();
    await harness.publish(message);
    await harness.publish(message);
    await waitFor(
      "two notified events",
      () => harness.events.filter((e) => e.job_id === message.job_id).length === 2,
    );

    const mails = await emailsFor(harness.outbox, message.job_id);
    expect(mails).toHaveLength(2);
    expect(mails[0]?.messageId).toBe(`<${message.job_id}.ready@mp3converter>`);
    expect(mails[1]?.messageId).toBe(`<${message.job_id}.ready@mp3converter>`);
  });

  test("failed job sends one email and reports it", async () => {
    const failure = { code: "no_audio", message: "the video has no audio track" };
    const failed = mp3Message({ mp3_fid: null, failure });
    await harness.publish(failed);
    await waitFor("failed event", () => harness.events.some((e) => e.job_id === failed.job_id));

    const mails = await emailsFor(harness.outbox, failed.job_id);
    expect(mails).toHaveLength(1);
    expect(mails[0]?.subject).toBe("Your MP3 could not be made: talk.mp4");
    expect(mails[0]?.messageId).toBe(`<${failed.job_id}.failed@mp3converter>`);
    expect(mails[0]?.text).toContain("Reason: the video has no audio track");
    expect(mails[0]?.text).toContain("Upload a video that has sound.");
    const events = harness.events.filter((e) => e.job_id === failed.job_id);
    expect(events).toHaveLength(1);
    expect(events[0]?.state).toBe("failed");
    expect(events[0]?.email_sent).toBe(true);
    expect(events[0]?.failure).toEqual(failure);
    expect(events[0]?.request_id).toBe(failed.request_id);
  });

  test.each([
    ["body that is not JSON", Buffer.from("not json")],
    ["message missing fields", { job_id: "job-x" }],
    ["message with null mp3_fid and no failure", mp3Message({ mp3_fid: null })],
    ["username with a line break", mp3Message({ username: "a@example.com\r\nBcc: b@example.com" })],
  ])("%s is dead-lettered", async (_label, body) => {
    const before = harness.deadLetters.length;
    const filesBefore = outboxFiles(harness.outbox).length;
    await harness.publish(body);
    await waitFor("dead letter", () => harness.deadLetters.length === before + 1);

    const deadLetter = harness.deadLetters[before] as Delivery;
    expect(deadLetter.headers[DEATH_REASON_HEADER]).toBe("rejected");
    expect(outboxFiles(harness.outbox)).toHaveLength(filesBefore);
  });

  test("readiness reports ready", async () => {
    const { status, body } = await harness.readyz();
    expect(status).toBe(200);
    expect(body.status).toBe("ready");
  });

  test("unknown path gets a JSON 404", async () => {
    const response = await fetch(`http://127.0.0.1:${harness.service.port}/nope`);
    expect(response.status).toBe(404);
    expect(response.headers.get("x-request-id")).toBeTruthy();
    const body = (await response.json()) as { code?: string };
    expect(body.code).toBe("not_found");
  });
});

/** Mailer that records each `send` and fails it when `fail` returns an error for the attempt. */
class ScriptedMailer implements Mailer {
  sends: MailMessage[] = [];
  readonly #fail: (attempt: number) => Error | null;
  readonly #verifyError: Error | null;

  constructor(fail: (attempt: number) => Error | null, verifyError: Error | null = null) {
    this.#fail = fail;
    this.#verifyError = verifyError;
  }

  async verify(): Promise<void> {
    if (this.#verifyError) throw this.#verifyError;
  }

  async send(message: MailMessage): Promise<SentMail> {
    this.sends.push(message);
    const error = this.#fail(this.sends.length);
    if (error) throw error;
    return { messageId: message.messageId ?? "<none>" };
  }

  async close(): Promise<void> {}
}

function rejectedCredentials(): MailConfigurationError {
  return new MailConfigurationError("SMTP server rejected the credentials", {
    code: "EAUTH",
    responseCode: 535,
  });
}

describe("notify worker with a failing mailer", () => {
  test("configuration error requeues and marks mail down", async () => {
    const mailer = new ScriptedMailer(() => rejectedCredentials());
    // Without send retries, each delivery sends once and the broker's requeues do the retrying.
    const harness = await startHarness({ mailer, maxDeliveries: 2, mailRetrySeconds: 0 });
    try {
      const before = await harness.readyz();
      expect(before.status).toBe(200);

      const message = mp3Message();
      await harness.publish(message);
      await waitFor("dead letter", () => harness.deadLetters.length === 1);

      // The first delivery and two requeues, then the broker dead-letters the message.
      expect(mailer.sends).toHaveLength(3);
      expect(harness.deadLetters[0]?.headers[DEATH_REASON_HEADER]).toBe("delivery_limit");
      expect(harness.events).toHaveLength(0);

      const after = await harness.readyz();
      expect(after.status).toBe(503);
      const details = after.body.details as Record<string, string>;
      expect(details.mail).toContain("the user name and password in MAIL_URL");
      expect(details.broker).toBeUndefined();

      const errorLine = harness.lines.find(
        (l) => l.level === "error" && l.job_id === message.job_id,
      );
      expect(errorLine?.setting).toBe("the user name and password in MAIL_URL");
    } finally {
      await harness.stop();
    }
  });

  test("transient error retries and sends", async () => {
    const mailer = new ScriptedMailer((attempt) =>
      attempt === 1 ? Object.assign(new Error("connection reset"), { code: "ECONNRESET" }) : null,
    );
    const harness = await startHarness({ mailer });
    try {
      const message = mp3Message();
      await harness.publish(message);
      await waitFor("notified event", () => harness.events.length === 1);

      expect(mailer.sends).toHaveLength(2);
      expect(mailer.sends[1]?.messageId).toBe(mailer.sends[0]?.messageId as string);
      expect(harness.deadLetters).toHaveLength(0);
      expect((await harness.readyz()).status).toBe(200);
      const sentLine = harness.lines.find((l) => l.msg === "email sent");
      expect(sentLine?.redelivered).toBe(false);
    } finally {
      await harness.stop();
    }
  });

  test("failing sends report mail delivery degraded", async () => {
    let failing = true;
    const mailer = new ScriptedMailer(() =>
      failing ? Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) : null,
    );
    const harness = await startHarness({ mailer });
    try {
      await harness.publish(mp3Message());
      await waitFor("first failed send", () => mailer.sends.length >= 1);

      const during = await harness.readyz();
      expect(during.status).toBe(200);
      expect(during.body.status).toBe("degraded");
      expect(JSON.stringify(during.body)).toContain("ECONNREFUSED");

      failing = false;
      await waitFor("notified event", () => harness.events.length === 1);
      const after = await harness.readyz();
      expect(after.status).toBe(200);
      expect(after.body.status).toBe("ready");
    } finally {
      await harness.stop();
    }
  });

  test("mail recovers after a configuration error", async () => {
    const mailer = new ScriptedMailer((attempt) => (attempt === 1 ? rejectedCredentials() : null));
    const harness = await startHarness({ mailer });
    try {
      await harness.publish(mp3Message());
      await waitFor("notified event", () => harness.events.length === 1);

      expect(mailer.sends).toHaveLength(2);
      expect((await harness.readyz()).status).toBe(200);
    } finally {
      await harness.stop();
    }
  });
});

function connectionRefused(): Error {
  return Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:587"), {
    code: "ECONNREFUSED",
  });
}

/** Returns the `err.message` of a log line. */
function errorMessageOf(line: Record<string, unknown> | undefined): unknown {
  return (line?.err as { message?: unknown } | undefined)?.message;
}

describe("notify send retries", () => {
  test("outage longer than the broker's retries sends", async () => {
    // The broker's own requeues (100 ms doubling, 5 of them) end after about 3.1 s and 6 sends.
    const outageMs = 3_500;
    let failUntil = Number.POSITIVE_INFINITY;
    const mailer = new ScriptedMailer(() => (Date.now() < failUntil ? connectionRefused() : null));
    const harness = await startHarness({
      mailer,
      maxDeliveries: 5,
      mailRetrySeconds: 10,
      sendRetryDelays: { initialMs: 100, maxMs: 500 },
    });
    try {
      const message = mp3Message();
      failUntil = Date.now() + outageMs;
      await harness.publish(message);
      await waitFor("notified event", () =>
        harness.events.some((e) => e.job_id === message.job_id),
      );

      expect(harness.deadLetters).toHaveLength(0);
      expect(harness.events.filter((e) => e.job_id === message.job_id)).toHaveLength(1);
      expect(mailer.sends.length).toBeGreaterThan(6);
      const messageIds = new Set(mailer.sends.map((sent) => sent.messageId));
      expect([...messageIds]).toEqual([`<${message.job_id}.ready@mp3converter>`]);
      expect(harness.lines.filter((l) => l.msg === "message handler failed")).toHaveLength(0);
      const sentLine = harness.lines.find((l) => l.msg === "email sent");
      expect(sentLine?.redelivered).toBe(false);
    } finally {
      await harness.stop();
    }
  });

  test("retry is logged with attempt and delay", async () => {
    const mailer = new ScriptedMailer((attempt) => (attempt <= 2 ? connectionRefused() : null));
    const harness = await startHarness({ mailer });
    try {
      const message = mp3Message();
      await harness.publish(message);
      await waitFor("notified event", () => harness.events.length === 1);

      const retries = harness.lines.filter(
        (l) => l.msg === "email not sent; retrying" && l.job_id === message.job_id,
      );
      expect(retries).toHaveLength(2);
      expect(retries.map((l) => l.level)).toEqual(["warn", "warn"]);
      expect(retries.map((l) => l.attempt)).toEqual([1, 2]);
      // 20 ms, then 40 ms, each with equal jitter: a value in the upper half.
      expect(retries[0]?.delay_ms).toBeWithin(10, 21);
      expect(retries[1]?.delay_ms).toBeWithin(20, 41);
      expect(retries[0]?.message_id).toBe(`<${message.job_id}.ready@mp3converter>`);
      expect(retries[0]?.to).toBe("a***@example.com");
      expect(errorMessageOf(retries[0])).toContain("ECONNREFUSED");
      expect(JSON.stringify(harness.lines)).not.toContain("alice@example.com");
      expect(mailer.sends).toHaveLength(3);
    } finally {
      await harness.stop();
    }
  });

  test("used-up retry window dead-letters", async () => {
    const mailer = new ScriptedMailer(() => connectionRefused());
    const harness = await startHarness({ mailer, maxDeliveries: 1, mailRetrySeconds: 1 });
    try {
      const message = mp3Message();
      await harness.publish(message);
      await waitFor("dead letter", () => harness.deadLetters.length === 1);

      expect(harness.deadLetters[0]?.headers[DEATH_REASON_HEADER]).toBe("delivery_limit");
      expect(harness.events).toHaveLength(0);
      // Two deliveries, each retrying for the whole window of 1 s.
      expect(mailer.sends.length).toBeGreaterThan(4);
      const handlerFailures = harness.lines.filter((l) => l.msg === "message handler failed");
      expect(handlerFailures).toHaveLength(2);
      expect(errorMessageOf(handlerFailures[0])).toContain(
        "not sent within the retry window of 1000 ms",
      );
      const lastSends = harness.lines.filter(
        (l) => l.msg === "email not sent" && l.job_id === message.job_id,
      );
      expect(lastSends).toHaveLength(2);
      expect(lastSends[0]?.delay_ms).toBeUndefined();
    } finally {
      await harness.stop();
    }
  });

  test("configuration error waits and keeps mail down", async () => {
    const mailer = new ScriptedMailer((attempt) => (attempt <= 3 ? rejectedCredentials() : null));
    const harness = await startHarness({ mailer, sendRetryDelays: { initialMs: 400, maxMs: 400 } });
    try {
      const message = mp3Message();
      await harness.publish(message);
      await waitFor("first send", () => mailer.sends.length >= 1);

      const during = await harness.readyz();
      expect(during.status).toBe(503);
      const details = during.body.details as Record<string, string>;
      expect(details.mail).toContain("the user name and password in MAIL_URL");

      await waitFor("notified event", () => harness.events.length === 1);
      expect((await harness.readyz()).status).toBe(200);
      expect(mailer.sends).toHaveLength(4);
      expect(harness.deadLetters).toHaveLength(0);
      const errorLines = harness.lines.filter(
        (l) => l.level === "error" && l.job_id === message.job_id,
      );
      expect(errorLines.map((l) => l.attempt)).toEqual([1, 2, 3]);
      expect(errorLines[0]?.setting).toBe("the user name and password in MAIL_URL");
      expect(errorLines[0]?.delay_ms).toBeWithin(200, 401);
      expect(harness.lines.filter((l) => l.msg === "message handler failed")).toHaveLength(0);
    } finally {
      await harness.stop();
    }
  });

  test("stop during a retry requeues the message", async () => {
    const mailer = new ScriptedMailer(() => connectionRefused());
    const harness = await startHarness({
      mailer,
      mailRetrySeconds: 600,
      sendRetryDelays: { initialMs: 60_000, maxMs: 60_000 },
    });
    const { logger, lines } = capturingLogger();
    let second: NotifyService | undefined;
    try {
      const message = mp3Message();
      await harness.publish(message);
      await waitFor("retry wait", () =>
        harness.lines.some((l) => l.msg === "email not sent; retrying"),
      );

      const started = performance.now();
      await harness.service.stop();
      expect(performance.now() - started).toBeLessThan(1_000);
      expect(harness.lines.some((l) => String(l.msg).startsWith("email retries stopped"))).toBe(
        true,
      );
      expect(mailer.sends).toHaveLength(1);
      expect(harness.deadLetters).toHaveLength(0);
      expect(harness.events).toHaveLength(0);

      // A new notify with a working mailer gets the message, so the email is not lost.
      second = await startNotify(harness.config, { broker: harness.broker, logger });
      await waitFor("notified event", () => harness.events.length === 1);
      expect(harness.events[0]?.job_id).toBe(message.job_id);
      const mails = await emailsFor(harness.outbox, message.job_id);
      expect(mails).toHaveLength(1);
      expect(mails[0]?.messageId).toBe(`<${message.job_id}.ready@mp3converter>`);
      const sentLine = lines.find((l) => l.msg === "email written to outbox");
      expect(sentLine?.redelivered).toBe(true);
    } finally {
      await second?.stop();
      await harness.stop();
    }
  });
});

describe("notify send retries on RabbitMQ", () => {
  const mp3Queue = uniqueName("mp3");
  const jobEventsQueue = uniqueName("job-events");
  let admin: AmqpBroker;

  beforeAll(async () => {
    admin = await AmqpBroker.connect(AMQP_TEST_URL, {
      logger: createLogger({ service: "notify-test", level: "silent" }),
      maxDeliveries: 5,
      connectionName: uniqueName("admin"),
    });
    await admin.declareQueues([mp3Queue, jobEventsQueue]);
  });

  afterAll(async () => {
    await admin?.deleteQueues([mp3Queue, jobEventsQueue]);
    await admin?.close();
  });

  test("stop during a retry requeues", async () => {
    const { logger, lines } = capturingLogger();
    const mailer = new ScriptedMailer(() => connectionRefused());
    const config = readNotifyConfig({
      BROKER_URL: AMQP_TEST_URL,
      MAIL_URL: "file:/nonexistent",
      PUBLIC_URL,
      MP3_QUEUE: mp3Queue,
      JOB_EVENTS_QUEUE: jobEventsQueue,
      HEALTH_PORT: "0",
      HEALTH_HOST: "127.0.0.1",
      MAIL_RETRY_SECONDS: "600",
    });
    const service = await startNotify(config, {
      logger,
      mailer,
      sendRetryDelays: { initialMs: 60_000, maxMs: 60_000 },
    });

    const message = mp3Message();
    let stopMs: number;
    try {
      await admin.publish(mp3Queue, encodeMessage(message));
      await waitFor("retry wait", () => lines.some((l) => l.msg === "email not sent; retrying"));
    } finally {
      const started = performance.now();
      await service.stop();
      stopMs = performance.now() - started;
    }
    // Closing the RabbitMQ connection takes a round trip, not the 60 s of the retry delay.
    expect(stopMs).toBeLessThan(2_000);
    expect(mailer.sends).toHaveLength(1);

    const redelivered: Delivery[] = [];
    await admin.consume(
      mp3Queue,
      async (delivery) => {
        redelivered.push(delivery);
        return "ack";
      },
      { prefetch: 1 },
    );
    await waitFor("redelivery", () => redelivered.length === 1);
    expect(redelivered[0]?.redelivered).toBe(true);
    expect(JSON.parse(String(redelivered[0]?.body)).job_id).toBe(message.job_id);
  });
});

describe("startNotify mail verification", () => {
  test("rejects on a configuration error", async () => {
    const mailer = new ScriptedMailer(() => null, rejectedCredentials());
    await expect(startHarness({ mailer })).rejects.toBeInstanceOf(MailConfigurationError);
  });

  test("starts despite a transient error", async () => {
    const mailer = new ScriptedMailer(() => null, new Error("connect ECONNREFUSED 127.0.0.1:587"));
    const harness = await startHarness({ mailer });
    try {
      const warning = harness.lines.find(
        (l) =>
          l.level === "warn" &&
          l.msg === "mail verification failed; starting anyway, sends are retried",
      );
      expect(warning).toBeDefined();
      await harness.publish(mp3Message());
      await waitFor("notified event", () => harness.events.length === 1);
      expect(mailer.sends).toHaveLength(1);
    } finally {
      await harness.stop();
    }
  });
});
