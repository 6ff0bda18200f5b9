/**
 * Builds `Content-Disposition: attachment` values with both filename parameters of RFC 6266: an
 * ASCII `filename` for old clients and a UTF-8 `filename*` (RFC 8187) that modern ones prefer.
 */

// Anything that is not printable ASCII, and the two characters a quoted-string must escape.
const NOT_SAFE_IN_QUOTED_ASCII = /[^\x20-\x7e]|["\\]/g;

// RFC 8187 attr-char allows these beside letters and digits; encodeURIComponent leaves
// `'()*` unencoded although attr-char excludes them.
const NOT_ATTR_CHAR = /['()*]/g;

/** Replaces every character an ASCII quoted-string cannot carry safely with `_`. */
export function toAsciiFilename(name: string): string {
  return Array.from(name, (char) => (char.match(NOT_SAFE_IN_QUOTED_ASCII) ? "_" : char)).join("");
}

/** Percent-encodes UTF-8 bytes of `name` for an RFC 8187 `filename*` value. */
export function encodeExtendedValue(name: string): string {
  return encodeURIComponent(name).replace(
    NOT_ATTR_CHAR,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** Returns the header value that makes a client save the body as `name`. */
export function attachmentDisposition(name: string): string {
  const ascii = toAsciiFilename(name);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeExtendedValue(name)}`;
}
