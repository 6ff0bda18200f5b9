/**
 * Reads and writes the jobs table. Statements are shared between SQLite and MySQL, and every
 * state change is one conditional UPDATE, so concurrent replicas and duplicate events cannot
 * move a job backwards.
 */
import type { Failure, JobState } from "@mp3converter/lib/messages";
import type { SqlExecutor, SqlValue } from "@mp3converter/lib/ports/sql";

/** A row of the jobs table, with times in milliseconds since the epoch. */
export interface JobRecord {
  id: string;
  ownerId: string;
  ownerEmail: string;
  filename: string;
  videoFid: string;
  mp3Fid: string | null;
  state: JobState;
  failure: Failure | null;
  durationS: number | null;
  warnings: string[];
  requestId: string;
  createdAt: number;
  updatedAt: number;
  publishedAt: number | null;
  /** When the gateway recorded that the user was emailed about the outcome, else null. */
  notifiedAt: number | null;
  /** When notify gave up emailing the user and dead-lettered the message, else null. */
  emailFailedAt: number | null;
}

/** Fields of a new job; it starts `queued` and unpublished. */
export interface NewJob {
  id: string;
  ownerId: string;
  ownerEmail: string;
  filename: string;
  videoFid: string;
  requestId: string;
  createdAt: number;
  /** The publish lease the inserting request holds, so no outbox publishes the job meanwhile. */
  publishLeaseUntil: number;
}

/** A state change to apply; the fields left out keep their stored values. */
export interface JobUpdate {
  state: Exclude<JobState, "queued">;
  mp3Fid?: string;
  durationS?: number;
  warnings?: readonly string[];
  failure?: Failure;
  at: number;
}

/** Position in the caller's job list: the last job of the previous page. */
export interface JobCursor {
  createdAt: number;
  id: string;
}

/** Position in the retention sweep: the last job of the previous page. */
export interface JobUpdateCursor {
  updatedAt: number;
  id: string;
}

/**
 * States a job may be in for an update to `state` to apply. `failed` applies only before the MP3
 * exists: a job that has an MP3 stays downloadable even if a late failure arrives.
 */
const EARLIER_STATES: Record<JobUpdate["state"], readonly JobState[]> = {
  converting: ["queued"],
  converted: ["queued", "converting"],
  notified: ["queued", "converting", "converted"],
  failed: ["queued", "converting"],
};

const JOB_COLUMNS =
  "id, owner_id, owner_email, filename, video_fid, mp3_fid, state, failure_code, " +
  "failure_message, duration_s, warnings, request_id, created_at, updated_at, published_at, " +
  "notified_at, email_failed_at";

const INSERT_JOB =
  "INSERT INTO jobs (id, owner_id, owner_email, filename, video_fid, state, request_id, " +
  "created_at, updated_at, publish_lease_until) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)";

const SELECT_OWNED_JOB = `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ? AND owner_id = ?`;

const SELECT_JOB = `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`;

const SELECT_BY_MP3 =
  `SELECT ${JOB_COLUMNS} FROM jobs WHERE mp3_fid = ? AND owner_id = ? ` +
  "AND state IN ('converted', 'notified')";

/** States of a job still in progress. A job leaves them when it is notified or failed. */
const UNFINISHED_STATES = "'queued', 'converting', 'converted'";

/**
 * A job whose email notify gave up on stays `converted` but is not published again: its MP3 is
 * stored, and the user can see the failed email on the job.
 */
const MARK_UNFINISHED_UNPUBLISHED =
  "UPDATE jobs SET published_at = NULL, publish_lease_until = NULL " +
  `WHERE state IN (${UNFINISHED_STATES}) AND email_failed_at IS NULL`;

/** States of a job that waits for or occupies a converter. */
const ACTIVE_STATES = "'queued', 'converting'";

/** Counts the active jobs of one owner; exported for the test of its query plan. */
export const COUNT_ACTIVE_OWNED = `SELECT COUNT(*) AS active FROM jobs WHERE owner_id = ? AND state IN (${ACTIVE_STATES})`;

/**
 * States of a job that the converter is done with, because it has its MP3 or its failure. A
 * `converted` job becomes `notified` once its email is sent, but it counts as finished before,
 * so that a job whose email never goes out can still be deleted.
 */
const FINISHED_STATES = "'converted', 'notified', 'failed'";

const DELETE_FINISHED_JOB = `DELETE FROM jobs WHERE id = ? AND state IN (${FINISHED_STATES})`;

/**
 * Lists finished jobs last updated before a cutoff, oldest first; the retention sweep pages
 * through it. Exported for the test of its query plan.
 */
export const SELECT_FINISHED_BEFORE = `SELECT ${JOB_COLUMNS} FROM jobs WHERE state IN (${FINISHED_STATES}) AND updated_at < ?`;

const RECORD_EMAIL_SENT =
  "UPDATE jobs SET notified_at = ? WHERE id = ? AND state = ? AND notified_at IS NULL";

const RECORD_EMAIL_FAILED =
  "UPDATE jobs SET email_failed_at = ? WHERE id = ? AND notified_at IS NULL";

