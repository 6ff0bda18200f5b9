import pino, { type Logger } from "pino";

export type { Logger };

/**
 * Field paths whose values are replaced before a line is written. Adapters and services never
 * log these on purpose; this is the second line of defence.
 */
const REDACTED_PATHS = [
  "password",
  "*.password",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  "secret",
  "*.secret",
  "key",
  "*.privateKey",
];

/** The pino levels a `LOG_LEVEL` setting may name, from the most to the least verbose. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

export interface LoggerOptions {
  service: string;
  level?: string;
  /** Where lines go; stdout when absent. Tests pass a stream to read what was logged. */
  destination?: pino.DestinationStream;
}

/** Creates the JSON-lines logger of a service: one object per line with time, level and `msg`. */
export function createLogger(options: LoggerOptions): Logger {
  const pinoOptions: pino.LoggerOptions = {
    level: options.level ?? "info",
    base: { service: options.service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    // pino's default `err` serializer names every plain object "Object", which would overwrite
    // the `type` that errorFields records, so only Error instances are serialized here.
    serializers: { err: (value: unknown) => (value instanceof Error ? errorFields(value) : value) },
  };
  return options.destination ? pino(pinoOptions, options.destination) : pino(pinoOptions);
}

/** Masks an email address for logs: `alice@example.com` becomes `a***@example.com`. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf("@");
  if (at <= 0) return "***";
  return `${email[0]}***${email.slice(at)}`;
}

/** Extracts the fields of an error worth logging, keeping library protocol fields. */
export function errorFields(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const fields: Record<string, unknown> = { type: error.name, message: error.message };
  const record = error as unknown as Record<string, unknown>;
  for (const name of ["code", "errno", "responseCode", "command", "replyCode", "sqlState"]) {
    if (record[name] !== undefined) fields[name] = record[name];
  }
  if (error.stack) fields.stack = error.stack;
  return fields;
}
