import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../src/config.ts";
import { readAllInOneOptions } from "./all-in-one.ts";
import { runDevRunnerToExit } from "./dev-runner.ts";

test("dev options have documented defaults", () => {
  const options = readAllInOneOptions({});
  expect(options.dataDir).toBe("./.data");
  expect(options.gatewayPort).toBe(8080);
  expect(options.authPort).toBe(5000);
  expect(options.host).toBe("127.0.0.1");
  expect(options.logLevel).toBe("info");
  expect(options.exitWithParent).toBe(false);
  expect(readAllInOneOptions({ EXIT_WITH_PARENT: "1" }).exitWithParent).toBe(true);
});

test("dev options name every invalid variable", () => {
  let caught: unknown;
  try {
    readAllInOneOptions({ LOG_LEVEL: "verbose", GATEWAY_PORT: "70000", AUTH_PORT: "x" });
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const message = (caught as Error).message;
  expect(message).toContain("LOG_LEVEL=verbose is invalid");
  expect(message).toContain("GATEWAY_PORT");
  expect(message).toContain("AUTH_PORT");
});

test("dev runner prints an invalid service setting", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "mp3c-dev-config-"));
  try {
    const { code, stderr } = await runDevRunnerToExit(dataDir, {
      JOB_RETENTION_DAYS: "abc",
      CONVERTER_PREFETCH: "x",
      MAIL_RETRY_SECONDS: "-1",
    });

    expect(code).toBe(1);
    expect(stderr).toContain("JOB_RETENTION_DAYS=abc is invalid");
    expect(stderr).toContain("CONVERTER_PREFETCH=x is invalid");
    expect(stderr).toContain("MAIL_RETRY_SECONDS=-1 is invalid");
    expect(stderr).not.toContain("all-in-one.ts:");
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}, 30_000);

test("dev runner names an unusable data directory", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "mp3c-dev-outbox-"));
  try {
    // A file where the outbox directory belongs.
    writeFileSync(join(dataDir, "outbox"), "");
    const { code, stderr } = await runDevRunnerToExit(dataDir);

    expect(code).toBe(1);
    expect(stderr).toContain(`The data directory ${dataDir} cannot be used`);
    expect(stderr).toContain("outbox");
    expect(stderr).not.toContain("all-in-one.ts:");
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}, 30_000);
