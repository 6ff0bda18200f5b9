import { type Env, loadConfig } from "@mp3converter/lib/config";
import { LOG_LEVELS } from "@mp3converter/lib/log";
import { DEFAULT_QUEUES } from "@mp3converter/lib/messages";

/** Settings of the gateway, read once at start-up from the environment. */
export interface GatewayConfig {
  port: number;
  host: string;
  logLevel: (typeof LOG_LEVELS)[number];
  databaseUrl: string;
  storageUrl: string;
  brokerUrl: string;
  /** Base URL of the auth service, without a trailing slash. */
  authUrl: string;
  /** Base URL of links in responses, such as `status_url`, without a trailing slash. */
  publicUrl: string;
  jwtIssuer: string;
  jwtAudience: string;
  /** Maximum size of an uploaded video file, not counting the multipart framing. */
  uploadMaxBytes: number;
  /** Maximum number of queued or converting jobs per user before an upload gets 429. 0 turns the limit off. */
  maxActiveJobsPerUser: number;
  /**
   * Days a `converted`, `notified` or `failed` job is kept after its last update before the sweep
   * of retention deletes it with its video and MP3. 0 keeps jobs forever.
   */
  jobRetentionDays: number;
  videoQueue: string;
  jobEventsQueue: string;
  /** Queue of notify, which gets the failure of a job whose video message was dead-lettered. */
  mp3Queue: string;
  /** Time between two runs of the loop that republishes unpublished jobs. */
  outboxIntervalSeconds: number;
  /** Whether to take the client address from the last `X-Forwarded-For` entry. */
  trustProxy: boolean;
}

/** Reads the gateway settings; throws `ConfigError` naming every missing or invalid variable. */
export function readGatewayConfig(env: Env): Readonly<GatewayConfig> {
  return loadConfig(
    (read) => ({
      port: read.int("PORT", { default: 8080, min: 0, max: 65535 }),
      host: read.string("HOST", { default: "0.0.0.0" }),
      logLevel: read.oneOf("LOG_LEVEL", LOG_LEVELS, { default: "info" }),
      databaseUrl: read.url("DATABASE_URL", ["mysql", "sqlite"]),
      storageUrl: read.url("STORAGE_URL", ["mongodb", "mongodb+srv", "file"]),
      brokerUrl: read.url("BROKER_URL", ["amqp", "amqps", "memory"]),
      authUrl: stripTrailingSlash(read.url("AUTH_URL", ["http", "https"])),
      publicUrl: stripTrailingSlash(
        read.url("PUBLIC_URL", ["http", "https"], { default: "http://localhost:8080" }),
      ),
      jwtIssuer: read.string("JWT_ISSUER", { default: "mp3converter-auth" }),
      jwtAudience: read.string("JWT_AUDIENCE", { default: "mp3converter" }),
      uploadMaxBytes: read.int("UPLOAD_MAX_BYTES", { default: 524_288_000, min: 1 }),
      maxActiveJobsPerUser: read.int("MAX_ACTIVE_JOBS_PER_USER", {
        default: 10,
        min: 0,
        max: 1_000_000,
      }),
      jobRetentionDays: read.int("JOB_RETENTION_DAYS", { default: 0, min: 0, max: 36_500 }),
      videoQueue: read.string("VIDEO_QUEUE", { default: DEFAULT_QUEUES.video }),
      jobEventsQueue: read.string("JOB_EVENTS_QUEUE", { default: DEFAULT_QUEUES.jobEvents }),
      mp3Queue: read.string("MP3_QUEUE", { default: DEFAULT_QUEUES.mp3 }),
      outboxIntervalSeconds: read.int("OUTBOX_INTERVAL_SECONDS", { default: 5, min: 1, max: 3600 }),
      trustProxy: read.bool("TRUST_PROXY", { default: false }),
    }),
    env,
  );
}

function stripTrailingSlash(url: string | undefined): string {
  return (url ?? "").replace(/\/+$/, "");
}
