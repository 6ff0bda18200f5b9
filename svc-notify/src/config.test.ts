import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "@mp3converter/lib/config";
import { readNotifyConfig } from "./config.ts";

const REQUIRED = {
  BROKER_URL: "amqp://guest:guest@127.0.0.1:5672",
  MAIL_URL: "smtp://user:pass@127.0.0.1:587",
  PUBLIC_URL: "https://mp3.example.com/",
};

const dir = mkdtempSync(join(tmpdir(), "notify-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    readNotifyConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("readNotifyConfig", () => {
  test("applies the defaults", () => {
    const config = readNotifyConfig(REQUIRED);
    expect(config.mailFrom).toBe("mp3converter <no-reply@mp3converter.local>");
    expect(config.mp3Queue).toBe("mp3");
    expect(config.jobEventsQueue).toBe("job-events");
    expect(config.healthPort).toBe(8082);
    expect(config.prefetch).toBe(4);
    expect(config.mailRetrySeconds).toBe(600);
    expect(config.logLevel).toBe("info");
    expect(config.mailTlsCa).toBeUndefined();
  });

  test("drops the trailing slash of PUBLIC_URL", () => {
    expect(readNotifyConfig(REQUIRED).publicUrl).toBe("https://mp3.example.com");
  });

  test("names every missing variable", () => {
    const problems = problemsOf({});
    expect(problems).toHaveLength(3);
    expect(problems.some((p) => p.startsWith("BROKER_URL is missing"))).toBe(true);
    expect(problems.some((p) => p.startsWith("MAIL_URL is missing"))).toBe(true);
    expect(problems.some((p) => p.startsWith("PUBLIC_URL is missing"))).toBe(true);
  });

  test("rejects an unsupported mail scheme", () => {
    const problems = problemsOf({ ...REQUIRED, MAIL_URL: "http://mail.example.com" });
    expect(problems).toEqual([
      "MAIL_URL has scheme http:, which is not supported; use one of smtp:, smtps:, file:",
    ]);
  });

  test("rejects a MAIL_FROM with a line break", () => {
    const problems = problemsOf({ ...REQUIRED, MAIL_FROM: "a@example.com\r\nBcc: b@example.com" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toStartWith("MAIL_FROM is invalid");
  });

  test("rejects a PUBLIC_URL with a query", () => {
    const problems = problemsOf({ ...REQUIRED, PUBLIC_URL: "https://mp3.example.com/?a=b" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toStartWith("PUBLIC_URL is invalid");
  });

  test("rejects a prefetch of 0", () => {
    const problems = problemsOf({ ...REQUIRED, NOTIFY_PREFETCH: "0" });
    expect(problems).toEqual(["NOTIFY_PREFETCH=0 is invalid; expected an integer from 1 to 1000"]);
  });

  test("reads MAIL_RETRY_SECONDS", () => {
    expect(readNotifyConfig({ ...REQUIRED, MAIL_RETRY_SECONDS: "0" }).mailRetrySeconds).toBe(0);
    expect(readNotifyConfig({ ...REQUIRED, MAIL_RETRY_SECONDS: "1500" }).mailRetrySeconds).toBe(
      1500,
    );
  });

  test.each(["-1", "1501", "ten"])("rejects MAIL_RETRY_SECONDS=%s", (value) => {
    const problems = problemsOf({ ...REQUIRED, MAIL_RETRY_SECONDS: value });
    expect(problems).toEqual([
      `MAIL_RETRY_SECONDS=${value} is invalid; expected an integer from 0 to 1500`,
    ]);
  });

  test("reads the CA file contents", () => {
    const path = join(dir, "ca.pem");
    const pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    writeFileSync(path, pem);
    expect(readNotifyConfig({ ...REQUIRED, MAIL_TLS_CA_FILE: path }).mailTlsCa).toBe(pem);
  });

  test("names a CA file that does not exist", () => {
    const path = join(dir, "missing.pem");
    const problems = problemsOf({ ...REQUIRED, MAIL_TLS_CA_FILE: path });
    expect(problems).toEqual([
      `MAIL_TLS_CA_FILE=${path} cannot be read (ENOENT); set it to a PEM file`,
    ]);
  });

  test("names a CA file without a certificate", () => {
    const path = join(dir, "empty.pem");
    writeFileSync(path, "not a certificate\n");
    const problems = problemsOf({ ...REQUIRED, MAIL_TLS_CA_FILE: path });
    expect(problems).toEqual([
      `MAIL_TLS_CA_FILE=${path} contains no PEM certificate; set it to a PEM file`,
    ]);
  });
});
