import { expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { ConfigError } from "@mp3converter/lib/config";
import { readConverterConfig } from "./config.ts";

const REQUIRED = { BROKER_URL: "memory:", STORAGE_URL: "file:/var/lib/mp3converter" };

test("readConverterConfig applies the defaults", () => {
  const config = readConverterConfig(REQUIRED);
  expect(config.videoQueue).toBe("video");
  expect(config.mp3Queue).toBe("mp3");
  expect(config.jobEventsQueue).toBe("job-events");
  expect(config.healthPort).toBe(8081);
  expect(config.prefetch).toBe(1);
  expect(config.ffmpegPath).toBe("ffmpeg");
  expect(config.ffprobePath).toBe("ffprobe");
  expect(config.maxInputSeconds).toBe(14_400);
  expect(config.timeoutSeconds).toBe(1800);
  expect(config.cpuSeconds).toBe(1800);
  expect(config.mp3Quality).toBe(2);
  expect(config.workDir).toBe(tmpdir());
  expect(config.drainSeconds).toBe(60);
});

test("readConverterConfig names every bad variable", () => {
  let error: unknown;
  try {
    readConverterConfig({
      STORAGE_URL: "s3://bucket",
      MP3_QUALITY: "10",
      CONVERTER_PREFETCH: "0",
      CONVERTER_DRAIN_SECONDS: "-1",
    });
  } catch (thrown) {
    error = thrown;
  }
  expect(error).toBeInstanceOf(ConfigError);
  const text = (error as ConfigError).problems.join("\n");
  expect(text).toContain("BROKER_URL is missing");
  expect(text).toContain("STORAGE_URL has scheme s3:");
  expect(text).toContain("MP3_QUALITY=10 is invalid");
  expect(text).toContain("CONVERTER_PREFETCH=0 is invalid");
  expect(text).toContain("CONVERTER_DRAIN_SECONDS=-1 is invalid");
});
