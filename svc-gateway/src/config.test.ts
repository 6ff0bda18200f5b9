import { describe, expect, test } from "bun:test";
import { ConfigError } from "@mp3converter/lib/config";
import { readGatewayConfig } from "./config.ts";

const REQUIRED = {
  DATABASE_URL: "sqlite::memory:",
  STORAGE_URL: "file:/tmp/files",
  BROKER_URL: "memory:",
  AUTH_URL: "http://127.0.0.1:5000",
};

/** Returns the problems `readGatewayConfig` reports for `env`, or none when it accepts it. */
function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    readGatewayConfig({ ...REQUIRED, ...env });
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems;
  }
}

describe("MAX_ACTIVE_JOBS_PER_USER", () => {
  test("defaults to 10", () => {
    expect(readGatewayConfig(REQUIRED).maxActiveJobsPerUser).toBe(10);
  });

  test.each([
    ["0", 0],
    ["1", 1],
    ["250", 250],
  ])("reads %s", (value, expected) => {
    const config = readGatewayConfig({ ...REQUIRED, MAX_ACTIVE_JOBS_PER_USER: value });
    expect(config.maxActiveJobsPerUser).toBe(expected);
  });

  test.each(["-1", "ten", "2.5", "1000001"])("rejects %s", (value) => {
    const problems = problemsOf({ MAX_ACTIVE_JOBS_PER_USER: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`MAX_ACTIVE_JOBS_PER_USER=${value} is invalid`);
  });
});

describe("JOB_RETENTION_DAYS", () => {
  test("defaults to 0, which keeps jobs forever", () => {
    expect(readGatewayConfig(REQUIRED).jobRetentionDays).toBe(0);
  });

  test.each([
    ["0", 0],
    ["1", 1],
    ["30", 30],
    ["36500", 36_500],
  ])("reads %s", (value, expected) => {
    const config = readGatewayConfig({ ...REQUIRED, JOB_RETENTION_DAYS: value });
    expect(config.jobRetentionDays).toBe(expected);
  });

  test.each(["-1", "thirty", "1.5", "36501"])("rejects %s", (value) => {
    const problems = problemsOf({ JOB_RETENTION_DAYS: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`JOB_RETENTION_DAYS=${value} is invalid`);
  });
});
