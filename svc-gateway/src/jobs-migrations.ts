import type { Migration, SqlDialect } from "@mp3converter/lib/ports/sql";

/**
 * Jobs table. Times are milliseconds since the epoch. `published_at` stays NULL until the broker
 * confirmed the VideoMessage, and `publish_lease_until` marks a row one replica is publishing, so
 * the outbox of another replica skips it until the lease expires.
 */
const CREATE_JOBS = `CREATE TABLE jobs (
  id VARCHAR(36) NOT NULL PRIMARY KEY,
  owner_id VARCHAR(128) NOT NULL,
  owner_email VARCHAR(254) NOT NULL,
  filename VARCHAR(255) NOT NULL,
  video_fid VARCHAR(128) NOT NULL,
  mp3_fid VARCHAR(128) NULL,
  state VARCHAR(16) NOT NULL,
  failure_code VARCHAR(64) NULL,
  failure_message TEXT NULL,
  duration_s DOUBLE NULL,
  warnings TEXT NULL,
  request_id VARCHAR(128) NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  published_at BIGINT NULL,
  publish_lease_until BIGINT NULL
)`;

/** MySQL's default character set may be latin1, which cannot store every filename. */
const MYSQL_TABLE_OPTIONS = " DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";

const CREATE_INDEXES = [
  // GET /jobs: the caller's jobs, newest first, paged by (created_at, id).
  "CREATE INDEX jobs_owner_created ON jobs (owner_id, created_at, id)",
  // GET /download: the job that produced an MP3.
  "CREATE INDEX jobs_mp3_fid ON jobs (mp3_fid)",
  // Outbox: unpublished jobs, oldest first.
  "CREATE INDEX jobs_unpublished ON jobs (published_at, created_at)",
];

function createJobsStatements(dialect: SqlDialect): string[] {
  const table = dialect === "mysql" ? CREATE_JOBS + MYSQL_TABLE_OPTIONS : CREATE_JOBS;
  return [table, ...CREATE_INDEXES];
}

/**
 * `notified_at`: when the gateway learned that the user was emailed about the job's outcome. A
 * `failed` job keeps its state after the email, so only this column shows whether the email went
 * out. Jobs that were already finished before this migration count as emailed, so the recovery
 * at start-up does not email their users a second time.
 */
const ADD_NOTIFIED_AT = [
  "ALTER TABLE jobs ADD COLUMN notified_at BIGINT NULL",
  "UPDATE jobs SET notified_at = updated_at WHERE state IN ('notified', 'failed')",
];

/**
 * Index of the active-job count that every upload runs. With it the count reads only the
 * owner's active rows from the index, however many finished jobs the owner has.
 */
const ADD_OWNER_STATE_INDEX = ["CREATE INDEX jobs_owner_state ON jobs (owner_id, state)"];

/**
 * Index of the retention sweep, which pages through finished jobs by `updated_at`. Without it
 * every sweep reads the whole table.
 */
const ADD_STATE_UPDATED_INDEX = ["CREATE INDEX jobs_state_updated ON jobs (state, updated_at, id)"];

/** When notify gave up emailing the user about the job, else null. */
const ADD_EMAIL_FAILED_AT = ["ALTER TABLE jobs ADD COLUMN email_failed_at BIGINT NULL"];

/** Schema migrations of the gateway, applied in order at start-up. */
export const GATEWAY_MIGRATIONS: readonly Migration[] = [
  {
    id: "gateway-001-create-jobs",
    statements: {
      sqlite: createJobsStatements("sqlite"),
      mysql: createJobsStatements("mysql"),
    },
  },
  {
    id: "gateway-002-add-notified-at",
    statements: {
      sqlite: ADD_NOTIFIED_AT,
      mysql: ADD_NOTIFIED_AT,
    },
  },
  {
    id: "gateway-003-index-owner-state",
    statements: {
      sqlite: ADD_OWNER_STATE_INDEX,
      mysql: ADD_OWNER_STATE_INDEX,
    },
  },
  {
    id: "gateway-004-index-state-updated",
    statements: {
      sqlite: ADD_STATE_UPDATED_INDEX,
      mysql: ADD_STATE_UPDATED_INDEX,
    },
  },
  {
    id: "gateway-005-add-email-failed-at",
    statements: {
      sqlite: ADD_EMAIL_FAILED_AT,
      mysql: ADD_EMAIL_FAILED_AT,
    },
  },
];
