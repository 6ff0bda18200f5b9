/**
 * The Elysia base every HTTP service builds on: a request id per request (accepted from
 * `X-Request-Id` or made), a child logger carrying it, one JSON error shape, and an access log
 * line per response.
 */
import { Elysia } from "elysia";
import { AppError, toErrorResponse } from "./errors.ts";
import { errorFields, type Logger } from "./log.ts";
import { acceptRequestId, REQUEST_ID_HEADER } from "./request-id.ts";

const requestStarts = new WeakMap<Request, number>();

/** Creates an Elysia app with request ids, per-request loggers and JSON errors. */
export function createHttpApp(name: string, logger: Logger) {
  return new Elysia({ name })
    .derive({ as: "global" }, ({ request, set }) => {
      requestStarts.set(request, performance.now());
      const requestId = acceptRequestId(request.headers.get(REQUEST_ID_HEADER));
      set.headers[REQUEST_ID_HEADER] = requestId;
      return { requestId, log: logger.child({ request_id: requestId }) };
    })
    .onError({ as: "global" }, ({ error, code, request, set }) => {
      const requestId =
        (set.headers[REQUEST_ID_HEADER] as string | undefined) ??
        acceptRequestId(request.headers.get(REQUEST_ID_HEADER));
      const log = logger.child({ request_id: requestId });
      if (error instanceof AppError) return toErrorResponse(error, requestId);
      if (code === "NOT_FOUND") {
        return toErrorResponse(
          new AppError("not_found", "No such route. See the README for the API."),
          requestId,
        );
      }
      if (code === "PARSE" || code === "VALIDATION" || code === "INVALID_COOKIE_SIGNATURE") {
        return toErrorResponse(
          new AppError("invalid_argument", "The request body is invalid.", {
            details: code === "VALIDATION" ? validationDetails(error) : undefined,
          }),
          requestId,
        );
      }
      log.error({ err: errorFields(error), path: new URL(request.url).pathname }, "request failed");
      return toErrorResponse(error, requestId);
    })
    .onAfterResponse({ as: "global" }, ({ request, set, responseValue }) => {
      const started = requestStarts.get(request);
      logger.info(
        {
          request_id: set.headers[REQUEST_ID_HEADER],
          method: request.method,
          path: new URL(request.url).pathname,
          "http.status": responseStatus(responseValue, set.status),
          duration_ms: started === undefined ? undefined : Math.round(performance.now() - started),
        },
        "request completed",
      );
    });
}

/**
 * Returns the status sent to the client. A handler that returns a `Response` sets its status
 * there, and `set.status` keeps its default of 200.
 */
function responseStatus(responseValue: unknown, setStatus: unknown): number | undefined {
  if (responseValue instanceof Response) return responseValue.status;
  return typeof setStatus === "number" ? setStatus : undefined;
}

function validationDetails(error: unknown): unknown {
  const all = (error as { all?: Array<{ path?: string; summary?: string; message?: string }> }).all;
  if (!Array.isArray(all)) return undefined;
  return all.slice(0, 10).map((e) => ({ path: e.path, message: e.summary ?? e.message }));
}
