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

/** Schema migrations of the gateway, applied in order at start-up. */
export const GATEWAY_MIGRATIONS: readonly Migration[] = [
  {
    id: "gateway-001-create-jobs",
    statements: {
      sqlite: createJobsStatements("sqlite"),
      mysql: createJobsStatements("mysql"),
    },
  },
];
