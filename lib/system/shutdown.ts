/**
 * The stop order of the all-in-one system. Its broker keeps messages in memory only, so every
 * message still queued when the process exits is lost. The order below keeps that set small,
 * because each consumer handles the messages queued for it before it stops. The gateway
 * republishes the unfinished jobs of lost messages at the next start (see
 * `requeueUnfinishedJobs`, and `republishUnsentFailureEmails` for the failure emails). The order
 * still matters for emails: without it, a graceful stop could send an email twice.
 */
import type { AuthService } from "../../svc-auth/src/service.ts";
import type { ConverterService } from "../../svc-converter/src/service.ts";
import type { RunningGateway } from "../../svc-gateway/src/service.ts";
import type { NotifyService } from "../../svc-notify/src/service.ts";
import type { MemoryBroker } from "../src/adapters/memory-broker.ts";
import { errorFields, type Logger } from "../src/log.ts";
import { deadLetterQueueName } from "../src/ports/broker.ts";

/**
 * Maximum wait for the HTTP requests in progress, such as uploads, before their connections are
 * closed.
 */
export const HTTP_DRAIN_TIMEOUT_MS = 30_000;

/** Maximum wait for a consumer to handle the messages queued for it before it stops. */
export const QUEUE_DRAIN_TIMEOUT_MS = 10_000;

/** Parts of the system that started. A part is absent when start-up failed before it. */
export interface SystemParts {
  broker: MemoryBroker;
  logger: Logger;
  queues: { video: string; mp3: string; jobEvents: string };
  auth?: AuthService;
  gateway?: RunningGateway;
  converter?: ConverterService;
  notify?: NotifyService;
}

/**
 * Stops the system in the order that loses the fewest messages. The HTTP servers stop first, so
 * no job arrives while the workers drain, and uploads in progress finish while every service is
 * still running. The converter then finishes or requeues its conversions, notify sends the
 * emails for their results, and the gateway applies the events of both. The gateway's consumers
 * and outbox stop after that, and the broker last. A step that fails is logged, and the next
 * steps still run.
 */
export async function stopSystem(parts: SystemParts): Promise<void> {
  const { logger, queues } = parts;
  logger.info("all-in-one system stopping");
  await runStep(logger, "gateway http", () => stopGatewayHttp(parts));
  await runStep(logger, "auth", () => parts.auth?.stop());
  await runStep(logger, "converter", () => parts.converter?.stop());
  if (parts.notify) {
    await runStep(logger, "mp3 queue drain", () => drainQueues(parts, [queues.mp3]));
    await runStep(logger, "notify", () => parts.notify?.stop());
  }
  if (parts.gateway) {
    const eventQueues = [
      queues.jobEvents,
      deadLetterQueueName(queues.video),
      deadLetterQueueName(queues.mp3),
    ];
    await runStep(logger, "event queue drain", () => drainQueues(parts, eventQueues));
    await runStep(logger, "gateway", () => parts.gateway?.stop());
  }
  await runStep(logger, "broker", () => parts.broker.close());
  logger.info("all-in-one system stopped");
}

async function runStep(logger: Logger, step: string, run: () => Promise<unknown> | undefined) {
  try {
    await run();
  } catch (error) {
    logger.error({ err: errorFields(error), step }, "stopping a part of the system failed");
  }
}

/** Stops the gateway's HTTP server, closing the connections still open after the timeout. */
async function stopGatewayHttp(parts: SystemParts): Promise<void> {
  const gateway = parts.gateway;
  if (!gateway) return;
  const drained = await withinTimeout(gateway.stopServing(), HTTP_DRAIN_TIMEOUT_MS);
  if (drained) return;
  parts.logger.warn(
    { timeout_ms: HTTP_DRAIN_TIMEOUT_MS },
    "http requests still running after the timeout; closing their connections",
  );
  await gateway.stopServing({ closeActiveConnections: true });
}

async function drainQueues(parts: SystemParts, queues: string[]): Promise<void> {
  const idle = await parts.broker.waitUntilIdle(queues, QUEUE_DRAIN_TIMEOUT_MS);
  if (idle) return;
  parts.logger.warn(
    { queues, timeout_ms: QUEUE_DRAIN_TIMEOUT_MS },
    "messages still queued after the timeout; their jobs are republished at the next start",
  );
}

/** Resolves true when `promise` resolves within `ms`, false after `ms`, and rejects with it. */
function withinTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = promise.then(() => true);
  return Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
}
