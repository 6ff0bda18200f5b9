import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { simpleParser } from "mailparser";
import { createLogger } from "../log.ts";
import { MailConfigurationError } from "../ports/mail.ts";
import { outboxDirectory } from "./eml-mailer.ts";
import { openMailer } from "./mail.ts";

const logger = createLogger({ service: "mail-test", level: "silent" });

describe("file outbox mailer", () => {
  let parent: string;
  let outbox: string;

  beforeEach(async () => {
    parent = await mkdtemp(path.join(tmpdir(), "mp3converter-mail-"));
    outbox = path.join(parent, "outbox");
  });

  afterEach(async () => {
    await rm(parent, { recursive: true, force: true });
  });

  test("writes a parseable .eml", async () => {
    const mailer = await openMailer(`file:${outbox}`, { logger });
    await mailer.verify();
    const sent = await mailer.send({
      from: "mp3converter <no-reply@mp3converter.local>",
      to: "alice@example.com",
      subject: "Your MP3 of “Korasón” is ready",
      text: "Download it at http://localhost:8080/download?fid=job-1\n",
      html: "<p>Download it <a href='http://localhost:8080/download?fid=job-1'>here</a>.</p>",
      messageId: "<job-1@mp3converter>",
      headers: { "X-Job-Id": "job-1" },
    });
    await mailer.close();

    expect(sent.messageId).toBe("<job-1@mp3converter>");
    expect(sent.path).toBeDefined();
    const file = sent.path ?? "";
    expect(path.dirname(file)).toBe(outbox);
    expect(path.basename(file)).toMatch(/^\d{8}T\d{6}\.\d{3}Z-job-1_mp3converter\.eml$/);

    const parsed = await simpleParser(await readFile(file));
    expect(parsed.messageId).toBe("<job-1@mp3converter>");
    expect(parsed.subject).toBe("Your MP3 of “Korasón” is ready");
    expect(parsed.text).toBe("Download it at http://localhost:8080/download?fid=job-1\n");
    expect(parsed.html).toContain("download?fid=job-1");
    expect(parsed.headers.get("x-job-id")).toBe("job-1");
    const to = Array.isArray(parsed.to) ? parsed.to[0] : parsed.to;
    expect(to?.value[0]?.address).toBe("alice@example.com");
    const from = parsed.from?.value[0];
    expect(from?.address).toBe("no-reply@mp3converter.local");
    expect(from?.name).toBe("mp3converter");
  });

  test("leaves no temporary files", async () => {
    const mailer = await openMailer(`file:${outbox}`, { logger });
    const message = { from: "a@example.com", to: "b@example.com", subject: "s", text: "t" };
    const first = await mailer.send(message);
    const second = await mailer.send(message);
    await mailer.close();

    expect(first.messageId).not.toBe(second.messageId);
    const names = (await readdir(outbox)).sort();
    expect(names).toEqual(
      [path.basename(first.path ?? ""), path.basename(second.path ?? "")].sort(),
    );
    for (const name of names) expect(name.endsWith(".eml")).toBe(true);
  });

  test("verify sweeps stale temporary files", async () => {
    await mkdir(outbox, { recursive: true });
    const stale = ".0123456789abcdef.eml.partial";
    const live = ".fedcba9876543210.eml.partial";
    await writeFile(path.join(outbox, stale), "left by a crashed writer");
    const old = new Date(Date.now() - 2 * 60 * 1000);
    await utimes(path.join(outbox, stale), old, old);
    // Written just now, as by a writer in another process that has not renamed it yet.
    await writeFile(path.join(outbox, live), "being written");
    await writeFile(path.join(outbox, "old.eml"), "a sent message");
    await utimes(path.join(outbox, "old.eml"), old, old);

    const mailer = await openMailer(`file:${outbox}`, { logger });
    await mailer.verify();
    await mailer.close();

    expect((await readdir(outbox)).sort()).toEqual([live, "old.eml"].sort());
  });

  test("unsafe Message-ID characters stay out of the file name", async () => {
    const mailer = await openMailer(`file:${outbox}`, { logger });
    const sent = await mailer.send({
      from: "a@example.com",
      to: "b@example.com",
      subject: "s",
      text: "t",
      messageId: "<../../etc/x y@host>",
    });
    await mailer.close();

    expect(path.dirname(sent.path ?? "")).toBe(outbox);
    // Leading dots are dropped so that the file is not hidden.
    expect(path.basename(sent.path ?? "")).toMatch(/^\d{8}T\d{6}\.\d{3}Z-_\.\._etc_x_y_host\.eml$/);
  });

  test("verify rejects an unusable directory", async () => {
    const blocker = path.join(parent, "not-a-directory");
    await writeFile(blocker, "x");
    const mailer = await openMailer(`file:${path.join(blocker, "outbox")}`, { logger });
    await expect(mailer.verify()).rejects.toBeInstanceOf(MailConfigurationError);
  });

  test("parses file: URL forms", () => {
    expect(outboxDirectory("file:/var/mail/outbox")).toBe("/var/mail/outbox");
    expect(outboxDirectory("file:///var/mail/my%20outbox")).toBe("/var/mail/my outbox");
    expect(outboxDirectory("file:./.data/outbox")).toBe(path.resolve(".data/outbox"));
    expect(() => outboxDirectory("file:")).toThrow("names no directory");
  });

  test("unknown scheme is rejected without echoing the URL", async () => {
    const opening = openMailer("imap://user:secret@mail.example.com", { logger });
    await expect(opening).rejects.toThrow("imap: is not supported");
    await expect(opening).rejects.not.toThrow("secret");
  });
});
