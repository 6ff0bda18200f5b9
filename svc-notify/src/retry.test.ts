import { describe, expect, test } from "bun:test";
import { SEND_RETRY_INITIAL_DELAY_MS, SEND_RETRY_MAX_DELAY_MS, sendRetryDelayMs } from "./retry.ts";

const POLICY = { initialDelayMs: SEND_RETRY_INITIAL_DELAY_MS, maxDelayMs: SEND_RETRY_MAX_DELAY_MS };

describe("sendRetryDelayMs", () => {
  test("doubles from 1 s up to 60 s", () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 7].map((retry) =>
      sendRetryDelayMs(retry, POLICY, () => 1),
    );
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
  });

  test("jitter stays in the upper half", () => {
    expect(sendRetryDelayMs(3, POLICY, () => 0)).toBe(4_000);
    expect(sendRetryDelayMs(3, POLICY, () => 0.5)).toBe(6_000);
    expect(sendRetryDelayMs(40, POLICY, () => 0)).toBe(30_000);
  });

  test("treats a negative retry as the first", () => {
    expect(sendRetryDelayMs(-3, POLICY, () => 1)).toBe(1_000);
  });
});
