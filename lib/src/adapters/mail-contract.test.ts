/**
 * One contract for both mailers: the `.eml` outbox and SMTP (STARTTLS against a real smtp-server
 * on an ephemeral port). A message must read back the same whichever mailer sent it.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type ParsedMail, simpleParser } from "mailparser";
import { startTestSmtpServer, type TestSmtpServer } from "../../system/smtp-test-server.ts";
import { createLogger } from "../log.ts";
import type { Mailer, MailMessage, SentMail } from "../ports/mail.ts";
import { openMailer } from "./mail.ts";

const logger = createLogger({ service: "mail-contract-test", level: "silent" });

/** Longer than the 998 characters SMTP allows on one line, so the mailer must encode it. */
const LONG_LINE = "ü".repeat(1_200);

interface MailerUnderTest {
  mailer: Mailer;
  /** Returns the message as the receiving side stored it, parsed with mailparser. */
  readBack(sent: SentMail): Promise<ParsedMail>;
  /** Counts the messages the receiving side has stored so far. */
  count(): Promise<number>;
  close(): Promise<void>;
}

function message(overrides: Partial<MailMessage> = {}): MailMessage {
  return {
    from: "mp3converter <no-reply@mp3converter.local>",
    to: "alice@example.com",
    subject: "Your MP3 of “Mi Korasón” is ready",
    text: "Download it at http://localhost:8080/download?fid=job-1\n",
    html: "<p>Download it <a href='http://localhost:8080/download?fid=job-1'>here</a>.</p>",
    ...overrides,
  };
}

function firstAddress(field: ParsedMail["to"]) {
  const list = Array.isArray(field) ? field[0] : field;
  return list?.value[0];
}

function mailerContract(name: string, openUnderTest: () => Promise<MailerUnderTest>) {
  describe(`${name} mailer contract`, () => {
    let underTest: MailerUnderTest;

    beforeEach(async () => {
      underTest = await openUnderTest();
    });

    afterEach(async () => {
      await underTest.mailer.close();
      await underTest.close();
    });

    test("verify resolves", async () => {
      await underTest.mailer.verify();
    });

    test("message reads back unchanged", async () => {
      const sent = await underTest.mailer.send(
        message({ messageId: "<job-1@mp3converter>", headers: { "X-Job-Id": "job-1" } }),
      );
      const parsed = await underTest.readBack(sent);

      expect(sent.messageId).toBe("<job-1@mp3converter>");
      expect(parsed.messageId).toBe("<job-1@mp3converter>");
      expect(parsed.subject).toBe("Your MP3 of “Mi Korasón” is ready");
      expect(parsed.text).toBe("Download it at http://localhost:8080/download?fid=job-1\n");
      expect(parsed.html).toContain("download?fid=job-1");
      expect(parsed.headers.get("x-job-id")).toBe("job-1");
      expect(firstAddress(parsed.to)?.address).toBe("alice@example.com");
      expect(parsed.from?.value[0]?.address).toBe("no-reply@mp3converter.local");
      expect(parsed.from?.value[0]?.name).toBe("mp3converter");
    });

    test("missing Message-ID gets a unique one", async () => {
      const first = await underTest.mailer.send(message());
      const second = await underTest.mailer.send(message());

      expect(first.messageId).toMatch(/^<.+@.+>$/);
      expect(second.messageId).not.toBe(first.messageId);
      expect((await underTest.readBack(first)).messageId).toBe(first.messageId);
      expect((await underTest.readBack(second)).messageId).toBe(second.messageId);
      expect(await underTest.count()).toBe(2);
    });

    test("long non-ASCII lines survive", async () => {
      const text = `${LONG_LINE}\nzweite Zeile\n`;
      const sent = await underTest.mailer.send(message({ text, html: undefined }));

      expect((await underTest.readBack(sent)).text).toBe(text);
    });

    test("line breaks in the subject add no header", async () => {
      const sent = await underTest.mailer.send(
        message({ subject: "ready\r\nBcc: mallory@example.com\r\nX-Injected: yes" }),
      );
      const parsed = await underTest.readBack(sent);

      expect(parsed.bcc).toBeUndefined();
      expect(parsed.headers.has("x-injected")).toBe(false);
      expect(parsed.subject).toContain("ready");
    });
  });
}

let outboxParent: string;

beforeAll(async () => {
  outboxParent = await mkdtemp(path.join(tmpdir(), "mail-contract-"));
});

afterAll(async () => {
  await rm(outboxParent, { recursive: true, force: true });
});

mailerContract("file outbox", async () => {
  const outbox = await mkdtemp(path.join(outboxParent, "outbox-"));
  const mailer = await openMailer(`file:${outbox}`, { logger });
  return {
    mailer,
    readBack: async (sent) => simpleParser(await readFile(sent.path ?? "")),
    count: async () => (await readdir(outbox)).filter((name) => name.endsWith(".eml")).length,
    close: async () => {},
  };
});

let smtp: TestSmtpServer;

mailerContract("SMTP over STARTTLS", async () => {
  smtp = await startTestSmtpServer();
  const userInfo = `${smtp.username}:${encodeURIComponent(smtp.password)}`;
  const mailer = await openMailer(`smtp://${userInfo}@127.0.0.1:${smtp.port}`, {
    logger,
    tls: { ca: smtp.certificate },
  });
  return {
    mailer,
    readBack: async (sent) => {
      const found = smtp.received.find((mail) => mail.messageId === sent.messageId);
      if (!found) throw new Error(`the SMTP server did not receive ${sent.messageId}`);
      return found;
    },
    count: async () => smtp.received.length,
    close: () => smtp.close(),
  };
});
