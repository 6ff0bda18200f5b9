/**
 * Notify service tests on the in-process broker and a real `.eml` outbox in a temporary
 * directory. Mailers that fail on purpose stand in for a broken mail server.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
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
import { readNotifyConfig } from "./config.ts";
import { type NotifyService, startNotify } from "./service.ts";

/** Maximum wait for a condition, so a broken worker fails the test instead of hanging it. */
const WAIT_DEADLINE_MS = 15_000;

// Above WAIT_DEADLINE_MS, so a failed wait reports what it waited for instead of a timeout.
setDefaultTimeout(30_000);

const PUBLIC_URL = "http://127.0.0.1:8080";

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

/** A running service with its queues, what reached them, and its outbox. */
interface Harness {
  service: NotifyService;
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

async function startHarness(options: { mailer?: Mailer; maxDeliveries?: number } = {}) {
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
  });
  let service: NotifyService;
  try {
    service = await startNotify(config, { broker, logger, mailer: options.mailer });
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
      `curl -H "Authorization: Bearer $TOKEN" -o talk.mp3 \\\n    "${link}"`,
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
    const harness = await startHarness({ mailer, maxDeliveries: 2 });
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
