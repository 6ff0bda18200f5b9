/**
 * The `mp3` queue handler: decodes the message, emails the user, reports the email to the gateway
 * (`notified` for a ready MP3, `failed` with `email_sent` for a failure), and decides the delivery
 * outcome. A failed send is retried inside the handler for up to the retry window before the
 * message goes back to the broker. A redelivered message sends the same email again with
 * the same Message-ID, so mail clients can drop the duplicate.
 */
import { sleep } from "@mp3converter/lib/adapters/broker";
import { errorFields, type Logger, maskEmail } from "@mp3converter/lib/log";
import {
  decodeMessage,
  encodeMessage,
  InvalidMessageError,
  type JobEvent,
  type Mp3Message,
  Mp3MessageSchema,
} from "@mp3converter/lib/messages";
import type { Broker, Delivery, MessageHandler } from "@mp3converter/lib/ports/broker";
import { MailConfigurationError, type Mailer, type SentMail } from "@mp3converter/lib/ports/mail";
import {
  buildJobEmail,
  type EmailSettings,
  IncompleteMessageError,
  InvalidRecipientError,
  type JobEmail,
} from "./email.ts";
import { type SendRetryPolicy, sendRetryDelayMs } from "./retry.ts";

/** Mail availability, as `/readyz` reports it. */
export class MailStatus {
  #problem: string | undefined;
  #deliveryProblem: string | undefined;

  /** Records a failure that only a change of settings can fix, such as rejected credentials. */
  markDown(problem: string): void {
    this.#problem = problem;
  }

  /** Records a send that failed for a passing reason, such as an unreachable mail server. */
  markFailing(problem: string): void {
    this.#deliveryProblem = problem;
  }

  markUp(): void {
    this.#problem = undefined;
    this.#deliveryProblem = undefined;
  }

