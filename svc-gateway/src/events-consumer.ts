/**
 * Consumers that move jobs: job events from the workers, VideoMessages the converter gave up on,
 * which reach the video queue's dead-letter queue, and Mp3Messages notify gave up on, which
 * reach the mp3 queue's dead-letter queue.
 */
import { DEATH_REASON_HEADER } from "@mp3converter/lib/adapters/broker";
import type { Logger } from "@mp3converter/lib/log";
import { errorFields } from "@mp3converter/lib/log";
import {
  decodeMessage,
  encodeMessage,
  InvalidMessageError,
  type JobEvent,
  JobEventSchema,
  type Mp3Message,
  type VideoMessage,
  VideoMessageSchema,
} from "@mp3converter/lib/messages";
import {
  type Broker,
  type Delivery,
  type DeliveryOutcome,
  deadLetterQueueName,
  type Subscription,
} from "@mp3converter/lib/ports/broker";
import { Type } from "@sinclair/typebox";
import type { JobStore, JobUpdate } from "./jobs-store.ts";

/** Deliveries each consumer holds at once; every event is one small UPDATE. */
const EVENTS_PREFETCH = 16;

/** Failure recorded for a job whose VideoMessage was dead-lettered. */
export const DEAD_LETTER_FAILURE = {
  code: "processing_failed",
  message:
    "The conversion could not be completed after repeated attempts. Upload the file again; " +
    "if it fails again, the file may be damaged.",
} as const;

/**
 * Only the job id of a dead-lettered message is needed, and the converter dead-letters messages
 * that fail the full VideoMessage schema, so this accepts any message that names a job.
 */
const DeadLetterSchema = Type.Object({
  job_id: Type.String({ minLength: 1, maxLength: 128, pattern: "^[A-Za-z0-9._-]+$" }),
});

export interface EventConsumerDeps {
  broker: Broker;
  jobs: JobStore;
  logger: Logger;
  videoQueue: string;
  mp3Queue: string;
  jobEventsQueue: string;
}

/** Turns a job event into the update of the jobs table it asks for. */
export function toJobUpdate(event: JobEvent, now: number): JobUpdate {
  const update: JobUpdate = { state: event.state, at: now };
  if (event.mp3_fid !== undefined) update.mp3Fid = event.mp3_fid;
  if (event.duration_s !== undefined) update.durationS = event.duration_s;
  if (event.warnings !== undefined) update.warnings = event.warnings;
  if (event.state === "failed") {
    update.failure = event.failure ?? {
      code: "conversion_failed",
      message: "The conversion failed. Upload the file again.",
    };
  }
  return update;
}

/** Applies one job event; a malformed one is rejected so that it lands in the dead-letter queue. */
export async function handleJobEvent(
  delivery: Delivery,
  deps: Pick<EventConsumerDeps, "jobs" | "logger">,
): Promise<DeliveryOutcome> {
  let event: JobEvent;
  try {
    event = decodeMessage(JobEventSchema, delivery.body);
  } catch (error) {
    if (!(error instanceof InvalidMessageError)) throw error;
    deps.logger.error(
      { err: errorFields(error), queue: delivery.queue, message_id: delivery.messageId },
      "job event rejected as malformed",
    );
    return "reject";
  }
  const now = Date.now();
  const applied = await deps.jobs.applyUpdate(event.job_id, toJobUpdate(event, now));
  const fields = { job_id: event.job_id, request_id: event.request_id, state: event.state };
  if (applied) deps.logger.info(fields, "job state changed");
  else deps.logger.debug(fields, "job event ignored as stale, duplicate or for an unknown job");
  await recordEmail(event, now, deps, fields);
  return "ack";
}

/**
 * Records the email that a `notified` event, or a `failed` event from notify, reports. A `failed`
 * job keeps its state after the email, so the record is what stops the recovery at start-up from
 * sending the failure email again.
 */
async function recordEmail(
  event: JobEvent,
  now: number,
  deps: Pick<EventConsumerDeps, "jobs" | "logger">,
  fields: Record<string, unknown>,
): Promise<void> {
  let state: "notified" | "failed";
  if (event.state === "notified") state = "notified";
  else if (event.state === "failed" && event.email_sent === true) state = "failed";
  else return;
  if (await deps.jobs.recordEmailSent(event.job_id, state, now)) {
    deps.logger.debug(fields, "job email recorded");
  }
}

/**
 * Returns the job id of a dead-lettered message, or undefined after logging a message that names
 * no job. Such a message is acknowledged and so dropped, because rejecting it would drop it too:
 * a dead-letter queue has no dead-letter queue of its own.
 */
function deadLetteredJobId(
  delivery: Delivery,
  kind: "video" | "mp3",
  logger: Logger,
): string | undefined {
  try {
    return decodeMessage(DeadLetterSchema, delivery.body).job_id;
  } catch (error) {
    if (!(error instanceof InvalidMessageError)) throw error;
    logger.error(
      { err: errorFields(error), queue: delivery.queue, message_id: delivery.messageId },
      `dead-lettered ${kind} message names no job; dropped`,
    );
    return undefined;
  }
}

