/**
 * The Elysia base every HTTP service builds on: a request id per request (accepted from
 * `X-Request-Id` or made), a child logger carrying it, one JSON error shape, 405 with `Allow` for
 * a known path requested with the wrong method, and an access log line per response.
 */
import { Elysia } from "elysia";
import { AppError, toErrorResponse } from "./errors.ts";
import { errorFields, type Logger } from "./log.ts";
import { acceptRequestId, REQUEST_ID_HEADER } from "./request-id.ts";

const requestStarts = new WeakMap<Request, number>();

/**
 * Returns the path of `request`. `serve` passes on only requests with a valid URL, but a hook
 * that threw here would crash the process, so an invalid URL gives a placeholder.
 */
function requestPath(request: Request): string {
  try {
    return new URL(request.url).pathname;
  } catch {
    return "(invalid URL)";
  }
}

/** Paths of the liveness and readiness probes. */
const PROBE_PATHS = new Set(["/healthz", "/readyz"]);

/** Creates an Elysia app with request ids, per-request loggers and JSON errors. */
export function createHttpApp(name: string, logger: Logger) {
  // Routes added to the returned app, directly or through `use`, land in this instance.
  const app = new Elysia({ name });
  return app
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
        const response = routeMissResponse(app.routes, request, requestId);
        // No route means no derive, and Elysia passes neither this Response nor its status to
        // onAfterResponse. Without these lines the access log would lack the id and show 200.
        set.headers[REQUEST_ID_HEADER] = requestId;
        set.status = response.status;
        return response;
      }
      if (code === "PARSE" || code === "VALIDATION" || code === "INVALID_COOKIE_SIGNATURE") {
        return toErrorResponse(
          new AppError("invalid_argument", "The request body is invalid.", {
            details: code === "VALIDATION" ? validationDetails(error) : undefined,
          }),
          requestId,
        );
      }
      log.error({ err: errorFields(error), path: requestPath(request) }, "request failed");
      return toErrorResponse(error, requestId);
    })
    .onAfterResponse({ as: "global" }, ({ request, set, responseValue }) => {
      const started = requestStarts.get(request);
      const path = requestPath(request);
      const status = responseStatus(responseValue, set.status);
      // Probes hit the health routes every few seconds, so their successes log at debug level.
      const level =
        PROBE_PATHS.has(path) && status !== undefined && status < 400 ? "debug" : "info";
      logger[level](
        {
          request_id: set.headers[REQUEST_ID_HEADER],
          method: request.method,
          path,
          "http.status": status,
          duration_ms: started === undefined ? undefined : Math.round(performance.now() - started),
        },
        "request completed",
      );
    });
}

/**
 * Builds the response to a request that no route handles. A path that some route serves with
 * other methods gets 405 with `Allow` (RFC 9110, section 15.5.6). Any other path gets 404.
 *
 * OPTIONS on such a path gets 204 with `Allow`, as RFC 9110 (section 9.3.7) describes, so a
 * client can discover the methods without trying them. The response carries no CORS headers, so
 * a browser's cross-origin preflight still fails, as it did before.
 */
function routeMissResponse(
  routes: readonly RouteEntry[],
  request: Request,
  requestId: string,
): Response {
  const allowed = allowedMethods(routes, requestPath(request));
  if (allowed.length === 0) {
    return toErrorResponse(
      new AppError("not_found", "No such route. See the README for the API."),
      requestId,
    );
  }
  const allow = allowed.join(", ");
  if (request.method === "OPTIONS") {
    return new Response(null, { status: 204, headers: { allow, [REQUEST_ID_HEADER]: requestId } });
  }
  const error = new AppError(
    "method_not_allowed",
    `The method ${request.method} is not allowed on this path. Use one of ${allow}.`,
    { headers: { allow }, details: { allowed_methods: allowed } },
  );
  return toErrorResponse(error, requestId);
}

/** Method and path of a route, as `app.routes` lists them. */
interface RouteEntry {
  method: string;
  path: string;
}

/** Methods in the order an `Allow` header lists them. Other methods follow alphabetically. */
const METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/**
 * Returns the methods that some route serves on `pathname`, or none when no route matches it.
 * HEAD comes with GET because Elysia serves HEAD with the GET route, and OPTIONS comes with any
 * route because `routeMissResponse` responds to it.
 */
function allowedMethods(routes: readonly RouteEntry[], pathname: string): string[] {
  const methods = new Set<string>();
  for (const route of routes) {
    if (routePattern(route.path).test(pathname)) methods.add(route.method.toUpperCase());
  }
  if (methods.size === 0) return [];
  if (methods.has("GET")) methods.add("HEAD");
  methods.add("OPTIONS");
  return [...methods].sort(compareMethods);
}

function compareMethods(a: string, b: string): number {
  const rankA = METHOD_ORDER.indexOf(a);
  const rankB = METHOD_ORDER.indexOf(b);
  if (rankA >= 0 && rankB >= 0) return rankA - rankB;
  if (rankA >= 0 || rankB >= 0) return rankA >= 0 ? -1 : 1;
  return a < b ? -1 : 1;
}

const routePatterns = new Map<string, RegExp>();

/**
 * Compiles an Elysia route path into a pattern on request paths: `:name` matches one segment,
 * `:name?` an optional one, and `*` the rest of the path. A trailing slash is optional, as with
 * Elysia's default `strictPath: false`.
 */
function routePattern(path: string): RegExp {
  let pattern = routePatterns.get(path);
  if (pattern) return pattern;
  let source = "";
  for (const segment of path.split("/").slice(1)) {
    if (segment === "*") source += "/.*";
    else if (segment.startsWith(":") && segment.endsWith("?")) source += "(?:/[^/]+)?";
    else if (segment.startsWith(":")) source += "/[^/]+";
    else source += `/${segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`;
  }
  pattern = new RegExp(`^${source}/?$`);
  routePatterns.set(path, pattern);
  return pattern;
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
