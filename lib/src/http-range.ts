/**
 * `Range` request header handling for byte ranges (RFC 9110, section 14). Only single ranges are
 * served as 206; anything else is served in full or rejected with 416.
 */
import type { ByteRange } from "./ports/storage.ts";

/** How to respond to a request for a representation of `size` bytes. */
export type RangeDecision =
  | { kind: "full" }
  | ({ kind: "partial" } & ByteRange)
  | { kind: "unsatisfiable" };

const FULL: RangeDecision = { kind: "full" };
const UNSATISFIABLE: RangeDecision = { kind: "unsatisfiable" };

/** One `first-pos "-" [ last-pos ]` or `"-" suffix-length` element of a byte range set. */
const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * Decides how to respond to a `Range` header for a representation of `size` bytes.
 *
 * - `bytes=a-b`, `bytes=a-` and the suffix form `bytes=-n` give a partial range, with `end`
 *   clamped to `size - 1`.
 * - A missing or malformed header, or a unit other than `bytes`, gives the full body, because
 *   RFC 9110 lets a server ignore a `Range` header it does not understand.
 * - `a >= size` and `bytes=-0` are unsatisfiable (416). So is `a > b`, which RFC 9110 calls
 *   invalid: a 416 tells the client its request was wrong rather than hiding it.
 */
export function parseRangeHeader(header: string | null, size: number): RangeDecision {
  if (header === null) return FULL;
  const equals = header.indexOf("=");
  if (equals < 0) return FULL;
  if (header.slice(0, equals).trim().toLowerCase() !== "bytes") return FULL;

  // The list syntax of RFC 9110 (section 5.6.1) allows empty elements, which a recipient skips.
  const specs = header
    .slice(equals + 1)
    .split(",")
    .map((spec) => spec.trim())
    .filter((spec) => spec !== "");
  if (specs.length === 0) return FULL;

  const parsed = specs.map((spec) => RANGE_SPEC.exec(spec));
  if (parsed.some((match) => match === null || (match[1] === "" && match[2] === ""))) return FULL;

  // Several ranges would need a multipart/byteranges body. RFC 9110 (section 14.2) lets a server
  // ignore the header instead, so the whole representation is served.
  if (parsed.length > 1) return FULL;

  const [, first = "", last = ""] = parsed[0] as RegExpExecArray;
  return first === "" ? suffixRange(Number(last), size) : intRange(first, last, size);
}

/** `bytes=a-b` or `bytes=a-`. */
function intRange(first: string, last: string, size: number): RangeDecision {
  const start = Number(first);
  const end = last === "" ? size - 1 : Number(last);
  if (start > end || start >= size) return UNSATISFIABLE;
  return { kind: "partial", start, end: Math.min(end, size - 1) };
}

/** `bytes=-n`: the last `n` bytes. */
function suffixRange(length: number, size: number): RangeDecision {
  if (length === 0) return UNSATISFIABLE;
  // RFC 9110 calls a non-zero suffix of an empty representation satisfiable, but it selects no
  // bytes, so the empty body is sent as a whole.
  if (size === 0) return FULL;
  return { kind: "partial", start: Math.max(0, size - length), end: size - 1 };
}

/** `Content-Range` value of a 206 response: `bytes start-end/size`. */
export function contentRangeHeader(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}

/** `Content-Range` value of a 416 response, which gives the size and no range. */
export function unsatisfiedContentRangeHeader(size: number): string {
  return `bytes */${size}`;
}
