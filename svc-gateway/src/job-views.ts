/** JSON shapes of jobs in responses, and the cursor of the job list. */
import { AppError } from "@mp3converter/lib/errors";
import type { JobState } from "@mp3converter/lib/messages";
import type { JobCursor, JobRecord } from "./jobs-store.ts";

/** A job as `GET /jobs/:id` and `GET /jobs` return it; timestamps are ISO 8601. */
export interface JobView {
  job_id: string;
  state: JobState;
  filename: string;
  failure?: { code: string; message: string };
  mp3_fid?: string;
  download_url?: string;
  duration_s?: number;
  warnings?: string[];
  /** Present when notify gave up emailing the user about the job. */
  email_failed?: true;
  created_at: string;
  updated_at: string;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `id` has the form of a job id, a lowercase UUID. */
export function isJobId(id: string): boolean {
  return UUID_PATTERN.test(id);
}

/** URL of a job's status resource. */
export function statusUrl(publicUrl: string, jobId: string): string {
  return `${publicUrl}/jobs/${jobId}`;
}

/** Maps a job row to its public view; download fields appear once the MP3 exists. */
export function toJobView(job: JobRecord, publicUrl: string): JobView {
  const view: JobView = {
    job_id: job.id,
    state: job.state,
    filename: job.filename,
    created_at: new Date(job.createdAt).toISOString(),
    updated_at: new Date(job.updatedAt).toISOString(),
  };
  if (job.failure) view.failure = job.failure;
  const finished = job.state === "converted" || job.state === "notified";
  if (finished && job.mp3Fid) {
    view.mp3_fid = job.mp3Fid;
    view.download_url = `${publicUrl}/download?fid=${encodeURIComponent(job.mp3Fid)}`;
  }
  if (job.durationS !== null) view.duration_s = job.durationS;
  if (job.warnings.length > 0) view.warnings = job.warnings;
  if (job.emailFailedAt !== null && job.notifiedAt === null) view.email_failed = true;
  return view;
}

/** Encodes the position after `job` as an opaque cursor string. */
export function encodeCursor(job: JobRecord): string {
  return Buffer.from(`${job.createdAt}.${job.id}`).toString("base64url");
}

function invalidCursor(): AppError {
  return new AppError(
    "invalid_argument",
    "The cursor is invalid. Pass the next_cursor value of the previous page unchanged.",
  );
}

/** Decodes a cursor made by `encodeCursor`; rejects anything else with 400. */
export function decodeCursor(cursor: string): JobCursor {
  if (cursor.length > 128 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalidCursor();
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  const dot = text.indexOf(".");
  const createdAt = Number(text.slice(0, dot));
  const id = text.slice(dot + 1);
  if (dot <= 0 || !Number.isSafeInteger(createdAt) || createdAt < 0 || !isJobId(id)) {
    throw invalidCursor();
  }
  return { createdAt, id };
}
