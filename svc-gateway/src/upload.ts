/**
 * `POST /upload`: stores the video, records a `queued` job and publishes its VideoMessage. The
 * job row is written before the publish, so a broker outage delays the job but never loses it.
 * A user with `maxActiveJobsPerUser` jobs queued or converting gets 429 before any byte of the body is read.
 */
import { randomUUID } from "node:crypto";
import { AppError } from "@mp3converter/lib/errors";
import type { Logger } from "@mp3converter/lib/log";
import { errorFields, maskEmail } from "@mp3converter/lib/log";
import type { Broker } from "@mp3converter/lib/ports/broker";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import type { Principal } from "./bearer.ts";
import { tooLarge, UPLOAD_HINT } from "./form-errors.ts";
import { statusUrl } from "./job-views.ts";
import type { JobRecord, JobStore } from "./jobs-store.ts";
import {
  isMultipartFormData,
  MULTIPART_OVERHEAD_BYTES,
  type ReceivedFile,
  receiveSingleFile,
} from "./multipart.ts";
import { PUBLISH_LEASE_MS, publishJob } from "./outbox.ts";

export interface UploadDeps {
  store: BlobStore;
  jobs: JobStore;
  broker: Broker;
  videoQueue: string;
  uploadMaxBytes: number;
  /** Maximum number of queued or converting jobs per user. A value of 0 turns the limit off. */
  maxActiveJobsPerUser: number;
  publicUrl: string;
}

/**
 * Retry-After of the 429 for too many active jobs. It is a polling interval, not a forecast,
 * because when a job finishes depends on the converters' queue and the video's length.
 */
export const ACTIVE_JOBS_RETRY_AFTER_SECONDS = 30;

/** Body of the 202 response. */
export interface UploadAccepted {
  job_id: string;
  status_url: string;
  state: "queued";
}

/**
 * Rejects a body that is not multipart, that has a content coding, or whose declared length
 * cannot fit under the limit. The gateway does not decode a compressed body, so it would store
 * the compressed bytes as the video.
 */
function checkUploadHeaders(request: Request, maxBytes: number): void {
  if (!isMultipartFormData(request)) {
    throw new AppError(
      "unsupported_media_type",
      `The request body is not multipart/form-data. ${UPLOAD_HINT}`,
    );
  }
  const coding = request.headers.get("content-encoding")?.trim().toLowerCase();
  if (coding && coding !== "identity") {
    throw new AppError(
      "unsupported_media_type",
      `The request body has Content-Encoding ${coding.slice(0, 40)}, which uploads do not ` +
        "support. Send the form without compression.",
    );
  }
  // Content-Length counts the multipart framing too, so only a length the framing cannot
  // explain proves the file too large before any byte is read.
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes + MULTIPART_OVERHEAD_BYTES) throw tooLarge(maxBytes);
}

/**
 * Rejects the upload with 429 when `owner` already has the maximum number of queued or converting jobs.
 *
 * NOTE: the count and the later insert are separate statements, so concurrent uploads by one user
 * can each pass this check and the user can end up over the limit by their number. The check runs
 * before the body is read, where no job exists yet to insert.
 */
async function checkActiveJobLimit(owner: Principal, deps: UploadDeps, log: Logger): Promise<void> {
  const max = deps.maxActiveJobsPerUser;
  if (max === 0) return;
  let active: number;
  try {
    active = await deps.jobs.countActive(owner.userId);
  } catch (error) {
    log.error({ err: errorFields(error) }, "counting active jobs failed");
    throw new AppError("unavailable", "Checking your active jobs failed. Try again later.");
  }
  if (active < max) return;
  log.info({ active, max_active_jobs: max }, "upload rejected: too many active jobs");
  throw new AppError(
    "too_many_active_jobs",
    `You have ${active} jobs queued or converting, and the limit is ${max}. Wait until one of ` +
      "them is converted or failed (GET /jobs lists their states), then upload again.",
    {
      headers: { "retry-after": String(ACTIVE_JOBS_RETRY_AFTER_SECONDS) },
      details: { active_jobs: active, max_active_jobs: max },
    },
  );
}

function newJobRecord(file: ReceivedFile, owner: Principal, requestId: string): JobRecord {
  const now = Date.now();
  return {
    id: randomUUID(),
    ownerId: owner.userId,
    ownerEmail: owner.email,
    filename: file.filename,
    videoFid: file.blob.id,
    mp3Fid: null,
    state: "queued",
    failure: null,
    durationS: null,
    warnings: [],
    requestId,
    createdAt: now,
    updatedAt: now,
    publishedAt: null,
    notifiedAt: null,
    emailFailedAt: null,
  };
}

/** Inserts the job; on failure removes the stored video, because no job will ever use it. */
async function insertJob(job: JobRecord, deps: UploadDeps, log: Logger): Promise<void> {
  try {
    await deps.jobs.insert({ ...job, publishLeaseUntil: job.createdAt + PUBLISH_LEASE_MS });
  } catch (error) {
    log.error({ err: errorFields(error), video_fid: job.videoFid }, "recording the job failed");
    await deps.store.delete("videos", job.videoFid).catch((deleteError: unknown) => {
      log.error(
        { err: errorFields(deleteError), video_fid: job.videoFid },
        "removing video failed",
      );
    });
    throw new AppError("unavailable", "Recording the upload failed. Try again later.");
  }
}

/** Publishes the job now; on failure leaves it to the outbox and still accepts the upload. */
async function publishOrDefer(job: JobRecord, deps: UploadDeps, log: Logger): Promise<void> {
  try {
    await publishJob(job, deps);
  } catch (error) {
    log.warn({ err: errorFields(error), job_id: job.id }, "publish failed; job left to the outbox");
    await deps.jobs.releaseClaim(job.id).catch((releaseError: unknown) => {
      // The lease then expires by itself after PUBLISH_LEASE_MS.
      log.error({ err: errorFields(releaseError), job_id: job.id }, "releasing the lease failed");
    });
  }
}

/** Accepts one upload of `owner` and returns the 202 body. */
export async function acceptUpload(
  request: Request,
  owner: Principal,
  context: { requestId: string; log: Logger },
  deps: UploadDeps,
): Promise<UploadAccepted> {
  checkUploadHeaders(request, deps.uploadMaxBytes);
  await checkActiveJobLimit(owner, deps, context.log);
  const file = await receiveSingleFile(request, {
    store: deps.store,
    bucket: "videos",
    maxBytes: deps.uploadMaxBytes,
    log: context.log,
  });

  const job = newJobRecord(file, owner, context.requestId);
  await insertJob(job, deps, context.log);
  context.log.info(
    { job_id: job.id, size: file.blob.size, email: maskEmail(owner.email) },
    "upload accepted",
  );

  await publishOrDefer(job, deps, context.log);
  return { job_id: job.id, status_url: statusUrl(deps.publicUrl, job.id), state: "queued" };
}
