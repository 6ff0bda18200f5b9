/**
 * Counts the parts of a `multipart/form-data` body as it streams past. busboy skips a part whose
 * `Content-Disposition` header is missing or malformed, or whose delimiter line does not end
 * right after the boundary, and emits no event for it. The count of parts minus the parts busboy
 * reported is therefore the number it skipped.
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

/**
 * Counts the delimiters (`CRLF--boundary`) in a body that arrives in chunks, up to and including
 * the close delimiter (`CRLF--boundary--`). Like busboy, it ignores everything after the close
 * delimiter, where RFC 2046 lets a body carry an epilogue.
 */
export class DelimiterCounter {
  readonly #delimiter: Buffer;
  /**
   * The last bytes seen, one longer than a delimiter. A delimiter that starts here was not counted
   * yet, because either its end or the two bytes that tell a close delimiter were missing.
   */
  #tail: Buffer;
  #count = 0;
  #closed = false;

  constructor(boundary: string) {
    this.#delimiter = Buffer.from(`\r\n--${boundary}`, "latin1");
    // busboy parses a body as if it began with CRLF, so a delimiter on the first line counts.
    this.#tail = Buffer.from("\r\n");
  }

  /** Delimiters seen so far, the close delimiter included. */
  get count(): number {
    return this.#count;
  }

  /** Whether the close delimiter was seen. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Number of parts the body has opened: every delimiter but the close delimiter opens one. */
  get parts(): number {
    return this.#count - (this.#closed ? 1 : 0);
  }

  push(chunk: Uint8Array): void {
    if (this.#closed) return;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // A delimiter that starts in the tail ends, with its two following bytes, in this seam.
    const needed = this.#delimiter.length + 1;
    const seam = Buffer.concat([this.#tail, bytes.subarray(0, needed)]);
    this.#scan(seam, this.#tail.length);
    if (!this.#closed) this.#scan(bytes, bytes.length);
    this.#tail =
      bytes.length >= needed
        ? Buffer.from(bytes.subarray(bytes.length - needed))
        : Buffer.concat([this.#tail, bytes]).subarray(-needed);
  }

  /**
   * Counts the delimiters in `bytes` that start before index `startLimit` and are followed by two
   * more bytes. Stops at the close delimiter. A delimiter without those two bytes lies in the
   * tail, so the next push counts it.
   */
  #scan(bytes: Buffer, startLimit: number): void {
    let index = bytes.indexOf(this.#delimiter);
    while (index >= 0 && index < startLimit) {
      const after = index + this.#delimiter.length;
      if (after + 2 > bytes.length) return;
      this.#count++;
      if (bytes[after] === DASH && bytes[after + 1] === DASH) {
        this.#closed = true;
        return;
      }
      index = bytes.indexOf(this.#delimiter, after);
    }
  }
}

const DASH = 0x2d;
