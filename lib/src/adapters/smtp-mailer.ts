/**
 * Mailer over SMTP through a nodemailer connection pool, the production implementation of the
 * mail port. `smtp://user:pass@host:587` requires STARTTLS and `smtps://user:pass@host:465` uses
 * implicit TLS, so messages and passwords cross the network only over a verified TLS connection.
 */
import nodemailer from "nodemailer";
import type { Logger } from "../log.ts";
import {
  MailConfigurationError,
  type Mailer,
  type MailMessage,
  type SentMail,
} from "../ports/mail.ts";

const DEFAULT_SMTP_PORT = 587;
const DEFAULT_SMTPS_PORT = 465;
/** Maximum number of SMTP connections the pool keeps open at once. */
const MAX_CONNECTIONS = 3;
/** Messages sent over one connection before the pool replaces it. */
const MAX_MESSAGES_PER_CONNECTION = 100;
const CONNECTION_TIMEOUT_MS = 10_000;
const GREETING_TIMEOUT_MS = 10_000;
/** Inactivity on an open connection, such as a server that stops replying mid-message. */
const SOCKET_TIMEOUT_MS = 60_000;
const DNS_TIMEOUT_MS = 10_000;

/**
 * Node.js error codes of a certificate that failed verification: the X509 verification codes of
 * OpenSSL, and Node's host name check.
 */
const CERTIFICATE_ERROR_CODES = new Set([
  "CERT_CHAIN_TOO_LONG",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REJECTED",
  "CERT_REVOKED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "HOSTNAME_MISMATCH",
  "INVALID_CA",
  "INVALID_PURPOSE",
  "PATH_LENGTH_EXCEEDED",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
]);

/** Code of a TLS handshake with a server that does not start TLS, as on a STARTTLS port. */
const WRONG_TLS_VERSION = "ERR_SSL_WRONG_VERSION_NUMBER";

/** nodemailer's message for a failed TLS upgrade, which may carry no certificate code. */
const CERTIFICATE_MESSAGE = /certificate|self[- ]signed|does not match certificate/i;

export interface SmtpMailerOptions {
  logger: Logger;
  tls?: {
    /** PEM certificates to trust; they replace the default root certificates. */
    ca?: string | Buffer | Array<string | Buffer>;
  };
}

/** Connection settings taken from an SMTP URL; the password is never logged or shown. */
export interface SmtpSettings {
  host: string;
  port: number;
  /** True for `smtps:` (TLS from the first byte), false for `smtp:` (STARTTLS required). */
  secure: boolean;
  user: string | undefined;
  password: string | undefined;
}

/** Parses `smtp://user:pass@host:587` or `smtps://user:pass@host:465`, decoding the user info. */
export function parseSmtpUrl(url: string): SmtpSettings {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // The URL itself is not shown because it may carry a password.
    throw new Error("mail URL is not a valid URL; expected smtp://user:password@host:587");
  }
  const secure = parsed.protocol === "smtps:";
  if (!secure && parsed.protocol !== "smtp:") {
    throw new Error(`mail URL scheme ${parsed.protocol} is not SMTP; use smtp: or smtps:`);
  }
  if (parsed.hostname === "") {
    throw new Error("mail URL names no host; expected smtp://user:password@host:587");
  }
  const defaultPort = secure ? DEFAULT_SMTPS_PORT : DEFAULT_SMTP_PORT;
  return {
    // WHATWG URL keeps the brackets of an IPv6 host, which net.connect does not accept.
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: parsed.port === "" ? defaultPort : Number(parsed.port),
    secure,
    user: parsed.username === "" ? undefined : decodeURIComponent(parsed.username),
    password: parsed.password === "" ? undefined : decodeURIComponent(parsed.password),
  };
}

/** Creates a pooled SMTP mailer for `url`; nothing connects until `verify()` or `send()`. */
export function createSmtpMailer(url: string, options: SmtpMailerOptions): Mailer {
  return new SmtpMailer(parseSmtpUrl(url), options);
}

