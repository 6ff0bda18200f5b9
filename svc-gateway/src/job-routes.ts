/** `GET /jobs/:id`, `GET /jobs` and `DELETE /jobs/:id`: the caller's jobs, never anyone else's. */
import { AppError } from "@mp3converter/lib/errors";
import type { Logger } from "@mp3converter/lib/log";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import { deleteFinishedJob, isFinishedState } from "./job-deletion.ts";
import { decodeCursor, encodeCursor, isJobId, type JobView, toJobView } from "./job-views.ts";
import type { JobCursor, JobStore } from "./jobs-store.ts";

/** Page size of `GET /jobs` when `limit` is absent. */
export const JOBS_DEFAULT_LIMIT = 20;

/** Maximum page size of `GET /jobs`. */
export const JOBS_MAX_LIMIT = 100;

export interface JobRouteDeps {
  jobs: JobStore;
  publicUrl: string;
}

/** A page of `GET /jobs`; `next_cursor` is null on the last page. */
export interface JobListView {
  jobs: JobView[];
  next_cursor: string | null;
}

/** Query of `GET /jobs`, checked. */
export interface JobListQuery {
  limit: number;
  cursor?: JobCursor;
}

/** One 404 for a malformed id, an unknown id and another user's job. */
function jobNotFound(): AppError {
  return new AppError(
    "not_found",
    "No job with this id belongs to you. List yours with GET /jobs.",
  );
}

/** Reads and checks `limit` and `cursor` of `GET /jobs`. */
export function parseJobListQuery(url: URL): JobListQuery {
  const rawLimit = url.searchParams.get("limit");
  let limit = JOBS_DEFAULT_LIMIT;
  if (rawLimit !== null) {
    limit = /^\d{1,3}$/.test(rawLimit) ? Number(rawLimit) : 0;
    if (limit < 1 || limit > JOBS_MAX_LIMIT) {
      throw new AppError(
        "invalid_argument",
        `The query parameter limit=${rawLimit.slice(0, 20)} is invalid. Use an integer from 1 to ${JOBS_MAX_LIMIT}.`,
      );
    }
  }
  const rawCursor = url.searchParams.get("cursor");
  return rawCursor === null ? { limit } : { limit, cursor: decodeCursor(rawCursor) };
}

/** Returns the job `id` of `ownerId`, or 404. */
export async function getJob(id: string, ownerId: string, deps: JobRouteDeps): Promise<JobView> {
  if (!isJobId(id)) throw jobNotFound();
  const job = await deps.jobs.findOwned(id, ownerId);
  if (!job) throw jobNotFound();
  return toJobView(job, deps.publicUrl);
}

/**
 * Deletes the finished job `id` of `ownerId` with its video and MP3. Rejects an unknown job or
 * another user's job with the 404 of `getJob`, and an active job with 409 `job_in_progress`.
 */
export async function deleteJob(
  id: string,
  ownerId: string,
  deps: JobRouteDeps & { store: BlobStore; log: Logger },
): Promise<void> {
  if (!isJobId(id)) throw jobNotFound();
  const job = await deps.jobs.findOwned(id, ownerId);
  if (!job) throw jobNotFound();
  if (!isFinishedState(job.state)) {
    throw new AppError(
      "job_in_progress",
      `The job is still ${job.state}. Wait until it is converted or failed, then delete it again.`,
      { details: { state: job.state } },
    );
  }
  const deleted = await deleteFinishedJob(job, deps);
  deps.log.info({ job_id: id, state: job.state, row_deleted: deleted }, "job deleted");
}

/** Returns one page of the jobs of `ownerId`, newest first. */
export async function listJobs(
  query: JobListQuery,
  ownerId: string,
  deps: JobRouteDeps,
): Promise<JobListView> {
  // One row more than the page shows whether another page follows.
  const rows = await deps.jobs.listOwned(ownerId, query.limit + 1, query.cursor);
  const page = rows.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    jobs: page.map((job) => toJobView(job, deps.publicUrl)),
    next_cursor: rows.length > query.limit && last ? encodeCursor(last) : null,
  };
}
