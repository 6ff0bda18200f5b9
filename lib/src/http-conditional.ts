/**
 * Conditional GET requests (RFC 9110, section 13). `If-Match` and `If-Unmodified-Since` let a
 * client require the version it has, with 412 otherwise. `If-None-Match` and `If-Modified-Since`
 * let it revalidate a copy with 304. `If-Range` lets it resume a download only while the
 * representation is unchanged.
 */

/** Validators of a representation, sent as `ETag` and `Last-Modified`. */
export interface Validators {
  /** A strong entity tag, quotes included, such as `"x7Gk2"`. */
  etag: string;
  lastModified: Date;
}

/** One entity tag in a header: `"opaque"` or the weak form `W/"opaque"`. */
const ENTITY_TAG = /(W\/)?("[^"]*")/g;

/** Formats a date as an HTTP date (IMF-fixdate), such as `Sun, 06 Nov 1994 08:49:37 GMT`. */
export function httpDate(date: Date): string {
  return date.toUTCString();
}

/**
 * Returns true when `If-Match` or `If-Unmodified-Since` rules out the current representation,
 * so the request gets 412 (RFC 9110, section 13.2.2, steps 1 and 2). `If-Match` compares
 * strongly, so a weak tag never matches, and `*` matches any representation. An
 * `If-Unmodified-Since` next to `If-Match`, or with an invalid date, is ignored.
 */
export function isPreconditionFailed(headers: Headers, validators: Validators): boolean {
  const ifMatch = headers.get("if-match");
  if (ifMatch !== null) return !matchesStrongly(ifMatch, validators.etag);
  const since = parseHttpDate(headers.get("if-unmodified-since"));
  return since !== undefined && wholeSeconds(validators.lastModified) > since;
}

/** Returns true when the client's copy is current, so a GET or HEAD gets 304 Not Modified. */
export function isNotModified(headers: Headers, validators: Validators): boolean {
  const ifNoneMatch = headers.get("if-none-match");
  // RFC 9110 (section 13.1.3) has a recipient ignore If-Modified-Since next to If-None-Match.
  if (ifNoneMatch !== null) return listsEntityTag(ifNoneMatch, validators.etag);

  const since = parseHttpDate(headers.get("if-modified-since"));
  return since !== undefined && wholeSeconds(validators.lastModified) <= since;
}

/**
 * Returns true unless an `If-Range` header names another version of the representation, in
 * which case RFC 9110 (section 13.1.5) requires ignoring `Range` and sending the whole of it.
 * An entity tag must equal `validators.etag` by strong comparison, so a weak tag never matches.
 * A date must equal `Last-Modified` to the second.
 */
export function ifRangeMatches(headers: Headers, validators: Validators): boolean {
  const value = headers.get("if-range")?.trim();
  if (value === undefined) return true;
  if (value.startsWith('"') || value.startsWith("W/")) return value === validators.etag;
  return parseHttpDate(value) === wholeSeconds(validators.lastModified);
}

/**
 * Returns true when an `If-None-Match` value lists the current entity tag, by weak comparison
 * as RFC 9110 (section 13.1.2) requires, or is `*`.
 */
function listsEntityTag(value: string, etag: string): boolean {
  if (value.trim() === "*") return true;
  const current = opaqueTag(etag);
  for (const match of value.matchAll(ENTITY_TAG)) {
    if (match[2] === current) return true;
  }
  return false;
}

/** Returns true when an `If-Match` value lists `etag` as a strong tag, or is `*`. */
function matchesStrongly(value: string, etag: string): boolean {
  if (value.trim() === "*") return true;
  for (const match of value.matchAll(ENTITY_TAG)) {
    if (match[1] === undefined && match[2] === etag) return true;
  }
  return false;
}

function opaqueTag(etag: string): string {
  return etag.startsWith("W/") ? etag.slice(2) : etag;
}

/** Parses an HTTP date into milliseconds since the epoch, or undefined when it is invalid. */
function parseHttpDate(value: string | null): number | undefined {
  if (value === null) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : time;
}

/** Truncates to whole seconds, the precision of an HTTP date. */
function wholeSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000) * 1000;
}