const UNPUBLISHED_CONDITION =
  "published_at IS NULL AND (publish_lease_until IS NULL OR publish_lease_until < ?)";

/** Maps the SQL driver's row to a record; MySQL and SQLite return numbers in different types. */
function toJobRecord(row: Record<string, unknown>): JobRecord {
  const failureCode = row.failure_code as string | null;
  return {
    id: String(row.id),
    ownerId: String(row.owner_id),
    ownerEmail: String(row.owner_email),
    filename: String(row.filename),
    videoFid: String(row.video_fid),
    mp3Fid: (row.mp3_fid as string | null) ?? null,
    state: row.state as JobState,
    failure:
      failureCode === null || failureCode === undefined
        ? null
        : { code: failureCode, message: String(row.failure_message ?? "") },
    durationS:
      row.duration_s === null || row.duration_s === undefined ? null : Number(row.duration_s),
    warnings: parseWarnings(row.warnings),
    requestId: String(row.request_id),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    publishedAt: row.published_at === null ? null : Number(row.published_at),
    notifiedAt:
      row.notified_at === null || row.notified_at === undefined ? null : Number(row.notified_at),
    emailFailedAt:
      row.email_failed_at === null || row.email_failed_at === undefined
        ? null
        : Number(row.email_failed_at),
  };
}

function parseWarnings(value: unknown): string[] {
  if (typeof value !== "string") return [];
  try {
    const parsed: unknown = JSON.parse(value);
    return Array.isArray(parsed) ? parsed.map(String) : [];
  } catch {
    return [];
  }
}

/** Jobs table access for the routes, the outbox and the event consumers. */
export class JobStore {
  readonly #db: SqlExecutor;

  constructor(db: SqlExecutor) {
    this.#db = db;
  }

