/**
 * Forwards `POST /login` and `POST /signup` to the auth service and relays its response, so that
 * clients only ever talk to the gateway. Auth sees the request id and the client address.
 */
import { AppError } from "@mp3converter/lib/errors";
import type { Logger } from "@mp3converter/lib/log";
import { errorFields } from "@mp3converter/lib/log";
import { REQUEST_ID_HEADER } from "@mp3converter/lib/request-id";
import { clientAddressOf } from "@mp3converter/lib/runtime";

/** Maximum size of a forwarded request body, such as the signup JSON. */
export const AUTH_FORWARD_MAX_BODY_BYTES = 16 * 1024;

/** Maximum size of an auth response the gateway relays. */
const AUTH_RESPONSE_MAX_BYTES = 64 * 1024;

/** Time auth has to respond to one forwarded request. */
export const AUTH_TIMEOUT_MS = 10_000;

/** Request headers that are copied to auth when present. */
const FORWARDED_REQUEST_HEADERS = ["authorization", "accept", "content-type"] as const;

/** Auth response headers that are relayed to the client when present. */
const RELAYED_RESPONSE_HEADERS = ["content-type", "retry-after", "www-authenticate"] as const;

export interface AuthProxyOptions {
  authUrl: string;
  trustProxy: boolean;
  logger: Logger;
  /** Per-request timeout; `AUTH_TIMEOUT_MS` when absent. */
  timeoutMs?: number;
}

/**
 * Returns the client address to forward: the network peer, or with `trustProxy` the last
 * `X-Forwarded-For` entry, which the trusted proxy in front of the gateway appended.
 */
export function clientAddress(request: Request, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const entries = (request.headers.get("x-forwarded-for") ?? "").split(",");
    const last = entries[entries.length - 1]?.trim();
    if (last) return last;
  }
  return clientAddressOf(request);
}

/** Reads a whole stream, throwing `tooLarge()` as soon as it passes `maxBytes`. */
async function readLimited(
  stream: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  tooLarge: () => Error,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  if (!stream) return new Uint8Array(0);
  const reader = stream.getReader();
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(chunks);
}

async function readForwardedBody(request: Request): Promise<Uint8Array<ArrayBuffer> | null> {
  const max = AUTH_FORWARD_MAX_BODY_BYTES;
  if (Number(request.headers.get("content-length") ?? "0") > max) throw bodyTooLarge(max);
  const body = await readLimited(request.body, max, () => bodyTooLarge(max));
  return body.byteLength === 0 ? null : body;
}

function bodyTooLarge(maxBytes: number): AppError {
  return new AppError(
    "payload_too_large",
    `The request body is larger than ${maxBytes} bytes. Send a smaller JSON body.`,
  );
}

function authUnavailable(): AppError {
  return new AppError("unavailable", "The sign-in service is unavailable. Try again later.", {
    headers: { "retry-after": "5" },
  });
}

function forwardedHeaders(request: Request, requestId: string, trustProxy: boolean): Headers {
  const headers = new Headers({ [REQUEST_ID_HEADER]: requestId });
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  const address = clientAddress(request, trustProxy);
  if (address) headers.set("x-forwarded-for", address);
  return headers;
}

function readAuthResponseBody(response: Response): Promise<Uint8Array<ArrayBuffer>> {
  const max = AUTH_RESPONSE_MAX_BYTES;
  return readLimited(response.body, max, () => new Error(`auth response exceeds ${max} bytes`));
}

/**
 * Forwards `request` to `path` on the auth service and returns auth's status, body and the
 * headers clients need (`Retry-After`, `WWW-Authenticate`). Auth unreachable, timed out or
 * returning an oversized body becomes 503 `unavailable`.
 */
export async function forwardToAuth(
  request: Request,
  path: "/login" | "/signup",
  requestId: string,
  options: AuthProxyOptions,
): Promise<Response> {
  const body = await readForwardedBody(request);
  const url = `${options.authUrl}${path}`;
  let upstream: Response;
  let upstreamBody: Uint8Array<ArrayBuffer>;
  try {
    upstream = await fetch(url, {
      method: "POST",
      headers: forwardedHeaders(request, requestId, options.trustProxy),
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(options.timeoutMs ?? AUTH_TIMEOUT_MS),
    });
    upstreamBody = await readAuthResponseBody(upstream);
  } catch (error) {
    options.logger.error(
      { err: errorFields(error), request_id: requestId, path },
      "forwarding to auth failed",
    );
    throw authUnavailable();
  }
  const headers = new Headers({ [REQUEST_ID_HEADER]: requestId });
  for (const name of RELAYED_RESPONSE_HEADERS) {
    const value = upstream.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  return new Response(upstreamBody.byteLength > 0 ? upstreamBody : null, {
    status: upstream.status,
    headers,
  });
}
