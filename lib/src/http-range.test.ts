import { describe, expect, test } from "bun:test";
import {
  contentRangeHeader,
  parseRangeHeader,
  type RangeDecision,
  unsatisfiedContentRangeHeader,
} from "./http-range.ts";

const full: RangeDecision = { kind: "full" };
const unsatisfiable: RangeDecision = { kind: "unsatisfiable" };
const partial = (start: number, end: number): RangeDecision => ({ kind: "partial", start, end });

const CASES: Array<[header: string | null, size: number, expected: RangeDecision]> = [
  // No header or not a byte range.
  [null, 1000, full],
  ["", 1000, full],
  ["items=0-5", 1000, full],
  ["bytes", 1000, full],
  // Closed ranges.
  ["bytes=0-0", 1000, partial(0, 0)],
  ["bytes=0-499", 1000, partial(0, 499)],
  ["bytes=500-999", 1000, partial(500, 999)],
  ["bytes=999-999", 1000, partial(999, 999)],
  ["BYTES=10-20", 1000, partial(10, 20)],
  ["bytes= 10-20 ", 1000, partial(10, 20)],
  // End clamped to the last byte.
  ["bytes=500-5000", 1000, partial(500, 999)],
  ["bytes=0-99999999999999999999999", 1000, partial(0, 999)],
  // Open-ended ranges.
  ["bytes=0-", 1000, partial(0, 999)],
  ["bytes=999-", 1000, partial(999, 999)],
  // Suffix ranges.
  ["bytes=-1", 1000, partial(999, 999)],
  ["bytes=-500", 1000, partial(500, 999)],
  ["bytes=-1000", 1000, partial(0, 999)],
  ["bytes=-5000", 1000, partial(0, 999)],
  ["bytes=-0", 1000, unsatisfiable],
  // Unsatisfiable.
  ["bytes=1000-", 1000, unsatisfiable],
  ["bytes=1000-1001", 1000, unsatisfiable],
  ["bytes=99999999999999999999999-", 1000, unsatisfiable],
  ["bytes=20-10", 1000, unsatisfiable],
  ["bytes=0-0", 0, unsatisfiable],
  ["bytes=0-", 0, unsatisfiable],
  // A suffix of an empty body selects nothing, so the empty body is sent whole.
  ["bytes=-5", 0, full],
  // Several ranges: the full body is served.
  ["bytes=0-1,5-6", 1000, full],
  ["bytes=0-1, -5", 1000, full],
  // Empty list elements are skipped.
  ["bytes=,0-9,", 1000, partial(0, 9)],
  // Malformed: the header is ignored.
  ["bytes=", 1000, full],
  ["bytes=-", 1000, full],
  ["bytes=a-b", 1000, full],
  ["bytes=1-2-3", 1000, full],
  ["bytes=+1-2", 1000, full],
  ["bytes=-1-2", 1000, full],
  ["bytes=1 - 2", 1000, full],
  ["bytes=0x10-20", 1000, full],
  ["bytes=0-1,x", 1000, full],
];

describe("parseRangeHeader", () => {
  for (const [header, size, expected] of CASES) {
    test(`${JSON.stringify(header)} of ${size} bytes`, () => {
      expect(parseRangeHeader(header, size)).toEqual(expected);
    });
  }
});

describe("Content-Range headers", () => {
  test("206 header names the range", () => {
    expect(contentRangeHeader({ start: 0, end: 499 }, 1000)).toBe("bytes 0-499/1000");
  });

  test("416 header names the size", () => {
    expect(unsatisfiedContentRangeHeader(1000)).toBe("bytes */1000");
  });
});
