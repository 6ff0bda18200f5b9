/**
 * Schemas of the queue messages. Every consumer validates a message with `decodeMessage` before
 * acting on it; a message that fails is dead-lettered, never retried.
 */
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

/** Default queue names; each service reads its own from `*_QUEUE` variables. */
export const DEFAULT_QUEUES = {
  video: "video",
  mp3: "mp3",
  jobEvents: "job-events",
} as const;

const Id = Type.String({ minLength: 1, maxLength: 128, pattern: "^[A-Za-z0-9._-]+$" });

/** Failure reason of a job, in a stable code and a sentence for people. */
export const FailureSchema = Type.Object({
  code: Type.String({ minLength: 1, maxLength: 64 }),
  message: Type.String({ minLength: 1, maxLength: 1000 }),
});
export type Failure = Static<typeof FailureSchema>;

/** Published by the gateway to the `video` queue for each accepted upload. */
export const VideoMessageSchema = Type.Object({
  job_id: Id,
  video_fid: Id,
  mp3_fid: Type.Null(),
  username: Type.String({ minLength: 3, maxLength: 254 }),
  /** Name of the uploaded file as the user sent it, for the email and the download name. */
  filename: Type.String({ maxLength: 1024 }),
  request_id: Type.String({ maxLength: 128 }),
});
export type VideoMessage = Static<typeof VideoMessageSchema>;

/** Published by the converter to the `mp3` queue once a job has an MP3, or has failed. */
export const Mp3MessageSchema = Type.Object({
  job_id: Id,
  video_fid: Id,
  mp3_fid: Type.Union([Id, Type.Null()]),
  username: Type.String({ minLength: 3, maxLength: 254 }),
  filename: Type.String({ maxLength: 1024 }),
  request_id: Type.String({ maxLength: 128 }),
  /** Set when the conversion failed; `mp3_fid` is null then. */
  failure: Type.Optional(FailureSchema),
});
export type Mp3Message = Static<typeof Mp3MessageSchema>;

export const JOB_STATES = ["queued", "converting", "converted", "notified", "failed"] as const;
export type JobState = (typeof JOB_STATES)[number];

/** Published by the workers to the `job-events` queue; the gateway applies it to the job. */
export const JobEventSchema = Type.Object({
  job_id: Id,
  state: Type.Union([
    Type.Literal("converting"),
    Type.Literal("converted"),
    Type.Literal("notified"),
    Type.Literal("failed"),
  ]),
  mp3_fid: Type.Optional(Id),
  failure: Type.Optional(FailureSchema),
  /** Duration of the MP3 in seconds, measured on the output. */
  duration_s: Type.Optional(Type.Number({ minimum: 0 })),
  /** Warnings a person should see, such as "the input ended early". */
  warnings: Type.Optional(Type.Array(Type.String({ maxLength: 1000 }), { maxItems: 10 })),
  /**
   * Set by notify on the `failed` event it publishes once it has emailed the user about a failed
   * job. The gateway records the email, so the recovery at start-up does not send it again.
   */
  email_sent: Type.Optional(Type.Boolean()),
  /** When the worker observed the change, in milliseconds since the epoch. */
  at: Type.Integer({ minimum: 0 }),
  request_id: Type.String({ maxLength: 128 }),
});
export type JobEvent = Static<typeof JobEventSchema>;

/** Raised by `decodeMessage` for a body that is not JSON or does not match the schema. */
export class InvalidMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidMessageError";
  }
}

/** Parses and validates a queue message body; extra properties are dropped. */
export function decodeMessage<S extends TSchema>(schema: S, body: Uint8Array): Static<S> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new InvalidMessageError("message body is not valid JSON");
  }
  const cleaned = Value.Clean(schema, Value.Clone(value));
  const firstError = Value.Errors(schema, cleaned).First();
  if (firstError) {
    throw new InvalidMessageError(`message field ${firstError.path || "/"}: ${firstError.message}`);
  }
  return cleaned as Static<S>;
}

/** Serializes a message for `Broker.publish`, which takes a Buffer. */
export function encodeMessage(message: object): Buffer {
  return Buffer.from(JSON.stringify(message));
}
