/**
 * Retention of finished jobs (`JOB_RETENTION_DAYS`). A sweep deletes every `converted`, `notified` or `failed`
 * job whose `updated_at` is older than the retention period, with the same code as
 * `DELETE /jobs/:id`. Replicas may sweep at the same time. A job that two of them delete is
 * deleted once, and only the replica whose DELETE removed the row counts it.
 */
import type { Logger } from "@mp3converter/lib/log";
import { errorFields } from "@mp3converter/lib/log";
import { deleteFinishedJob, type JobDeletionDeps } from "./job-deletion.ts";
import type { JobUpdateCursor } from "./jobs-store.ts";

/** Time between two sweeps. The first sweep runs at start-up. */
export const RETENTION_SWEEP_INTERVAL_MS = 60 * 60 * 1000;

/** Number of expired jobs read from the jobs table at a time. */
export const RETENTION_PAGE_SIZE = 100;

/**
 * Failed deletions after which a sweep stops. When storage is down every deletion fails, and
 * this keeps such a sweep to a few log lines. The next sweep tries again.
 */
export const RETENTION_MAX_FAILURES = 10;

const DAY_MS = 24 * 60 * 60 * 1000;

export interface RetentionDeps extends JobDeletionDeps {
  logger: Logger;
  /** Days a finished job is kept after its last update. 0 keeps jobs forever. */
  retentionDays: number;
}

/** Counts of one sweep. */
export interface SweepResult {
  /** Jobs whose row this sweep deleted. */
  deleted: number;
  /** Jobs whose deletion threw. The next sweep tries them again. */
  failed: number;
}

/**
 * Deletes the finished jobs last updated more than `retentionDays` before `now`, a page at a
 * time. A job whose deletion fails is logged and skipped, and the sweep stops after
 * `RETENTION_MAX_FAILURES` of them. Does nothing when `retentionDays` is 0.
 */
export async function sweepExpiredJobs(
  deps: RetentionDeps,
  now = Date.now(),
): Promise<SweepResult> {
  const result: SweepResult = { deleted: 0, failed: 0 };
  if (deps.retentionDays <= 0) return result;
  const cutoff = now - deps.retentionDays * DAY_MS;
  let cursor: JobUpdateCursor | undefined;
  for (;;) {
    const page = await deps.jobs.listFinishedBefore(cutoff, RETENTION_PAGE_SIZE, cursor);
    for (const job of page) {
      try {
        if (await deleteFinishedJob(job, deps)) result.deleted++;
      } catch (error) {
        result.failed++;
        deps.logger.error(
          { err: errorFields(error), job_id: job.id },
          "expired job not deleted; the next sweep retries it",
        );
        if (result.failed >= RETENTION_MAX_FAILURES) {
          deps.logger.warn(
            { ...result, retention_days: deps.retentionDays },
            "retention sweep stopped after repeated failures",
          );
          return result;
        }
      }
    }
    const last = page.at(-1);
    if (last === undefined || page.length < RETENTION_PAGE_SIZE) break;
    cursor = { updatedAt: last.updatedAt, id: last.id };
  }
  deps.logger.info({ ...result, retention_days: deps.retentionDays }, "retention sweep finished");
  return result;
}

/** A running retention loop. */
export interface RetentionLoop {
  /** Runs a sweep now, or waits for the sweep in progress; used by tests. */
  runNow(): Promise<SweepResult>;
  /** Stops the timer and waits for the sweep in progress. */
  stop(): Promise<void>;
}

/**
 * Sweeps once at once, then every `intervalMs`, and never starts a sweep while one runs. With
 * `retentionDays` 0 no timer starts. The timer is unref'd so that it does not keep the process
 * alive. Deno's timers are plain numbers without `unref`, so there it stays referenced.
 */
export function startRetentionLoop(
  deps: RetentionDeps,
  intervalMs = RETENTION_SWEEP_INTERVAL_MS,
): RetentionLoop {
  let running: Promise<SweepResult> | undefined;
  let stopped = false;

  const run = (): Promise<SweepResult> => {
    if (running) return running;
    running = sweepExpiredJobs(deps)
      .catch((error: unknown) => {
        deps.logger.error({ err: errorFields(error) }, "retention sweep failed");
        return { deleted: 0, failed: 0 };
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };

  let timer: ReturnType<typeof setInterval> | undefined;
  if (deps.retentionDays > 0) {
    timer = setInterval(() => {
      if (!stopped) void run();
    }, intervalMs);
    timer.unref?.();
    void run();
  }

  return {
    runNow: run,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
