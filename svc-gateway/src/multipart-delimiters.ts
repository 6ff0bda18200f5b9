/**
 * Counts the parts of a `multipart/form-data` body as it streams past. busboy skips a part whose
 * `Content-Disposition` header is missing or malformed, and emits no event for it. The count of
 * parts minus the parts busboy reported is therefore the number it skipped.
 */

/** Matches the `boundary` parameter of a Content-Type, as a token or a quoted string. */
const BOUNDARY_PARAMETER = /;\s*boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i;

/** Returns the `boundary` parameter of a multipart Content-Type, or undefined when it has none. */
export function boundaryOf(contentType: string): string | undefined {
  const match = BOUNDARY_PARAMETER.exec(contentType);
  if (!match) return undefined;
  const quoted = match[1];
  return quoted === undefined ? match[2] : quoted.replace(/\\(.)/g, "$1");
}

/** Counts the delimiters (`CRLF--boundary`) in a body that arrives in chunks. */
export class DelimiterCounter {
  readonly #delimiter: Buffer;
  /** The last bytes seen, shorter than a delimiter, to find one split across two chunks. */
  #tail: Buffer;
  #count = 0;

  constructor(boundary: string) {
    this.#delimiter = Buffer.from(`\r\n--${boundary}`, "latin1");
    // busboy parses a body as if it began with CRLF, so a delimiter on the first line counts.
    this.#tail = Buffer.from("\r\n");
  }

  /** Delimiters seen so far, the close delimiter `--boundary--` included. */
  get count(): number {
    return this.#count;
  }

  /**
   * Number of parts the body has opened, assuming it ends with its close delimiter. Delimiter
   * text after the close delimiter, where RFC 2046 lets a body carry an ignored epilogue, would
   * be counted too.
   */
  get parts(): number {
    return Math.max(0, this.#count - 1);
  }

  push(chunk: Uint8Array): void {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const overlap = this.#delimiter.length - 1;
    // A delimiter split across chunks starts in the tail, which is too short to hold a whole one.
    const seam = Buffer.concat([this.#tail, bytes.subarray(0, overlap)]);
    this.#count += this.#occurrences(seam, this.#tail.length);
    this.#count += this.#occurrences(bytes, bytes.length);
    this.#tail =
      bytes.length >= overlap
        ? Buffer.from(bytes.subarray(bytes.length - overlap))
        : Buffer.concat([this.#tail, bytes]).subarray(-overlap);
  }

  /** Counts the delimiters in `bytes` that start before index `startLimit`. */
  #occurrences(bytes: Buffer, startLimit: number): number {
    let found = 0;
    let index = bytes.indexOf(this.#delimiter);
    while (index >= 0 && index < startLimit) {
      found++;
      index = bytes.indexOf(this.#delimiter, index + this.#delimiter.length);
    }
    return found;
  }
}
