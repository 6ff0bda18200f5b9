import { describe, expect, test } from "bun:test";
import {
  httpDate,
  ifRangeMatches,
  isNotModified,
  isPreconditionFailed,
  type Validators,
} from "./http-conditional.ts";

const validators: Validators = {
  etag: '"v1-abc"',
  lastModified: new Date("2026-03-01T10:20:30.456Z"),
};
const LAST_MODIFIED = "Sun, 01 Mar 2026 10:20:30 GMT";

function headers(entries: Record<string, string>): Headers {
  return new Headers(entries);
}

describe("httpDate", () => {
  test("formats an IMF-fixdate", () => {
    expect(httpDate(validators.lastModified)).toBe(LAST_MODIFIED);
  });
});

describe("isPreconditionFailed", () => {
  test.each([
    [{}, false],
    [{ "if-match": '"v1-abc"' }, false],
    [{ "if-match": '"old", "v1-abc"' }, false],
    [{ "if-match": "*" }, false],
    [{ "if-match": '"old"' }, true],
    [{ "if-match": 'W/"v1-abc"' }, true],
    [{ "if-match": "garbage" }, true],
    [{ "if-unmodified-since": LAST_MODIFIED }, false],
    [{ "if-unmodified-since": "Mon, 02 Mar 2026 00:00:00 GMT" }, false],
    [{ "if-unmodified-since": "Sat, 28 Feb 2026 00:00:00 GMT" }, true],
    [{ "if-unmodified-since": "not a date" }, false],
    [{ "if-match": '"v1-abc"', "if-unmodified-since": "Sat, 28 Feb 2026 00:00:00 GMT" }, false],
  ])("%o fails: %p", (entries, failed) => {
    expect(isPreconditionFailed(headers(entries), validators)).toBe(failed);
  });
});

describe("isNotModified", () => {
  test.each([
    ['"v1-abc"', true],
    ['W/"v1-abc"', true],
    ['"other", "v1-abc"', true],
    ['"other",W/"v1-abc"', true],
    ["*", true],
    ['"other"', false],
    ['"v1-abcd"', false],
    ["v1-abc", false],
    ["", false],
  ])("If-None-Match %j gives %p", (value, expected) => {
    expect(isNotModified(headers({ "if-none-match": value }), validators)).toBe(expected);
  });

  test.each([
    [LAST_MODIFIED, true],
    ["Sun, 01 Mar 2026 10:20:31 GMT", true],
    ["Sun, 01 Mar 2026 10:20:29 GMT", false],
    ["not a date", false],
  ])("If-Modified-Since %j gives %p", (value, expected) => {
    expect(isNotModified(headers({ "if-modified-since": value }), validators)).toBe(expected);
  });

  test("If-None-Match overrides If-Modified-Since", () => {
    const request = headers({ "if-none-match": '"other"', "if-modified-since": LAST_MODIFIED });
    expect(isNotModified(request, validators)).toBe(false);
  });

  test("no condition means modified", () => {
    expect(isNotModified(headers({}), validators)).toBe(false);
  });
});

describe("ifRangeMatches", () => {
  test.each([
    ['"v1-abc"', true],
    [LAST_MODIFIED, true],
    ['"other"', false],
    ['W/"v1-abc"', false],
    ["Sun, 01 Mar 2026 10:20:31 GMT", false],
    ["Sun, 01 Mar 2026 10:20:29 GMT", false],
    ["not a date", false],
  ])("If-Range %j gives %p", (value, expected) => {
    expect(ifRangeMatches(headers({ "if-range": value }), validators)).toBe(expected);
  });

  test("absent If-Range matches", () => {
    expect(ifRangeMatches(headers({}), validators)).toBe(true);
  });
});
