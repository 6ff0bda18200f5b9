/**
 * Baseline for the upload memory benchmark: an Elysia route that takes the upload as `t.File()`,
 * the way most Elysia examples do, which buffers the whole file. Prints its port on stdout.
 */
import { Elysia, t } from "elysia";

const MAX_BODY_BYTES = 1024 * 1024 * 1024;

const app = new Elysia().post("/upload", ({ body }) => ({ size: body.file.size }), {
  body: t.Object({ file: t.File() }),
});

const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: app.fetch,
  maxRequestBodySize: MAX_BODY_BYTES,
});
process.stdout.write(`${server.port}\n`);
