/**
 * The few calls that differ between Bun and Deno. Everything else (node:child_process, node:fs,
 * node:sqlite, fetch) behaves the same on both, so services import those directly.
 */
import { openAsBlob, readFileSync } from "node:fs";
import { AppError, toErrorResponse } from "./errors.ts";
import { acceptRequestId, REQUEST_ID_HEADER } from "./request-id.ts";

declare const Deno:
  | {
      serve(
        options: { port: number; hostname: string; onListen?: (addr: { port: number }) => void },
        handler: (
          request: Request,
          info: { remoteAddr: { hostname: string } },
        ) => Response | Promise<Response>,
      ): { addr: { port: number }; shutdown(): Promise<void> };
      env: { toObject(): Record<string, string> };
      version: { deno: string };
    }
  | undefined;

/** Name and version of the JavaScript runtime this process runs on. */
export const RUNTIME =
  typeof Deno !== "undefined" ? `deno ${Deno.version.deno}` : `bun ${Bun.version}`;

/** Snapshot of the process environment. */
export function processEnv(): Record<string, string | undefined> {
  return typeof Deno !== "undefined" ? Deno.env.toObject() : { ...process.env };
}

export interface ServeOptions {
  port: number;
  hostname: string;
  /**
   * Largest request body in bytes that the HTTP server accepts before the app sees it. Bun's own
   * default is 128 MiB; Deno has no such limit, so the app must enforce its limits itself.
   */
  maxRequestBodyBytes?: number;
}

/** A listening HTTP server. */
export interface Server {
  /** The port actually bound, which differs from the requested one when that was 0. */
  readonly port: number;
  /**
   * Stops accepting connections and waits for in-flight requests to finish. With
   * `closeActiveConnections`, Bun also closes the connections of requests still in progress, so
   * a stalled upload cannot delay the stop forever. NOTE: Deno's `shutdown()` has no such option,
   * so on Deno the stop always waits for every request.
   */
  stop(options?: { closeActiveConnections?: boolean }): Promise<void>;
}

const clientAddresses = new WeakMap<Request, string>();

/**
 * Returns the network peer address of a request served by `serve`, or undefined for a request
 * built in-process (tests calling `app.handle`). Behind a proxy this is the proxy's address.
 */
export function clientAddressOf(request: Request): string | undefined {
  return clientAddresses.get(request);
}

/** Serves `fetch` on `hostname:port` with Bun.serve or Deno.serve. */
/**
 * Elysia 1.4 finds the path with `url.indexOf("/", 11)`, so it misroutes an `http://` URL whose
 * host has fewer characters than this, and every route then returns 405.
 */
const MIN_ROUTABLE_HOST_LENGTH = 4;

/**
 * Returns the request as the app can route it: with a host too short for Elysia, the same request
 * addressed to `localhost`. A `Host` header that makes no valid URL, such as `a:b:c`, or a
 * repeated one gets 400.
 */
export function canonicalRequest(request: Request): Request | Response {
  let url: URL;
  try {
    // Several Host headers arrive joined with commas, and RFC 9112 (section 3.2) requires a 400
    // response to them.
    if (request.headers.get("host")?.includes(",")) throw new Error("several Host headers");
    url = new URL(request.url);
  } catch {
    return toErrorResponse(
      new AppError(
        "invalid_argument",
        "The Host header is invalid. Send the server's host name, such as localhost:8080.",
      ),
      acceptRequestId(request.headers.get(REQUEST_ID_HEADER)),
    );
  }
  if (url.host.length >= MIN_ROUTABLE_HOST_LENGTH) return request;
  return new Request(`${url.protocol}//localhost${url.pathname}${url.search}`, request);
}

export async function serve(
  fetch: (request: Request) => Response | Promise<Response>,
  options: ServeOptions,
): Promise<Server> {
  if (typeof Deno !== "undefined") {
    const server = Deno.serve(
      { port: options.port, hostname: options.hostname, onListen: () => {} },
      (received, info) => {
        const request = canonicalRequest(received);
        if (request instanceof Response) return request;
        clientAddresses.set(request, info.remoteAddr.hostname);
        return fetch(request);
      },
    );
    return { port: server.addr.port, stop: () => server.shutdown() };
  }
  const server = Bun.serve({
    port: options.port,
    hostname: options.hostname,
    fetch(received, server) {
      const request = canonicalRequest(received);
      if (request instanceof Response) return request;
      const address = server.requestIP(received)?.address;
      if (address) clientAddresses.set(request, address);
      return fetch(request);
    },
    maxRequestBodySize: options.maxRequestBodyBytes ?? 1024 * 1024,
    // Uploads of large files stream for minutes; Bun's default idle timeout is 10 s.
    idleTimeout: 255,
  });
  return {
    port: server.port ?? options.port,
    stop: (stopOptions) => server.stop(stopOptions?.closeActiveConnections ?? false),
  };
}

/**
 * Returns the file at `path` as a `Blob` that is read from disk only when it is consumed, or
 * undefined where the runtime has no such `Blob`. On Bun, `openAsBlob` opens no file until the
 * `Blob` is read and does not check that the file exists. Deno 2.9's `openAsBlob` reads the
 * whole file into memory (a 200 MB file raised the resident set by 401 MB), so on Deno this
 * returns undefined and callers stream the file instead.
 */
export async function openLazyFileBlob(path: string): Promise<Blob | undefined> {
  if (typeof Deno !== "undefined") return undefined;
  return openAsBlob(path);
}

/**
 * Calls `handler` once when the parent process exits, checked every `intervalMs`. A wrapper such
 * as `bun run` forwards SIGINT and SIGTERM to its child, but when the wrapper is killed with
 * SIGKILL the child is re-parented and would go on running and holding its ports.
 */
export function onParentExit(handler: () => void, intervalMs = 1_000): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    handler();
  }, intervalMs);
  timer.unref();
}

/** Calls `handler` once on SIGINT or SIGTERM, so a service can drain before it exits. */
export function onShutdownSignal(handler: (signal: string) => void): void {
  let called = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (called) return;
      called = true;
      handler(signal);
    });
  }
}

/**
 * Returns whether `pid` names a running process. A zombie (a dead process that its parent has not
 * reaped yet) counts as stopped where /proc shows it.
 */
export function isProcessRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return true;
  }
}
