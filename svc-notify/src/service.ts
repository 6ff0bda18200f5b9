/**
 * Wires the notify service: the mailer, the broker consumer of the `mp3` queue and the health
 * server. Tests and the all-in-one mode pass their own broker, mailer or logger.
 */
import { openBroker } from "@mp3converter/lib/adapters/broker";
import { openMailer } from "@mp3converter/lib/adapters/mail";
import { healthRoutes } from "@mp3converter/lib/health";
import { createHttpApp } from "@mp3converter/lib/http";
import { createLogger, errorFields, type Logger } from "@mp3converter/lib/log";
import type { Broker, Subscription } from "@mp3converter/lib/ports/broker";
import { MailConfigurationError, type Mailer } from "@mp3converter/lib/ports/mail";
import { serve } from "@mp3converter/lib/runtime";
import type { NotifyConfig } from "./config.ts";
import { SEND_RETRY_INITIAL_DELAY_MS, SEND_RETRY_MAX_DELAY_MS } from "./retry.ts";
import { createNotifyHandler, MailStatus, mailSettingToFix } from "./worker.ts";

export interface NotifyOverrides {
  /** A broker to use instead of opening `BROKER_URL`; the service does not close it. */
  broker?: Broker;
  /** A mailer to use instead of opening `MAIL_URL`; the service does not close it. */
  mailer?: Mailer;
  logger?: Logger;
  /** Delays between the send retries of one email, in place of 1 s doubling up to 60 s. */
  sendRetryDelays?: { initialMs: number; maxMs: number };
}

export interface NotifyService {
  /** Port of the health server. */
  port: number;
  /**
   * Stops consuming, ends the waits between send retries so that their messages go back to the
   * queue, waits for the sends in progress, and closes what the service opened.
   */
  stop(): Promise<void>;
}

/**
 * Starts the notify service. Rejects with `MailConfigurationError` when the mail server rejects
 * the credentials or the TLS settings at start-up. Any other verification failure is logged as
 * a warning and the service starts anyway, because the server may come back.
 */
export async function startNotify(
  config: Readonly<NotifyConfig>,
  overrides: NotifyOverrides = {},
): Promise<NotifyService> {
  const logger = overrides.logger ?? createLogger({ service: "notify", level: config.logLevel });
  const mailer = overrides.mailer ?? (await openConfiguredMailer(config, logger));
  const closeMailer = overrides.mailer ? async () => {} : () => mailer.close();

  const broker = await openOrClose(
    async () => overrides.broker ?? (await openBroker(config.brokerUrl, { logger })),
    closeMailer,
  );
  const closeBroker = overrides.broker ? async () => {} : () => broker.close();
  const closeAdapters = async () => {
    await closeBroker();
    await closeMailer();
  };

  const mailStatus = new MailStatus();
  const stopRetries = new AbortController();
  const subscription = await openOrClose(async () => {
    await verifyMailer(mailer, mailStatus, logger);
    await broker.declareQueues([config.mp3Queue, config.jobEventsQueue]);
    const handler = createNotifyHandler({
      broker,
      mailer,
      logger,
      email: { from: config.mailFrom, publicUrl: config.publicUrl },
      jobEventsQueue: config.jobEventsQueue,
      mailStatus,
      sendRetry: {
        windowMs: config.mailRetrySeconds * 1000,
        initialDelayMs: overrides.sendRetryDelays?.initialMs ?? SEND_RETRY_INITIAL_DELAY_MS,
        maxDelayMs: overrides.sendRetryDelays?.maxMs ?? SEND_RETRY_MAX_DELAY_MS,
      },
      signal: stopRetries.signal,
    });
    return broker.consume(config.mp3Queue, handler, { prefetch: config.prefetch });
  }, closeAdapters);

  const health = createHttpApp("notify", logger).use(
    healthRoutes(logger, {
      broker: () => checkBroker(broker),
      mail: () => mailStatus.check(),
      mail_delivery: { check: () => mailStatus.checkDelivery(), required: false },
    }),
  );
  const server = await openOrClose(
    () => serve(health.fetch, { port: config.healthPort, hostname: config.healthHost }),
    async () => {
      await cancelConsumer(subscription, stopRetries);
      await closeAdapters();
    },
  );

  logger.info(
    {
      queue: config.mp3Queue,
      prefetch: config.prefetch,
      mail_retry_seconds: config.mailRetrySeconds,
      health_port: server.port,
      mail_scheme: new URL(config.mailUrl).protocol,
    },
    "notify started",
  );
  let stopping: Promise<void> | undefined;
  return {
    port: server.port,
    stop: () => {
      stopping ??= stopNotify(subscription, stopRetries, server, closeAdapters, logger);
      return stopping;
    },
  };
}

async function openConfiguredMailer(config: Readonly<NotifyConfig>, logger: Logger) {
  return openMailer(config.mailUrl, { logger, tls: { ca: config.mailTlsCa } });
}

/** Checks the mailer once: a configuration error is fatal, anything else is only a warning. */
async function verifyMailer(mailer: Mailer, mailStatus: MailStatus, logger: Logger) {
  try {
    await mailer.verify();
    logger.info("mail server verified");
  } catch (error) {
    if (error instanceof MailConfigurationError) {
      const setting = mailSettingToFix(error);
      mailStatus.markDown(`${error.message}; check ${setting}`);
      logger.error(
        { err: errorFields(error), setting },
        `mail verification failed; fix ${setting}`,
      );
      throw error;
    }
    logger.warn(
      { err: errorFields(error) },
      "mail verification failed; starting anyway, sends are retried",
    );
  }
}

function checkBroker(broker: Broker): void {
  const health = broker.health();
  if (!health.connected) throw new Error(health.detail ?? "broker is not connected");
}

/** Runs `open`, and when it throws, runs `cleanup` before rethrowing. */
async function openOrClose<T>(open: () => Promise<T>, cleanup: () => Promise<void>): Promise<T> {
  try {
    return await open();
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * Ends the waits between send retries and cancels the consumer in one synchronous step, then
 * waits for its handlers. Both broker adapters mark a consumer cancelled before `cancel()` first
 * awaits, and a handler whose wait ended resumes only after that. So the message it requeues
 * stays in the queue instead of coming back to this consumer.
 */
function cancelConsumer(subscription: Subscription, stopRetries: AbortController): Promise<void> {
  stopRetries.abort();
  return subscription.cancel();
}

async function stopNotify(
  subscription: Subscription,
  stopRetries: AbortController,
  server: { stop(): Promise<void> },
  closeAdapters: () => Promise<void>,
  logger: Logger,
): Promise<void> {
  logger.info("notify stopping");
  await cancelConsumer(subscription, stopRetries);
  await server.stop();
  await closeAdapters();
  logger.info("notify stopped");
}
