/**
 * The transactional outbox of the video queue. A job row is the record of an accepted upload;
 * `published_at` stays NULL until the broker confirmed its VideoMessage, and a loop republishes
 * such rows. A job may be published twice (a crash after the confirm, before the row update),
 * which is harmless because the converter is idempotent per job id.
 */
import type { Logger } from "@mp3converter/lib/log";
import { errorFields } from "@mp3converter/lib/log";
import { encodeMessage, type VideoMessage } from "@mp3converter/lib/messages";
import type { Broker } from "@mp3converter/lib/ports/broker";
import { REQUEST_ID_HEADER } from "@mp3converter/lib/request-id";
import type { JobRecord, JobStore } from "./jobs-store.ts";

/** How long a replica may hold a job while publishing it before others may take it over. */
export const PUBLISH_LEASE_MS = 60_000;

/** Maximum number of jobs one outbox run publishes. */
export const OUTBOX_BATCH_SIZE = 100;

/** Builds the VideoMessage of a job. */
export function toVideoMessage(job: JobRecord): VideoMessage {
  return {
    job_id: job.id,
    video_fid: job.videoFid,
    mp3_fid: null,
    username: job.ownerEmail,
    filename: job.filename,
    request_id: job.requestId,
  };
}

/** Publishes a job's VideoMessage with the job id as message id, then marks the job published. */
export async function publishJob(
  job: JobRecord,
  deps: { broker: Broker; jobs: JobStore; videoQueue: string },
): Promise<void> {
  await deps.broker.publish(deps.videoQueue, encodeMessage(toVideoMessage(job)), {
    messageId: job.id,
    headers: { [REQUEST_ID_HEADER]: job.requestId },
  });
  await deps.jobs.markPublished(job.id, Date.now());
}

export interface OutboxDeps {
  broker: Broker;
  jobs: JobStore;
  videoQueue: string;
  logger: Logger;
}

/**
 * Publishes the unpublished jobs, oldest first, up to one batch. Each job is claimed with a
 * lease first, so two replicas rarely publish the same one. Stops at the first publish failure,
 * because the broker is then most likely down. Returns how many jobs were published.
 */
export async function runOutboxOnce(deps: OutboxDeps): Promise<number> {
  const now = Date.now();
  const pending = await deps.jobs.listUnpublished(now, OUTBOX_BATCH_SIZE);
  let published = 0;
  for (const job of pending) {
    if (!(await deps.jobs.claimForPublish(job.id, now, now + PUBLISH_LEASE_MS))) continue;
    try {
      await publishJob(job, deps);
      published++;
    } catch (error) {
      await deps.jobs.releaseClaim(job.id);
      deps.logger.warn(
        { err: errorFields(error), job_id: job.id, pending: pending.length - published },
        "outbox publish failed; retrying on the next run",
      );
      break;
    }
  }
  if (published > 0) deps.logger.info({ published }, "outbox published jobs");
  return published;
}

/**
 * Prepares the recovery of unfinished jobs at start-up when the broker lost its messages in the
 * restart (`broker.durable` is false, as for the in-process broker). Every job that is `queued`,
 * `converting` or `converted` is marked unpublished, so the outbox publishes its VideoMessage
 * again and the job ends `notified` or `failed`. Republishing is safe: the converter finds the
 * MP3 of a converted job under its job id and only publishes the result again, notify sends one
 * email per `mp3` message, and the gateway applies events only forward. RabbitMQ keeps its
 * durable queues and persistent messages across restarts, so with it nothing is republished.
 * Returns how many jobs were marked.
 */
export async function requeueUnfinishedJobs(
  deps: Pick<OutboxDeps, "broker" | "jobs" | "logger">,
): Promise<number> {
  if (deps.broker.durable) return 0;
  // NOTE: a job whose email was sent but whose `notified` event had not been applied when the
  // process died is still `converted`, so its user gets the email a second time, with the same
  // Message-ID. A graceful stop of the all-in-one system avoids this, because it waits up to
  // 10 s for the pending events before it exits (lib/system/shutdown.ts).
  const marked = await deps.jobs.markUnfinishedUnpublished();
  if (marked > 0) {
    deps.logger.info(
      { jobs: marked },
      "broker keeps no messages across restarts; unfinished jobs marked for republishing",
    );
  }
  return marked;
}

/** A running outbox loop. */
export interface OutboxLoop {
  /** Runs the outbox now, or waits for the run in progress; used by tests. */
  runNow(): Promise<number>;
  /** Stops the timer and waits for the run in progress. */
  stop(): Promise<void>;
}

/** Runs the outbox once at once, then every `intervalMs`; a run never overlaps another. */
export function startOutboxLoop(deps: OutboxDeps, intervalMs: number): OutboxLoop {
  let running: Promise<number> | undefined;
  let stopped = false;

  const run = (): Promise<number> => {
    if (running) return running;
    running = runOutboxOnce(deps)
      .catch((error: unknown) => {
        deps.logger.error({ err: errorFields(error) }, "outbox run failed");
        return 0;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };

  const timer = setInterval(() => {
    if (!stopped) void run();
  }, intervalMs);
  void run();

  return {
    runNow: run,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
