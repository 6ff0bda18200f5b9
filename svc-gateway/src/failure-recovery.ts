/**
 * Recovery of failure emails at start-up. A `failed` job is final, so the outbox never publishes
 * it again, and its email is recorded only when notify reports it (`notified_at`). When the broker
 * lost its messages in a restart, the gateway sends the stored failure straight to notify's queue
 * for every failed job with no recorded email, as it does for a dead-lettered job. Nothing is
 * converted again.
 */
import type { Logger } from "@mp3converter/lib/log";
import { errorFields } from "@mp3converter/lib/log";
import { encodeMessage, type Failure, type Mp3Message } from "@mp3converter/lib/messages";
import type { Broker } from "@mp3converter/lib/ports/broker";
import { REQUEST_ID_HEADER } from "@mp3converter/lib/request-id";
import type { JobCursor, JobRecord, JobStore } from "./jobs-store.ts";
import { toVideoMessage } from "./outbox.ts";

/** Number of failed jobs read from the jobs table at a time. */
const RECOVERY_PAGE_SIZE = 100;

/** Failure sent for a failed job that has no stored reason; every failed job should have one. */
const UNKNOWN_FAILURE: Failure = {
  code: "conversion_failed",
  message: "The conversion failed. Upload the file again.",
};

export interface FailureRecoveryDeps {
  broker: Broker;
  jobs: JobStore;
  logger: Logger;
  mp3Queue: string;
}

/** Builds the `mp3` message from which notify emails the user about a failed job. */
export function toFailureMessage(job: JobRecord): Mp3Message {
  return { ...toVideoMessage(job), failure: job.failure ?? UNKNOWN_FAILURE };
}

/**
 * Publishes the failure email of every `failed` job whose email was not recorded, when the broker
 * keeps no messages across restarts (`broker.durable` is false). Stops at the first publish
 * failure, and the jobs left over are tried at the next start. Returns how many were published.
 *
 * A job whose email was sent but not yet recorded when the process died gets the email a second
 * time, with the same Message-ID. RabbitMQ keeps the messages, so with it nothing is published.
 */
export async function republishUnsentFailureEmails(deps: FailureRecoveryDeps): Promise<number> {
  if (deps.broker.durable) return 0;
  let published = 0;
  let cursor: JobCursor | undefined;
  for (;;) {
    const page = await deps.jobs.listFailedWithoutEmail(RECOVERY_PAGE_SIZE, cursor);
    for (const job of page) {
      try {
        await deps.broker.publish(deps.mp3Queue, encodeMessage(toFailureMessage(job)), {
          messageId: job.id,
          headers: { [REQUEST_ID_HEADER]: job.requestId },
        });
      } catch (error) {
        deps.logger.error(
          { err: errorFields(error), job_id: job.id, published },
          "failure email not queued; failed jobs without an email are retried at the next start",
        );
        return published;
      }
      published++;
    }
    const last = page.at(-1);
    if (last === undefined || page.length < RECOVERY_PAGE_SIZE) break;
    cursor = { createdAt: last.createdAt, id: last.id };
  }
  if (published > 0) {
    deps.logger.info(
      { jobs: published },
      "broker keeps no messages across restarts; failure emails of failed jobs queued again",
    );
  }
  return published;
}
