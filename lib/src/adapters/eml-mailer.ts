/**
 * Mailer that writes each message as an RFC 5322 `.eml` file into an outbox directory, the
 * embedded implementation of the mail port. nodemailer's stream transport builds the message, so
 * the file has the same headers and MIME structure that SMTP would send.
 */
import { randomBytes } from "node:crypto";
import { access, constants, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";
import nodemailer from "nodemailer";
import { errorFields, type Logger } from "../log.ts";
import {
  MailConfigurationError,
  type Mailer,
  type MailMessage,
  type SentMail,
} from "../ports/mail.ts";

/** Maximum length of the file name part taken from the Message-ID. */
const MAX_ID_LENGTH = 100;

/** Name pattern of the temporary files that `writeAtomically` creates. */
const PARTIAL_NAME = /^\.[0-9a-f]{16}\.eml\.partial$/;

/**
 * Age in milliseconds, by modification time, after which a temporary outbox file counts as left
 * behind by a crashed process. A writer writes the whole message in one call, syncs it and renames
 * it, so a live temporary file is only as old as one write and one sync of a small file.
 */
const STALE_PARTIAL_AGE_MS = 60_000;

/** Interval in milliseconds between sweeps of stale temporary files while the mailer is open. */
const SWEEP_INTERVAL_MS = 60_000;

export interface EmlMailerOptions {
  logger: Logger;
}

/**
 * Parses the directory of a `file:` mail URL: `file:./outbox`, `file:/abs/outbox` or
 * `file:///abs/outbox`. A relative path is resolved against the working directory.
 */
export function outboxDirectory(url: string): string {
  if (!url.startsWith("file:")) {
    throw new Error("mail URL for the outbox must start with file:, e.g. file:./.data/outbox");
  }
  const rest = url.slice("file:".length);
  // WHATWG URL parsing would turn `file:./dir` into `/dir`, so only the `//` form goes through it.
  const dir = rest.startsWith("//") ? decodeURIComponent(new URL(url).pathname) : rest;
  if (dir === "") {
    throw new Error("mail URL file: names no directory; use for example file:./.data/outbox");
  }
  return path.resolve(dir);
}

/** Creates a mailer that writes `.eml` files into `directory`, created on first use. */
export function createEmlMailer(directory: string, options: EmlMailerOptions): Mailer {
  return new EmlMailer(path.resolve(directory), options.logger);
}

class EmlMailer implements Mailer {
  readonly #directory: string;
  readonly #logger: Logger;
  readonly #transport = nodemailer.createTransport({
    streamTransport: true,
    buffer: true,
    newline: "windows",
    // Messages never attach local files or URLs, so nodemailer may not read any.
    disableFileAccess: true,
    disableUrlAccess: true,
  });

  readonly #sweepTimer: ReturnType<typeof setInterval>;

  constructor(directory: string, logger: Logger) {
    this.#directory = directory;
    this.#logger = logger;
    // Several processes may share the outbox, so each keeps sweeping what crashed ones left.
    this.#sweepTimer = setInterval(() => void this.#sweepQuietly(), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref?.();
  }

  async verify(): Promise<void> {
    try {
      await mkdir(this.#directory, { recursive: true });
      await access(this.#directory, constants.W_OK);
    } catch (error) {
      throw new MailConfigurationError(
        `mail outbox directory ${this.#directory} is not writable; ` +
          "create it or fix its permissions",
        { cause: error, code: (error as { code?: string }).code },
      );
    }
    await this.#sweepQuietly();
  }

  async send(message: MailMessage): Promise<SentMail> {
    const info = await this.#transport.sendMail({
      from: message.from,
      to: message.to,
      subject: message.subject,
      text: message.text,
      html: message.html,
      messageId: message.messageId,
      headers: message.headers,
    });
    if (!Buffer.isBuffer(info.message)) {
      throw new Error("nodemailer stream transport returned a stream although buffer is set");
    }

    await mkdir(this.#directory, { recursive: true });
    const name = `${compactIsoTime(new Date())}-${safeFileId(info.messageId)}.eml`;
    const file = path.join(this.#directory, name);
    await writeAtomically(file, info.message);
    this.#logger.debug({ file, message_id: info.messageId }, "mail written to outbox");
    return { messageId: info.messageId, path: file };
  }

  async close(): Promise<void> {
    clearInterval(this.#sweepTimer);
    this.#transport.close();
  }

  /** Removes temporary files older than `STALE_PARTIAL_AGE_MS`, and logs instead of throwing. */
  async #sweepQuietly(): Promise<void> {
    try {
      const removed = await removeStalePartials(this.#directory, Date.now());
      if (removed > 0) {
        this.#logger.info({ directory: this.#directory, removed }, "removed stale outbox files");
      }
    } catch (error) {
      this.#logger.warn(
        { err: errorFields(error), directory: this.#directory },
        "outbox sweep failed",
      );
    }
  }
}

/** Removes the temporary files in `directory` older than `STALE_PARTIAL_AGE_MS`; returns the count. */
async function removeStalePartials(directory: string, now: number): Promise<number> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    // The outbox is created at the first send.
    if ((error as { code?: string }).code === "ENOENT") return 0;
    throw error;
  }
  let removed = 0;
  for (const name of names) {
    if (!PARTIAL_NAME.test(name)) continue;
    const file = path.join(directory, name);
    const info = await stat(file).catch(() => null);
    if (info === null || now - info.mtimeMs <= STALE_PARTIAL_AGE_MS) continue;
    try {
      await unlink(file);
      removed++;
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT") throw error;
    }
  }
  return removed;
}

/**
 * Formats ISO 8601 basic time, such as `20261204T103700.123Z`, because Windows file names cannot
 * contain `:`.
 */
function compactIsoTime(date: Date): string {
  return date.toISOString().replaceAll("-", "").replaceAll(":", "");
}

/** Turns a Message-ID such as `<job-1@mp3converter>` into `job-1_mp3converter`. */
function safeFileId(messageId: string): string {
  const bare = messageId.replace(/^<|>$/g, "");
  const safe = bare.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, MAX_ID_LENGTH);
  return safe.replace(/^\.+/, "") || "message";
}

/**
 * Writes `data` to a hidden temporary file in the same directory, syncs it and renames it to
 * `file`, so readers of the outbox see either nothing or the whole message.
 */
async function writeAtomically(file: string, data: Uint8Array): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${randomBytes(8).toString("hex")}.eml.partial`);
  try {
    const handle = await open(temporary, "wx");
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => {});
    throw error;
  }
}