  /**
   * Optional readiness check: throws while the last send failed for a passing reason, so that
   * `/readyz` reports mail delivery as degraded during an outage without taking the pod out.
   */
  checkDelivery(): void {
    if (this.#deliveryProblem !== undefined) throw new Error(this.#deliveryProblem);
  }

  /**
   * Readiness check: throws from a send that failed with a configuration error until a send
   * succeeds, so the retries of the failed send keep mail reported down.
   */
  check(): void {
    if (this.#problem !== undefined) throw new Error(this.#problem);
  }
}

export interface NotifyWorkerOptions {
  broker: Broker;
  mailer: Mailer;
  logger: Logger;
  email: EmailSettings;
  jobEventsQueue: string;
  mailStatus: MailStatus;
  sendRetry: SendRetryPolicy;
  /**
   * Aborted when the service stops. A send retry that is waiting then ends at once and the
   * handler returns `requeue`, so the message goes back to the queue.
   */
  signal: AbortSignal;
}

/**
 * Raised by the handler when a delivery should be tried again. The broker treats a throw as
 * `requeue` after a backoff that grows with each try, where a returned `requeue` would come back
 * at once, so a mail outage does not spin through the queue.
 */
export class RetryLaterError extends Error {
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = "RetryLaterError";
  }
}

/**
 * Creates the handler of the `mp3` queue. It rejects a message that no retry can turn into an
 * email, and acks once the email is sent and reported. It throws `RetryLaterError` when sending
 * still fails at the end of the retry window or when publishing the report fails. It returns
 * `requeue` when the service stops while a send retry waits.
 */
export function createNotifyHandler(options: NotifyWorkerOptions): MessageHandler {
  return async (delivery) => {
    const message = decodeOrLog(delivery, options.logger);
    if (message === null) return "reject";

    const log = options.logger.child({ job_id: message.job_id, request_id: message.request_id });
    const email = buildOrLog(message, options.email, log);
    if (email === null) return "reject";

    const sent = await sendWithRetries(email, options, log);
    if (sent === null) return "requeue";
    logSent(email, sent, delivery, log);

    await publishEmailSent(message, email, options, log);
    return "ack";
  };
}

function decodeOrLog(delivery: Delivery, logger: Logger): Mp3Message | null {
  try {
    return decodeMessage(Mp3MessageSchema, delivery.body);
  } catch (error) {
    if (!(error instanceof InvalidMessageError)) throw error;
    logger.error(
      { queue: delivery.queue, message_id: delivery.messageId, err: errorFields(error) },
      "invalid mp3 message rejected",
    );
    return null;
  }
}

function buildOrLog(message: Mp3Message, settings: EmailSettings, log: Logger): JobEmail | null {
  try {
    return buildJobEmail(message, settings);
  } catch (error) {
    if (!(error instanceof InvalidRecipientError || error instanceof IncompleteMessageError)) {
      throw error;
    }
    log.error({ err: errorFields(error) }, "mp3 message rejected: no email can be built from it");
    return null;
  }
}

/**
 * Sends the email, and after a failure sends it again with a growing delay until the retry
 * window of `options.sendRetry` ends. Returns null when the service stops during a wait. Throws
 * `RetryLaterError` when the last send in the window fails. A configuration error is retried
 * too, because it can be fixed on the mail server without a restart, and a restart with new
 * settings stops the wait.
 */
async function sendWithRetries(
  email: JobEmail,
  options: NotifyWorkerOptions,
  log: Logger,
): Promise<SentMail | null> {
  const deadline = Date.now() + options.sendRetry.windowMs;
  for (let attempt = 1; ; attempt += 1) {
    try {
      const sent = await options.mailer.send(email.message);
      options.mailStatus.markUp();
      return sent;
    } catch (error) {
      const remainingMs = deadline - Date.now();
      if (options.signal.aborted || remainingMs <= 0) {
        logSendFailure(error, { email, attempt, delayMs: undefined }, options, log);
        if (options.signal.aborted) return stoppedRetrying(email, attempt, log);
        throw new RetryLaterError(
          `email ${email.message.messageId} not sent within the retry window of ` +
            `${options.sendRetry.windowMs} ms; handing the message back to the broker`,
          { cause: error },
        );
      }
      const delayMs = Math.min(sendRetryDelayMs(attempt - 1, options.sendRetry), remainingMs);
      logSendFailure(error, { email, attempt, delayMs }, options, log);
      await sleep(delayMs, options.signal);
      if (options.signal.aborted) return stoppedRetrying(email, attempt, log);
    }
  }
}

// NOTE: the broker counts the requeue of a stopped retry toward the queue's delivery limit like
// any other, so a stop dead-letters a message whose earlier deliveries used up that limit.
function stoppedRetrying(email: JobEmail, attempts: number, log: Logger): null {
  log.info(
    { message_id: email.message.messageId, attempts },
    "email retries stopped because notify is stopping; the message goes back to the queue",
  );
  return null;
}

/**
 * Logs a failed send with its attempt number and the delay before the next one, which is
 * undefined when no retry follows. A configuration error also marks mail down for `/readyz`.
 */
function logSendFailure(
  error: unknown,
  failure: { email: JobEmail; attempt: number; delayMs: number | undefined },
  options: NotifyWorkerOptions,
  log: Logger,
): void {
  const fields = {
    err: errorFields(error),
    message_id: failure.email.message.messageId,
    to: maskEmail(failure.email.message.to),
    attempt: failure.attempt,
    delay_ms: failure.delayMs,
  };
  if (error instanceof MailConfigurationError) {
    const setting = mailSettingToFix(error);
    options.mailStatus.markDown(`${error.message}; check ${setting}`);
    log.error(
      { ...fields, setting },
      `email not sent: mail configuration rejected; fix ${setting}`,
    );
    return;
  }
  options.mailStatus.markFailing(`the last send failed: ${errorFields(error).message}`);
  log.warn(fields, failure.delayMs === undefined ? "email not sent" : "email not sent; retrying");
}

/** Error codes of a TLS connection whose server certificate failed verification. */
const CERTIFICATE_CODE = /CERT|UNABLE_TO_|SELF_SIGNED|HOSTNAME_MISMATCH|INVALID_CA/;

/** Error codes of a TLS handshake with a port that does not speak TLS, or no STARTTLS offer. */
const TLS_MODE_CODES = new Set(["ERR_SSL_WRONG_VERSION_NUMBER", "ETLS"]);

/** Names the setting an operator should fix for a mail configuration error. */
export function mailSettingToFix(error: MailConfigurationError): string {
  const cause = error.cause as { code?: unknown; originalCode?: unknown } | undefined;
  const codes = [error.code, cause?.code, cause?.originalCode].filter(
    (code): code is string => typeof code === "string",
  );
  const authFailed = ["EAUTH", "ENOAUTH"].some((code) => codes.includes(code));
  if (authFailed || error.responseCode === 535 || error.responseCode === 534) {
    return "the user name and password in MAIL_URL";
  }
  if (codes.some((code) => CERTIFICATE_CODE.test(code)) || /certificate/i.test(error.message)) {
    return "MAIL_TLS_CA_FILE, or the host in MAIL_URL, which must match the server certificate";
  }
  if (codes.some((code) => TLS_MODE_CODES.has(code))) {
    return (
      "the scheme and port of MAIL_URL (smtp: for STARTTLS, usually port 587, or smtps: for " +
      "implicit TLS, usually port 465)"
    );
  }
  return "MAIL_URL";
}

function logSent(email: JobEmail, sent: SentMail, delivery: Delivery, log: Logger): void {
  const fields = {
    to: maskEmail(email.message.to),
    outcome: email.outcome,
    message_id: sent.messageId,
    redelivered: delivery.redelivered,
  };
  if (sent.path === undefined) {
    log.info(fields, "email sent");
    return;
  }
  // In embedded mode this line shows a developer which file contains the email.
  log.info(
    { ...fields, path: sent.path, download_url: email.downloadUrl },
    "email written to outbox",
  );
}

/**
 * Builds the event that reports a sent email: `notified` for a ready MP3, or `failed` with the
 * failure and `email_sent` set, because a failed job keeps its state and the gateway only records
 * the email. The failure also moves a job that is not yet `failed` there, so the order in which
 * the gateway receives this event and the converter's own `failed` event does not matter.
 */
export function toEmailSentEvent(message: Mp3Message, outcome: JobEmail["outcome"]): JobEvent {
  const base = { job_id: message.job_id, at: Date.now(), request_id: message.request_id };
  if (outcome === "failed" && message.failure !== undefined) {
    return { ...base, state: "failed", failure: message.failure, email_sent: true };
  }
  const event: JobEvent = { ...base, state: "notified" };
  if (message.mp3_fid !== null) event.mp3_fid = message.mp3_fid;
  return event;
}

/**
 * Publishes the event of a sent email; throws `RetryLaterError`, after logging, when the broker
 * fails. The redelivery then sends the email again under the same Message-ID.
 */
async function publishEmailSent(
  message: Mp3Message,
  email: JobEmail,
  options: NotifyWorkerOptions,
  log: Logger,
): Promise<void> {
  const event = toEmailSentEvent(message, email.outcome);
  try {
    await options.broker.publish(options.jobEventsQueue, encodeMessage(event), {
      messageId:
        event.state === "notified"
          ? `${message.job_id}.notified`
          : `${message.job_id}.failure-email`,
    });
  } catch (error) {
    log.warn(
      { err: errorFields(error), queue: options.jobEventsQueue, state: event.state },
      "email event not published",
    );
    throw new RetryLaterError(
      `${event.state} event of job ${message.job_id} not published; retrying later`,
      { cause: error },
    );
  }
}
