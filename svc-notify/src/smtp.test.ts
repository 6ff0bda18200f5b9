/**
 * Notify service against a real SMTP server: smtp-server on an ephemeral port of 127.0.0.1 with
 * STARTTLS and a certificate made for this run (the one built into smtp-server has expired),
 * trusted through `MAIL_TLS_CA_FILE`.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBroker } from "@mp3converter/lib/adapters/broker";
import { createLogger } from "@mp3converter/lib/log";
import { encodeMessage, type Mp3Message } from "@mp3converter/lib/messages";
import type { Broker } from "@mp3converter/lib/ports/broker";
import { MailConfigurationError } from "@mp3converter/lib/ports/mail";
import { startTestSmtpServer, type TestSmtpServer } from "../../lib/system/smtp-test-server.ts";
import { readNotifyConfig } from "./config.ts";
import { type NotifyService, startNotify } from "./service.ts";
import { mailSettingToFix } from "./worker.ts";

const WAIT_DEADLINE_MS = 15_000;
setDefaultTimeout(30_000);

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_DEADLINE_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Returns a port of 127.0.0.1 that was free a moment ago, so connecting to it is refused. */
async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address !== "object") throw new Error("test server has no port");
  return address.port;
}

describe("notify over SMTP with STARTTLS", () => {
  const logger = createLogger({ service: "notify-smtp-test", level: "silent" });
  const dir = mkdtempSync(join(tmpdir(), "notify-smtp-"));
  const caFile = join(dir, "ca.pem");
  let smtp: TestSmtpServer;
  let broker: Broker;

  /** Returns `smtp:` or `smtps:` URL of the test server, or of `port`, with `password`. */
  function mailUrl(scheme: string, password = smtp.password, port = smtp.port) {
    return `${scheme}://${smtp.username}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  }

  function env(overrides: Record<string, string> = {}) {
    return {
      BROKER_URL: "memory:",
      MAIL_URL: mailUrl("smtp"),
      MAIL_TLS_CA_FILE: caFile,
      PUBLIC_URL: "http://127.0.0.1:8080",
      MP3_QUEUE: `test-notify-${crypto.randomUUID().slice(0, 8)}-mp3`,
      HEALTH_PORT: "0",
      ...overrides,
    };
  }

  beforeAll(async () => {
    smtp = await startTestSmtpServer();
    writeFileSync(caFile, smtp.certificate);
    broker = await openBroker("memory:", { logger });
  });

  afterAll(async () => {
    await broker?.close();
    await smtp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("ready email arrives over STARTTLS", async () => {
    const config = readNotifyConfig(env());
    const service: NotifyService = await startNotify(config, { broker, logger });
    try {
      const message: Mp3Message = {
        job_id: `job-${crypto.randomUUID()}`,
        video_fid: "video-1",
        mp3_fid: "mp3-1",
        username: "bob@example.com",
        filename: "lecture.mkv",
        request_id: "req-smtp",
      };
      await broker.publish(config.mp3Queue, encodeMessage(message));
      await waitFor("email at the SMTP server", () => smtp.deliveries.length === 1);

      const got = smtp.deliveries[0];
      expect(got?.secure).toBe(true);
      expect(got?.user).toBe(smtp.username);
      expect(got?.recipients).toEqual(["bob@example.com"]);
      expect(got?.mail.subject).toBe("Your MP3 is ready: lecture.mp3");
      expect(got?.mail.messageId).toBe(`<${message.job_id}.ready@mp3converter>`);
      expect(got?.mail.text).toContain("http://127.0.0.1:8080/download?fid=mp3-1");
      expect(got?.mail.html).toContain('href="http://127.0.0.1:8080/download?fid=mp3-1"');
    } finally {
      await service.stop();
    }
  });

  /** Starts the service and returns the error it rejected with. */
  async function startupError(overrides: Record<string, string>): Promise<unknown> {
    const config = readNotifyConfig(env(overrides));
    return startNotify(config, { broker, logger }).then(
      async (service) => {
        await service.stop();
        return null;
      },
      (error: unknown) => error,
    );
  }

  test("wrong password fails start-up", async () => {
    const error = await startupError({ MAIL_URL: mailUrl("smtp", "wrong-password") });
    expect(error).toBeInstanceOf(MailConfigurationError);
    expect(mailSettingToFix(error as MailConfigurationError)).toBe(
      "the user name and password in MAIL_URL",
    );
  });

  test("untrusted certificate fails start-up", async () => {
    const error = await startupError({ MAIL_TLS_CA_FILE: "" });
    expect(error).toBeInstanceOf(MailConfigurationError);
    expect(mailSettingToFix(error as MailConfigurationError)).toStartWith("MAIL_TLS_CA_FILE");
  });

  test("smtps on a STARTTLS port fails start-up", async () => {
    const error = await startupError({ MAIL_URL: mailUrl("smtps") });
    expect(error).toBeInstanceOf(MailConfigurationError);
    expect(mailSettingToFix(error as MailConfigurationError)).toStartWith(
      "the scheme and port of MAIL_URL",
    );
  });

  test("unreachable server still starts", async () => {
    const closedPort = await unusedPort();
    const url = mailUrl("smtp", smtp.password, closedPort);
    expect(await startupError({ MAIL_URL: url })).toBeNull();
  });
});
