/**
 * Opens the mailer named by a mail URL: `smtp:` (STARTTLS required), `smtps:` (implicit TLS) or
 * `file:` for an outbox directory of `.eml` files.
 */
import type { Logger } from "../log.ts";
import type { Mailer } from "../ports/mail.ts";
import { createEmlMailer, outboxDirectory } from "./eml-mailer.ts";
import { createSmtpMailer } from "./smtp-mailer.ts";

export interface MailerOptions {
  logger: Logger;
  /** TLS settings for `smtp:` and `smtps:`; ignored by the `file:` outbox. */
  tls?: {
    /** PEM certificates to trust, such as a private CA; they replace the default roots. */
    ca?: string | Buffer | Array<string | Buffer>;
  };
}

/**
 * Opens the mailer for `url`, picked by its scheme. Nothing connects yet: call `verify()` at boot
 * to check the server and the credentials.
 */
export async function openMailer(url: string, options: MailerOptions): Promise<Mailer> {
  const scheme = url.slice(0, url.indexOf(":") + 1).toLowerCase();
  switch (scheme) {
    case "file:":
      return createEmlMailer(outboxDirectory(url), options);
    case "smtp:":
    case "smtps:":
      return createSmtpMailer(url, options);
    default:
      // The URL itself is not shown because it may carry a password.
      throw new Error(
        `mail URL scheme ${scheme || "(none)"} is not supported; use smtp:, smtps: or file:`,
      );
  }
}
