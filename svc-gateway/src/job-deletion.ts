/**
 * Deletion of finished jobs, shared by `DELETE /jobs/:id` and the retention sweep. The blobs go
 * before the row. A crash in between leaves a row whose blobs are gone, and the next deletion of
 * that job (a repeated request or the next sweep) finds the blobs missing and deletes the row.
 * Deleting the row first would lose the blob ids and leave the blobs behind for good.
 */
import type { JobState } from "@mp3converter/lib/messages";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import type { JobRecord, JobStore } from "./jobs-store.ts";

export interface JobDeletionDeps {
  jobs: JobStore;
  store: BlobStore;
}

/** Returns whether a job in `state` has finished and so may be deleted. */
export function isFinishedState(state: JobState): state is "converted" | "notified" | "failed" {
  return state === "converted" || state === "notified" || state === "failed";
}

/**
 * Ids of the MP3 blobs a job may have. The converter stores the MP3 under the job id, and a job
 * that failed after the MP3 was stored has no `mp3Fid` but may still have that blob.
 */
function mp3BlobIds(job: JobRecord): string[] {
  const ids = new Set([job.id]);
  if (job.mp3Fid !== null) ids.add(job.mp3Fid);
  return [...ids];
}

/**
 * Deletes a finished job: its video blob, its MP3 blob if any, then its row. A missing blob is
 * not an error, so a repeated call finishes what an interrupted one left. Returns whether this
 * call deleted the row, which is false when another call deleted it first.
 */
export async function deleteFinishedJob(job: JobRecord, deps: JobDeletionDeps): Promise<boolean> {
  if (!isFinishedState(job.state)) {
    throw new Error(
      `job ${job.id} is ${job.state}; only converted, notified or failed jobs are deleted`,
    );
  }
  await deps.store.delete("videos", job.videoFid);
  for (const id of mp3BlobIds(job)) await deps.store.delete("mp3s", id);
  return deps.jobs.deleteFinished(job.id);
}
