import { readFileSync } from "node:fs";
import { type Env, type EnvReader, loadConfig } from "@mp3converter/lib/config";
import { LOG_LEVELS } from "@mp3converter/lib/log";
import { DEFAULT_QUEUES } from "@mp3converter/lib/messages";

/** Settings of the notify service, read once at start-up. */
export interface NotifyConfig {
  logLevel: string;
  brokerUrl: string;
  /** `smtp://user:pass@host:587` (STARTTLS), `smtps://…:465` (implicit TLS) or `file:DIR`. */
  mailUrl: string;
  /** `From` header of every email, for example `mp3converter <no-reply@example.com>`. */
  mailFrom: string;
  /** Base URL of the gateway for links in emails, without a trailing slash. */
  publicUrl: string;
  mp3Queue: string;
  jobEventsQueue: string;
  /** Port of `/healthz` and `/readyz`, where 0 picks a free port. */
  healthPort: number;
  /** Address the health server binds; all interfaces by default, because the kubelet probes it. */
  healthHost: string;
  /** Maximum number of emails in flight at once. */
  prefetch: number;
  /**
   * Time in seconds for which the handler retries a failed send before it hands the message back
   * to the broker. With 0 it sends once per delivery.
   */
  mailRetrySeconds: number;
  /** PEM certificates from `MAIL_TLS_CA_FILE`, trusted for the SMTP server's certificate. */
  mailTlsCa: string | undefined;
}

const MAX_PREFETCH = 1000;

/**
 * Upper bound of MAIL_RETRY_SECONDS. RabbitMQ closes the channel of a delivery that stays
 * unacknowledged longer than its consumer timeout, 30 minutes by default in 3.10. The retries
 * and a last send of up to about a minute must end well before that.
 */
const MAX_MAIL_RETRY_SECONDS = 1500;

/** Reads the notify settings and throws `ConfigError` naming every missing or invalid variable. */
export function readNotifyConfig(env: Env): Readonly<NotifyConfig> {
  return loadConfig(describeNotifyConfig, env);
}

function describeNotifyConfig(env: EnvReader): NotifyConfig {
  return {
    logLevel: env.oneOf("LOG_LEVEL", LOG_LEVELS, { default: "info" }),
    brokerUrl: env.url("BROKER_URL", ["amqp", "amqps", "memory"]),
    mailUrl: env.url("MAIL_URL", ["smtp", "smtps", "file"]),
    mailFrom: readMailFrom(env),
    publicUrl: readPublicUrl(env),
    mp3Queue: env.string("MP3_QUEUE", { default: DEFAULT_QUEUES.mp3 }),
    jobEventsQueue: env.string("JOB_EVENTS_QUEUE", { default: DEFAULT_QUEUES.jobEvents }),
    healthPort: env.int("HEALTH_PORT", { default: 8082, min: 0, max: 65535 }),
    healthHost: env.string("HEALTH_HOST", { default: "0.0.0.0" }),
    prefetch: env.int("NOTIFY_PREFETCH", { default: 4, min: 1, max: MAX_PREFETCH }),
    mailRetrySeconds: env.int("MAIL_RETRY_SECONDS", {
      default: 600,
      min: 0,
      max: MAX_MAIL_RETRY_SECONDS,
    }),
    mailTlsCa: readCaFile(env),
  };
}

function readMailFrom(env: EnvReader): string {
  const from = env.string("MAIL_FROM", { default: "mp3converter <no-reply@mp3converter.local>" });
  // The value becomes a header line, so a line break in it would inject headers.
  if (/[\r\n]/.test(from) || !from.includes("@")) {
    env.addProblem(
      "MAIL_FROM is invalid; expected one address on one line, for example " +
        "MAIL_FROM=mp3converter <no-reply@example.com>",
    );
  }
  return from;
}

function readPublicUrl(env: EnvReader): string {
  const raw = env.url("PUBLIC_URL", ["http", "https"]);
  try {
    const url = new URL(raw);
    if (url.search || url.hash || url.username || url.password) {
      env.addProblem(
        "PUBLIC_URL is invalid; expected a base URL without credentials, query or fragment, " +
          "for example PUBLIC_URL=https://mp3.example.com",
      );
    }
    return url.href.replace(/\/+$/, "");
  } catch {
    // env.url has recorded the problem already.
    return raw;
  }
}

function readCaFile(env: EnvReader): string | undefined {
  const path = env.optionalString("MAIL_TLS_CA_FILE");
  if (path === undefined) return undefined;
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    env.addProblem(`MAIL_TLS_CA_FILE=${path} cannot be read (${reason}); set it to a PEM file`);
    return undefined;
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    env.addProblem(`MAIL_TLS_CA_FILE=${path} contains no PEM certificate; set it to a PEM file`);
    return undefined;
  }
  return pem;
}