class SmtpMailer implements Mailer {
  readonly #settings: SmtpSettings;
  readonly #logger: Logger;
  readonly #transport;

  constructor(settings: SmtpSettings, options: SmtpMailerOptions) {
    this.#settings = settings;
    this.#logger = options.logger;
    this.#transport = nodemailer.createTransport({
      pool: true,
      host: settings.host,
      port: settings.port,
      secure: settings.secure,
      // STARTTLS or nothing: nodemailer fails when the server does not offer it.
      requireTLS: !settings.secure,
      auth:
        settings.user === undefined ? undefined : { user: settings.user, pass: settings.password },
      tls: { ca: options.tls?.ca, minVersion: "TLSv1.2" },
      maxConnections: MAX_CONNECTIONS,
      maxMessages: MAX_MESSAGES_PER_CONNECTION,
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      greetingTimeout: GREETING_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
      dnsTimeout: DNS_TIMEOUT_MS,
      // Messages never attach local files or URLs, so nodemailer may not read any.
      disableFileAccess: true,
      disableUrlAccess: true,
    });
  }

  async verify(): Promise<void> {
    try {
      await this.#transport.verify();
    } catch (error) {
      throw this.#classify(error);
    }
    this.#logger.info(
      { host: this.#settings.host, port: this.#settings.port, secure: this.#settings.secure },
      "SMTP server verified",
    );
  }

  async send(message: MailMessage): Promise<SentMail> {
    try {
      const info = await this.#transport.sendMail({
        from: message.from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
        messageId: message.messageId,
        headers: message.headers,
      });
      return { messageId: info.messageId };
    } catch (error) {
      throw this.#classify(error);
    }
  }

  async close(): Promise<void> {
    this.#transport.close();
  }

  /**
   * Turns a failure that retrying cannot fix into `MailConfigurationError`, and returns any other
   * error unchanged so that the caller retries it.
   */
  #classify(error: unknown): unknown {
    const reason = configurationProblem(error as NodemailerFailure);
    if (reason === null) return error;
    const { code, responseCode, command } = error as NodemailerFailure;
    const server = `${this.#settings.host}:${this.#settings.port}`;
    const detail = error instanceof Error ? error.message : String(error);
    return new MailConfigurationError(`SMTP server ${server}: ${reason} (${detail})`, {
      cause: error,
      code,
      responseCode,
      command,
    });
  }
}

/** Fields that nodemailer sets on its errors. */
interface NodemailerFailure {
  message?: string;
  code?: string;
  originalCode?: string;
  responseCode?: number;
  command?: string;
}

/** Returns what to fix for a failure that retrying cannot fix, or null for a transient one. */
function configurationProblem(error: NodemailerFailure): string | null {
  const { code, originalCode, responseCode, command } = error;
  // 4xx replies are temporary by RFC 5321, such as 454 "temporary authentication failure".
  const temporaryReply = responseCode !== undefined && responseCode >= 400 && responseCode < 500;

  if ((code === "EAUTH" && !temporaryReply) || responseCode === 535) {
    return "authentication failed; check the user and password in the mail URL";
  }
  if (code === "ENOAUTH") {
    return "the server requires authentication; add user and password to the mail URL";
  }
  if (code === "ETLS" && command === "STARTTLS" && !temporaryReply && responseCode !== undefined) {
    return "the server does not offer STARTTLS; use a server that does, or smtps: for implicit TLS";
  }
  if (code === WRONG_TLS_VERSION || originalCode === WRONG_TLS_VERSION) {
    return (
      "the server did not start TLS; smtps: needs a port with implicit TLS such as 465, " +
      "and smtp: uses STARTTLS on 587"
    );
  }
  if (
    CERTIFICATE_ERROR_CODES.has(code ?? "") ||
    CERTIFICATE_ERROR_CODES.has(originalCode ?? "") ||
    (code === "ETLS" && CERTIFICATE_MESSAGE.test(error.message ?? ""))
  ) {
    return (
      "the server certificate failed verification; " +
      "check its host name and validity, or trust its CA"
    );
  }
  return null;
}
