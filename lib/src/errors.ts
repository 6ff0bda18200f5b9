/**
 * Error codes shared by every service, with the HTTP status each one maps to. Clients see the
 * code in every error body, so a code, once published, keeps its meaning.
 */
export const ERROR_STATUS = {
  invalid_argument: 400,
  unauthenticated: 401,
  /** A malformed `Authorization` header; 401 so that every token problem has one status. */
  invalid_request: 401,
  invalid_token: 401,
  permission_denied: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  /** A request that needs a finished job, such as a delete, on a job still in progress. */
  job_in_progress: 409,
  /** An `If-Match` or `If-Unmodified-Since` header that the current representation fails. */
  precondition_failed: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  too_many_requests: 429,
  /** An upload by a user who has the maximum number of unfinished jobs. */
  too_many_active_jobs: 429,
  internal: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** JSON body of every error response. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
  request_id?: string;
}

export interface AppErrorOptions {
  details?: unknown;
  headers?: Record<string, string>;
  cause?: unknown;
}

/**
 * An error meant for the client: its code picks the status and its message is shown as is, so the
 * message must say what to do next and must never contain a secret or a driver's message.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

/** Message of every 5xx body: causes go to the logs, never to the client. */
export const INTERNAL_MESSAGE = "The server failed to handle the request. Try again later.";

/** Builds the JSON error body for any thrown value; unknown errors become a generic 500. */
export function toErrorBody(
  error: unknown,
  requestId?: string,
): { status: number; body: ErrorBody } {
  if (error instanceof AppError) {
    const body: ErrorBody = { code: error.code, message: error.message };
    if (error.details !== undefined) body.details = error.details;
    if (requestId) body.request_id = requestId;
    return { status: error.status, body };
  }
  const body: ErrorBody = { code: "internal", message: INTERNAL_MESSAGE };
  if (requestId) body.request_id = requestId;
  return { status: 500, body };
}

/** Builds a JSON error `Response`, with the headers an `AppError` carries. */
export function toErrorResponse(error: unknown, requestId?: string): Response {
  const { status, body } = toErrorBody(error, requestId);
  const headers = new Headers({ "content-type": "application/json; charset=utf-8" });
  if (error instanceof AppError) {
    for (const [name, value] of Object.entries(error.headers)) headers.set(name, value);
  }
  if (requestId) headers.set("x-request-id", requestId);
  return new Response(JSON.stringify(body), { status, headers });
}