/**
 * Marks the job of a dead-lettered VideoMessage failed. When the message is whole, it also sends
 * the failure to notify, which emails the user as for a file the converter cannot convert.
 *
 * A failed publish of that email throws, so the broker requeues the delivery after its backoff
 * (up to 5 s between tries, see `handlerErrorBackoffMs`). Both adapters declare dead-letter
 * queues without a delivery limit, so the delivery is retried until the publish succeeds. The
 * redelivery finds the job already failed and publishes the email again, unless notify has
 * recorded an email for the job by then.
 *
 * NOTE: a RabbitMQ server whose quorum queues get a delivery limit by default or by policy drops
 * the message once that limit is reached, because a dead-letter queue has none of its own. The
 * user then gets no email. The tests run on RabbitMQ 3.10, which sets no such limit.
 */
export async function handleDeadLetteredVideo(
  delivery: Delivery,
  deps: Pick<EventConsumerDeps, "jobs" | "logger" | "broker" | "mp3Queue">,
): Promise<DeliveryOutcome> {
  const jobId = deadLetteredJobId(delivery, "video", deps.logger);
  if (jobId === undefined) return "ack";
  const applied = await deps.jobs.applyUpdate(jobId, {
    state: "failed",
    failure: DEAD_LETTER_FAILURE,
    at: Date.now(),
  });
  const fields = {
    job_id: jobId,
    reason: delivery.headers[DEATH_REASON_HEADER],
    delivery_count: delivery.deliveryCount,
  };
  if (applied) {
    deps.logger.warn(fields, "job marked failed because its video message was dead-lettered");
  } else if (delivery.redelivered && (await awaitsDeadLetterEmail(jobId, deps.jobs))) {
    deps.logger.info(fields, "dead-lettered video message redelivered; failure email retried");
  } else {
    deps.logger.info(fields, "dead-lettered video message ignored; its job is finished or unknown");
    return "ack";
  }
  await publishFailureEmail(delivery, deps, fields);
  return "ack";
}

/**
 * Whether the job failed because its VideoMessage was dead-lettered and no email about it is
 * recorded yet. Only a redelivery checks this, because the first try of that delivery may have
 * failed to publish the email, or the process may have stopped before it did. A first delivery
 * of a second copy of the message sends nothing, so a duplicate dead-lettering sends no second
 * email.
 */
async function awaitsDeadLetterEmail(jobId: string, jobs: JobStore): Promise<boolean> {
  const job = await jobs.findById(jobId);
  return (
    job !== null &&
    job.state === "failed" &&
    job.notifiedAt === null &&
    job.failure?.code === DEAD_LETTER_FAILURE.code &&
    job.failure.message === DEAD_LETTER_FAILURE.message
  );
}

/**
 * Publishes the failure of a dead-lettered job to notify's queue, if the message is whole.
 * Throws when the publish fails, so that the delivery is retried.
 */
async function publishFailureEmail(
  delivery: Delivery,
  deps: Pick<EventConsumerDeps, "logger" | "broker" | "mp3Queue">,
  fields: Record<string, unknown>,
): Promise<void> {
  let video: VideoMessage;
  try {
    video = decodeMessage(VideoMessageSchema, delivery.body);
  } catch (error) {
    if (!(error instanceof InvalidMessageError)) throw error;
    deps.logger.warn(fields, "dead-lettered video message is incomplete; no failure email sent");
    return;
  }
  const message: Mp3Message = { ...video, mp3_fid: null, failure: DEAD_LETTER_FAILURE };
  try {
    await deps.broker.publish(deps.mp3Queue, encodeMessage(message), {
      messageId: video.job_id,
    });
  } catch (error) {
    deps.logger.error(
      { ...fields, err: errorFields(error) },
      "failure email was not queued; the dead-lettered video message is retried",
    );
    throw new Error(`failure email of job ${video.job_id} was not queued`, { cause: error });
  }
}

/**
 * Records that notify gave up emailing the user about a job, so `GET /jobs/:id` shows it, and
 * logs it for the operator. The job keeps its state: its MP3, if any, can still be downloaded.
 * Nothing sends the email again.
 */
export async function handleDeadLetteredEmail(
  delivery: Delivery,
  deps: Pick<EventConsumerDeps, "jobs" | "logger">,
): Promise<DeliveryOutcome> {
  const jobId = deadLetteredJobId(delivery, "mp3", deps.logger);
  if (jobId === undefined) return "ack";
  const recorded = await deps.jobs.recordEmailFailed(jobId, Date.now());
  const fields = { job_id: jobId, reason: delivery.headers[DEATH_REASON_HEADER] };
  if (recorded) deps.logger.error(fields, "email to the user failed for good; recorded on the job");
  else deps.logger.info(fields, "dead-lettered mp3 message ignored; job unknown or emailed");
  return "ack";
}

/** Starts the three consumers; the returned subscriptions are cancelled on shutdown. */
export async function startEventConsumers(deps: EventConsumerDeps): Promise<Subscription[]> {
  const events = await deps.broker.consume(
    deps.jobEventsQueue,
    (delivery) => handleJobEvent(delivery, deps),
    { prefetch: EVENTS_PREFETCH },
  );
  const deadLetters = await deps.broker.consume(
    deadLetterQueueName(deps.videoQueue),
    (delivery) => handleDeadLetteredVideo(delivery, deps),
    { prefetch: EVENTS_PREFETCH },
  );
  const failedEmails = await deps.broker.consume(
    deadLetterQueueName(deps.mp3Queue),
    (delivery) => handleDeadLetteredEmail(delivery, deps),
    { prefetch: EVENTS_PREFETCH },
  );
  return [events, deadLetters, failedEmails];
}
