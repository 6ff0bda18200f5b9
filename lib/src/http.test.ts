import { describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { AppError, INTERNAL_MESSAGE } from "./errors.ts";
import { createHttpApp } from "./http.ts";
import { createLogger } from "./log.ts";

const BASE = "http://localhost";
const silent = createLogger({ service: "http-test", level: "silent" });

function appWithLog() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    service: "http-test",
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  const app = createHttpApp("http-test", logger)
    .get("/response", () => new Response("no", { status: 401 }))
    .post("/created", ({ set }) => {
      set.status = 201;
      return { ok: true };
    })
    .get("/missing", () => {
      throw new AppError("not_found", "No such thing.");
    })
    .get("/crash", () => {
      throw new Error("connect to mysql://app:s3cret@db:3306 failed");
    });
  return { app, lines };
}

/** Returns the access log line of a request once it is written. */
async function accessLine(lines: Array<Record<string, unknown>>, path: string) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const line = lines.find((entry) => entry.msg === "request completed" && entry.path === path);
    if (line) return line;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`no access log line for ${path}`);
}

test.each([
  ["GET", "/response", 401],
  ["POST", "/created", 201],
  ["GET", "/missing", 404],
])("access log of %s %s has status %d", async (method, path, status) => {
  const { app, lines } = appWithLog();
  const response = await app.handle(new Request(`http://localhost${path}`, { method }));

  expect(response.status).toBe(status);
  expect((await accessLine(lines, path))["http.status"]).toBe(status);
});

test("response echoes the request id", async () => {
  const { app, lines } = appWithLog();
  const response = await app.handle(
    new Request("http://localhost/created", {
      method: "POST",
      headers: { "x-request-id": "req-12345678" },
    }),
  );

  expect(response.headers.get("x-request-id")).toBe("req-12345678");
  expect((await accessLine(lines, "/created")).request_id).toBe("req-12345678");
});

test("500 body hides the cause", async () => {
  const { app, lines } = appWithLog();
  const response = await app.handle(new Request("http://localhost/crash"));

  expect(response.status).toBe(500);
  const body = (await response.json()) as Record<string, unknown>;
  expect(body.code).toBe("internal");
  expect(body.message).toBe(INTERNAL_MESSAGE);
  expect(JSON.stringify(body)).not.toContain("s3cret");
  expect(JSON.stringify(body)).not.toContain("mysql");
  expect(lines.some((line) => line.msg === "request failed")).toBe(true);
});

describe("wrong method on a known path", () => {
  const health = new Elysia({ name: "health" }).get("/healthz", () => ({ status: "ok" }));

  function routedApp() {
    return createHttpApp("http-test", silent)
      .use(health)
      .post("/upload", () => "accepted")
      .get("/jobs/:id", ({ params }) => ({ id: params.id }))
      .delete("/jobs/:id", () => "deleted")
      .get("/files/:name?", () => "file")
      .get("/static/*", () => "static");
  }

  test.each([
    ["PUT", "/upload", "POST, OPTIONS"],
    ["GET", "/upload", "POST, OPTIONS"],
    ["HEAD", "/upload", "POST, OPTIONS"],
    ["PATCH", "/upload", "POST, OPTIONS"],
    ["TRACE", "/upload", "POST, OPTIONS"],
    ["POST", "/jobs/42", "GET, HEAD, DELETE, OPTIONS"],
    ["PUT", "/jobs/42/", "GET, HEAD, DELETE, OPTIONS"],
    ["POST", "/healthz", "GET, HEAD, OPTIONS"],
    ["POST", "/files", "GET, HEAD, OPTIONS"],
    ["POST", "/files/a.txt", "GET, HEAD, OPTIONS"],
    ["POST", "/static/a/b.css", "GET, HEAD, OPTIONS"],
  ])("%s %s gets 405 with Allow: %s", async (method, path, allow) => {
    const response = await routedApp().handle(new Request(`${BASE}${path}`, { method }));

    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe(allow);
    expect(response.headers.get("x-request-id")).toBeTruthy();
    const body = (await response.json()) as Record<string, unknown>;
    expect(body.code).toBe("method_not_allowed");
    expect(body.message).toBe(
      `The method ${method} is not allowed on this path. Use one of ${allow}.`,
    );
    expect(body.details).toEqual({ allowed_methods: allow.split(", ") });
  });

  test.each([
    ["GET", "/nowhere"],
    ["PUT", "/nowhere"],
    ["OPTIONS", "/nowhere"],
    ["DELETE", "/jobs"],
    ["GET", "/jobs/42/parts"],
    ["GET", "/JOBS/42"],
    ["POST", "/uploads"],
  ])("%s %s gets 404", async (method, path) => {
    const response = await routedApp().handle(new Request(`${BASE}${path}`, { method }));

    expect(response.status).toBe(404);
    expect(response.headers.get("allow")).toBeNull();
    expect(((await response.json()) as Record<string, unknown>).code).toBe("not_found");
  });

  test("HEAD on a GET route is served by it", async () => {
    const response = await routedApp().handle(new Request(`${BASE}/jobs/42`, { method: "HEAD" }));

    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String('{"id":"42"}'.length));
    expect(await response.text()).toBe("");
  });

  test("OPTIONS gets 204 with Allow", async () => {
    const response = await routedApp().handle(
      new Request(`${BASE}/jobs/42`, { method: "OPTIONS" }),
    );

    expect(response.status).toBe(204);
    expect(response.headers.get("allow")).toBe("GET, HEAD, DELETE, OPTIONS");
    expect(response.headers.get("x-request-id")).toBeTruthy();
    expect(await response.text()).toBe("");
  });

  test("access log of a 405 has status 405", async () => {
    const { app, lines } = appWithLog();
    const response = await app.handle(
      new Request(`${BASE}/created`, { method: "PUT", headers: { "x-request-id": "req-405-log" } }),
    );

    expect(response.status).toBe(405);
    expect(response.headers.get("x-request-id")).toBe("req-405-log");
    const line = await accessLine(lines, "/created");
    expect(line["http.status"]).toBe(405);
    expect(line.request_id).toBe("req-405-log");
  });

  test("access log of a 404 has the request id", async () => {
    const { app, lines } = appWithLog();
    const response = await app.handle(
      new Request(`${BASE}/nowhere`, { headers: { "x-request-id": "req-404-log" } }),
    );

    expect(response.status).toBe(404);
    const line = await accessLine(lines, "/nowhere");
    expect(line["http.status"]).toBe(404);
    expect(line.request_id).toBe("req-404-log");
  });
});

test("probe successes log at debug level", async () => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    service: "http-test",
    level: "debug",
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  const app = createHttpApp("http-test", logger)
    .get("/healthz", () => ({ status: "ok" }))
    .get("/readyz", ({ set }) => {
      set.status = 503;
      return { status: "unavailable" };
    })
    .get("/jobs", () => []);

  for (const path of ["/healthz", "/readyz", "/jobs"]) {
    await app.handle(new Request(`${BASE}${path}`));
  }

  expect((await accessLine(lines, "/healthz")).level).toBe("debug");
  expect((await accessLine(lines, "/readyz")).level).toBe("info");
  expect((await accessLine(lines, "/jobs")).level).toBe("info");
});
