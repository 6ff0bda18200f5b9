/** The converter's health app: readiness checks and the shared JSON error shape. */
import { expect, test } from "bun:test";
import { createLogger } from "@mp3converter/lib/log";
import type { Broker } from "@mp3converter/lib/ports/broker";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import { createConverterApp } from "./app.ts";

const logger = createLogger({ service: "converter-app-test", level: "silent" });

function appWith(connected: boolean) {
  const broker = { health: () => ({ connected, detail: connected ? undefined : "closed" }) };
  const store = { ping: async () => {} };
  return createConverterApp({
    logger,
    broker: broker as unknown as Broker,
    store: store as unknown as BlobStore,
  });
}

test("readyz reports a disconnected broker", async () => {
  const response = await appWith(false).handle(new Request("http://localhost/readyz"));
  expect(response.status).toBe(503);
  expect(JSON.stringify(await response.json())).toContain("closed");
});

test("readyz is ready when both checks pass", async () => {
  const response = await appWith(true).handle(new Request("http://localhost/readyz"));
  expect(response.status).toBe(200);
});

test("unknown path gets a JSON 404", async () => {
  const response = await appWith(true).handle(new Request("http://localhost/nope"));
  expect(response.status).toBe(404);
  const body = (await response.json()) as { code?: string };
  expect(body.code).toBe("not_found");
});