  async insert(job: NewJob): Promise<void> {
    await this.#db.execute(INSERT_JOB, [
      job.id,
      job.ownerId,
      job.ownerEmail,
      job.filename,
      job.videoFid,
      job.requestId,
      job.createdAt,
      job.createdAt,
      job.publishLeaseUntil,
    ]);
  }

  /** Returns the job when it exists and belongs to `ownerId`, else null. */
  async findOwned(id: string, ownerId: string): Promise<JobRecord | null> {
    const rows = await this.#db.query(SELECT_OWNED_JOB, [id, ownerId]);
    return rows[0] ? toJobRecord(rows[0]) : null;
  }

  /** Returns the job with this id, whoever owns it, else null. */
  async findById(id: string): Promise<JobRecord | null> {
    const rows = await this.#db.query(SELECT_JOB, [id]);
    return rows[0] ? toJobRecord(rows[0]) : null;
  }

  /** Returns the finished job of `ownerId` whose MP3 is `mp3Fid`, else null. */
  async findByMp3(mp3Fid: string, ownerId: string): Promise<JobRecord | null> {
    const rows = await this.#db.query(SELECT_BY_MP3, [mp3Fid, ownerId]);
    return rows[0] ? toJobRecord(rows[0]) : null;
  }

  /** Counts the jobs of `ownerId` in `queued` or `converting`. */
  async countActive(ownerId: string): Promise<number> {
    const rows = await this.#db.query(COUNT_ACTIVE_OWNED, [ownerId]);
    return Number(rows[0]?.active ?? 0);
  }

  /** Lists the jobs of `ownerId`, newest first, starting after `cursor`. */
  async listOwned(ownerId: string, limit: number, cursor?: JobCursor): Promise<JobRecord[]> {
    const params: SqlValue[] = [ownerId];
    let after = "";
    if (cursor) {
      after = " AND (created_at < ? OR (created_at = ? AND id < ?))";
      params.push(cursor.createdAt, cursor.createdAt, cursor.id);
    }
    // LIMIT is inlined because MySQL prepared statements reject some placeholder types there;
    // `limit` is a checked integer.
    const sql =
      `SELECT ${JOB_COLUMNS} FROM jobs WHERE owner_id = ?${after} ` +
      `ORDER BY created_at DESC, id DESC LIMIT ${Math.trunc(limit)}`;
    const rows = await this.#db.query(sql, params);
    return rows.map(toJobRecord);
  }

  /** Applies a state change if it moves the job forward; returns whether a row changed. */
  async applyUpdate(id: string, update: JobUpdate): Promise<boolean> {
    const earlier = EARLIER_STATES[update.state];
    const placeholders = earlier.map(() => "?").join(", ");
    const sql =
      "UPDATE jobs SET state = ?, mp3_fid = COALESCE(?, mp3_fid), " +
      "duration_s = COALESCE(?, duration_s), warnings = COALESCE(?, warnings), " +
      "failure_code = COALESCE(?, failure_code), failure_message = COALESCE(?, failure_message), " +
      `updated_at = ? WHERE id = ? AND state IN (${placeholders})`;
    const result = await this.#db.execute(sql, [
      update.state,
      update.mp3Fid ?? null,
      update.durationS ?? null,
      update.warnings === undefined ? null : JSON.stringify(update.warnings),
      update.failure?.code ?? null,
      update.failure?.message ?? null,
      update.at,
      id,
      ...earlier,
    ]);
    return result.affectedRows > 0;
  }

  /**
   * Records that notify gave up emailing the user about job `id`, unless an email was recorded
   * already. Returns whether the row changed.
   */
  async recordEmailFailed(id: string, at: number): Promise<boolean> {
    const result = await this.#db.execute(RECORD_EMAIL_FAILED, [at, id]);
    return result.affectedRows > 0;
  }

  /**
   * Records that the user was emailed about the job, if the job is in `state` and no email was
   * recorded before. Returns whether a row changed, so a repeated event changes nothing.
   */
  async recordEmailSent(id: string, state: "notified" | "failed", at: number): Promise<boolean> {
    const result = await this.#db.execute(RECORD_EMAIL_SENT, [at, id, state]);
    return result.affectedRows > 0;
  }

  /**
   * Lists `failed` jobs with no recorded email, oldest first, starting after `cursor`. These are
   * the jobs whose failure email may have been lost in a restart. Left out are a `video_missing`
   * job, which the converter fails without an email on purpose because its video is most often
   * gone with a deleted job, and a job whose email notify gave up on.
   */
  async listFailedWithoutEmail(limit: number, cursor?: JobCursor): Promise<JobRecord[]> {
    const params: SqlValue[] = [];
    let after = "";
    if (cursor) {
      after = " AND (created_at > ? OR (created_at = ? AND id > ?))";
      params.push(cursor.createdAt, cursor.createdAt, cursor.id);
    }
    const sql =
      `SELECT ${JOB_COLUMNS} FROM jobs WHERE state = 'failed' AND notified_at IS NULL ` +
      "AND email_failed_at IS NULL " +
      `AND (failure_code IS NULL OR failure_code <> 'video_missing')${after} ` +
      `ORDER BY created_at, id LIMIT ${Math.trunc(limit)}`;
    const rows = await this.#db.query(sql, params);
    return rows.map(toJobRecord);
  }

  /**
   * Lists `converted`, `notified` and `failed` jobs whose `updated_at` is before `cutoff`, oldest first,
   * starting after `cursor`.
   */
  async listFinishedBefore(
    cutoff: number,
    limit: number,
    cursor?: JobUpdateCursor,
  ): Promise<JobRecord[]> {
    const params: SqlValue[] = [cutoff];
    let after = "";
    if (cursor) {
      after = " AND (updated_at > ? OR (updated_at = ? AND id > ?))";
      params.push(cursor.updatedAt, cursor.updatedAt, cursor.id);
    }
    const sql =
      `${SELECT_FINISHED_BEFORE}${after} ` + `ORDER BY updated_at, id LIMIT ${Math.trunc(limit)}`;
    const rows = await this.#db.query(sql, params);
    return rows.map(toJobRecord);
  }

  /**
   * Deletes the row of a `converted`, `notified` or `failed` job. Returns false when no such row exists, for
   * example because another request or replica deleted it first, or the job is still active.
   */
  async deleteFinished(id: string): Promise<boolean> {
    const result = await this.#db.execute(DELETE_FINISHED_JOB, [id]);
    return result.affectedRows > 0;
  }

  /** Lists unpublished jobs whose lease is free, oldest first. */
  async listUnpublished(now: number, limit: number): Promise<JobRecord[]> {
    const sql =
      `SELECT ${JOB_COLUMNS} FROM jobs WHERE ${UNPUBLISHED_CONDITION} ` +
      `ORDER BY created_at, id LIMIT ${Math.trunc(limit)}`;
    const rows = await this.#db.query(sql, [now]);
    return rows.map(toJobRecord);
  }

  /** Takes the publish lease of an unpublished job; false when another replica holds it. */
  async claimForPublish(id: string, now: number, leaseUntil: number): Promise<boolean> {
    const sql = `UPDATE jobs SET publish_lease_until = ? WHERE id = ? AND ${UNPUBLISHED_CONDITION}`;
    const result = await this.#db.execute(sql, [leaseUntil, id, now]);
    return result.affectedRows > 0;
  }

  async markPublished(id: string, at: number): Promise<void> {
    await this.#db.execute(
      "UPDATE jobs SET published_at = ?, publish_lease_until = NULL WHERE id = ?",
      [at, id],
    );
  }

  /**
   * Marks every job in `queued`, `converting` or `converted` unpublished and frees its lease, so
   * the outbox publishes its VideoMessage again. Returns how many jobs it marked.
   */
  async markUnfinishedUnpublished(): Promise<number> {
    const result = await this.#db.execute(MARK_UNFINISHED_UNPUBLISHED);
    return result.affectedRows;
  }

  /** Gives up the publish lease after a failed publish, so the next outbox run retries. */
  async releaseClaim(id: string): Promise<void> {
    await this.#db.execute(
      "UPDATE jobs SET publish_lease_until = NULL WHERE id = ? AND published_at IS NULL",
      [id],
    );
  }
}
