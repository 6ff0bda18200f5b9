import { expect, test } from "bun:test";
import { AppError, INTERNAL_MESSAGE } from "./errors.ts";
import { createHttpApp } from "./http.ts";
import { createLogger } from "./log.ts";

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
