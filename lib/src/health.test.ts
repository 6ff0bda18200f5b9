import { describe, expect, test } from "bun:test";
import { healthRoutes, type ReadinessChecks } from "./health.ts";
import { createLogger } from "./log.ts";

const logger = createLogger({ service: "health-test", level: "silent" });

function failing(message: string) {
  return () => {
    throw new Error(message);
  };
}

async function readyz(checks: ReadinessChecks) {
  const response = await healthRoutes(logger, checks).handle(
    new Request("http://localhost/readyz"),
  );
  const body = (await response.json()) as {
    status?: string;
    code?: string;
    details?: Record<string, string>;
  };
  return { status: response.status, body };
}

describe("/readyz", () => {
  test("all checks pass: ready", async () => {
    const { status, body } = await readyz({ database: () => {}, broker: async () => {} });
    expect(status).toBe(200);
    expect(body.status).toBe("ready");
  });

  test("required check fails: 503", async () => {
    const { status, body } = await readyz({ database: failing("refused"), storage: () => {} });
    expect(status).toBe(503);
    expect(body.code).toBe("unavailable");
    expect(body.details).toEqual({ database: "refused" });
  });

  test("optional check fails: degraded", async () => {
    const { status, body } = await readyz({
      database: () => {},
      broker: { required: false, check: failing("reconnecting") },
    });
    expect(status).toBe(200);
    expect(body.status).toBe("degraded");
    expect(body.details).toEqual({ broker: "reconnecting" });
  });

  test("both kinds fail: 503 names both", async () => {
    const { status, body } = await readyz({
      database: failing("refused"),
      broker: { required: false, check: failing("reconnecting") },
    });
    expect(status).toBe(503);
    expect(body.details).toEqual({ database: "refused", broker: "reconnecting" });
  });
});

test("/healthz answers while checks fail", async () => {
  const response = await healthRoutes(logger, { database: failing("refused") }).handle(
    new Request("http://localhost/healthz"),
  );
  expect(response.status).toBe(200);
});
