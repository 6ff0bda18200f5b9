/** Logger setup: error fields, redaction and email masking. */
import { expect, test } from "bun:test";
import { createLogger, errorFields, maskEmail } from "./log.ts";

/** Creates a logger that collects its lines as parsed objects. */
function collectingLogger(): {
  logger: ReturnType<typeof createLogger>;
  lines: Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    service: "log-test",
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}

test("err from errorFields keeps its type", () => {
  const { logger, lines } = collectingLogger();
  logger.error({ err: errorFields(new TypeError("bad input")) }, "failed");
  const err = lines[0]?.err as Record<string, unknown>;
  expect(err.type).toBe("TypeError");
  expect(err.message).toBe("bad input");
});

test("err as an Error gets errorFields", () => {
  const { logger, lines } = collectingLogger();
  const error = Object.assign(new RangeError("out of range"), { code: "E_RANGE" });
  logger.error({ err: error }, "failed");
  const err = lines[0]?.err as Record<string, unknown>;
  expect(err.type).toBe("RangeError");
  expect(err.code).toBe("E_RANGE");
  expect(String(err.stack)).toContain("RangeError: out of range");
});

test("secret fields are redacted", () => {
  const { logger, lines } = collectingLogger();
  logger.info({ password: "hunter22", request: { token: "abc.def" } }, "login");
  const line = lines[0] ?? {};
  expect(line.password).toBe("[redacted]");
  expect((line.request as Record<string, unknown>).token).toBe("[redacted]");
});

test("maskEmail keeps first letter and domain", () => {
  expect(maskEmail("alice@example.com")).toBe("a***@example.com");
  expect(maskEmail("no-at-sign")).toBe("***");
});
