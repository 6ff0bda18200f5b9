/**
 * Mail port. Production: SMTP through nodemailer (`smtp://` with STARTTLS required, `smtps://`
 * with implicit TLS). Embedded: `.eml` files in an outbox directory (`file:`).
 */

export interface MailMessage {
  from: string;
  to: string;
  subject: string;
  text: string;
  html?: string;
  /** RFC 5322 Message-ID, such as `<job-id@mp3converter>`; a resent message keeps its id. */
  messageId?: string;
  headers?: Record<string, string>;
}

export interface SentMail {
  messageId: string;
  /** Where the embedded mailer wrote the message; absent for SMTP. */
  path?: string;
}

/**
 * A mail failure that retrying cannot fix, such as rejected SMTP credentials or a TLS setting the
 * server does not offer. Consumers treat it as a configuration error, not a transient failure.
 */
export class MailConfigurationError extends Error {
  readonly code: string | undefined;
  readonly responseCode: number | undefined;
  /** SMTP command that failed, such as `AUTH PLAIN` or `STARTTLS`. */
  readonly command: string | undefined;

  constructor(
    message: string,
    options: { cause?: unknown; code?: string; responseCode?: number; command?: string },
  ) {
    super(message, { cause: options.cause });
    this.name = "MailConfigurationError";
    this.code = options.code;
    this.responseCode = options.responseCode;
    this.command = options.command;
  }
}

export interface Mailer {
  /** Checks the connection and credentials; rejects with `MailConfigurationError` if they fail. */
  verify(): Promise<void>;
  send(message: MailMessage): Promise<SentMail>;
  close(): Promise<void>;
}
