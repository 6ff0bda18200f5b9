/**
 * Counts the parts of a `multipart/form-data` body as it streams past, and keeps the header
 * block of each part. busboy skips a part whose `Content-Disposition` header is missing or
 * malformed, or whose delimiter line does not end right after the boundary, and emits no event
 * for it. The count of parts minus the parts busboy reported is therefore the number it skipped.
 * busboy also reports only the first of a repeated part header, so the gateway reads the header
 * blocks itself to find repeats.
 */

/** busboy caps each part's header block at 16 KiB (busboy 1.6.0, lib/types/multipart.js). */
export const PART_HEADER_MAX_BYTES = 16 * 1024;

/** A header field of a part, with the name lowercased and the value without surrounding whitespace. */
export interface PartHeader {
  name: string;
  value: string;
}

/**
 * Counts the delimiters (`CRLF--boundary`) in a body that arrives in chunks, up to and including
 * the close delimiter (`CRLF--boundary--`), and collects the header block after each delimiter
 * line. Like busboy, it ignores everything after the close delimiter, where RFC 2046 lets a body
 * carry an epilogue.
 */
export class PartScanner {
  readonly #delimiter: Buffer;
  /**
   * The last bytes seen, one longer than a delimiter. A delimiter that starts here was not counted
   * yet, because either its end or the two bytes that tell a close delimiter were missing.
   */
  #tail: Buffer;
  #count = 0;
  #closed = false;
  /** Header blocks of the parts, in body order. An entry is undefined until its block ends. */
  readonly #headerBlocks: Array<PartHeader[] | undefined> = [];
  /** The header block being read, which belongs to the last part. */
  #openBlock: HeaderBlockReader | undefined;

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

  /**
   * Returns the header fields of part `index` (0 for the first part) in the order they appear, or
   * undefined when its header block did not end with an empty line within 16 KiB. busboy rejects
   * such a part too.
   */
  headersOf(index: number): PartHeader[] | undefined {
    return this.#headerBlocks[index];
  }

  push(chunk: Uint8Array): void {
    if (this.#closed) return;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const headerStarts: number[] = [];
    // A delimiter that starts in the tail ends, with its two following bytes, in this seam.
    const needed = this.#delimiter.length + 1;
    const seam = Buffer.concat([this.#tail, bytes.subarray(0, needed)]);
    this.#scan(seam, this.#tail.length, -this.#tail.length, headerStarts);
    if (!this.#closed) this.#scan(bytes, bytes.length, 0, headerStarts);
    this.#readHeaderBlocks(bytes, headerStarts);
    this.#tail =
      bytes.length >= needed
        ? Buffer.from(bytes.subarray(bytes.length - needed))
        : Buffer.concat([this.#tail, bytes]).subarray(-needed);
  }

  /**
   * Counts the delimiters in `bytes` that start before index `startLimit` and are followed by two
   * more bytes. Stops at the close delimiter. A delimiter without those two bytes lies in the
   * tail, so the next push counts it. For every other delimiter, adds to `headerStarts` the index
   * in the chunk right after the two bytes, where the part's header block starts when the
   * delimiter line is well-formed. `chunkOffset` is the index in the chunk of `bytes[0]`.
   */
  #scan(bytes: Buffer, startLimit: number, chunkOffset: number, headerStarts: number[]): void {
    let index = bytes.indexOf(this.#delimiter);
    while (index >= 0 && index < startLimit) {
      const after = index + this.#delimiter.length;
      if (after + 2 > bytes.length) return;
      this.#count++;
      if (bytes[after] === DASH && bytes[after + 1] === DASH) {
        this.#closed = true;
        return;
      }
      // A delimiter that starts in the tail ends, with its two following bytes, past the tail,
      // so this index is never negative.
      headerStarts.push(after + 2 + chunkOffset);
      index = bytes.indexOf(this.#delimiter, after);
    }
  }

  /**
   * Feeds the open header block with the bytes of the chunk up to the next delimiter's header
   * start, then opens a block for that part. A block still open when the next part starts never
   * ended, and busboy rejects its part, so it stays undefined.
   */
  #readHeaderBlocks(bytes: Buffer, headerStarts: number[]): void {
    let position = 0;
    for (const start of headerStarts) {
      this.#feedOpenBlock(bytes.subarray(position, start));
      this.#headerBlocks.push(undefined);
      this.#openBlock = new HeaderBlockReader();
      position = start;
    }
    this.#feedOpenBlock(bytes.subarray(position));
  }

  #feedOpenBlock(bytes: Buffer): void {
    const block = this.#openBlock;
    if (!block || bytes.length === 0) return;
    const state = block.push(bytes);
    if (state === "reading") return;
    if (state === "complete") this.#headerBlocks[this.#headerBlocks.length - 1] = block.headers();
    this.#openBlock = undefined;
  }
}

/**
 * Collects one part's header block, which ends at the first empty line. The block is read as if
 * a CRLF came before it, so a block that starts with the empty line ends right there.
 */
class HeaderBlockReader {
  readonly #chunks: Buffer[] = [];
  #length = 0;
  /** The last three bytes read, to find an end that spans two pushes. */
  #tail = Buffer.from("\r\n");

  /** Adds `bytes` and returns whether the block is complete, still reading or over the limit. */
  push(bytes: Buffer): "complete" | "reading" | "too_long" {
    const room = PART_HEADER_MAX_BYTES - this.#length;
    const window = Buffer.concat([this.#tail, bytes.subarray(0, room)]);
    const end = window.indexOf(HEADER_BLOCK_END);
    const blockBytes = window.subarray(
      this.#tail.length,
      end >= 0 ? end + HEADER_BLOCK_END.length : window.length,
    );
    this.#chunks.push(Buffer.from(blockBytes));
    this.#length += blockBytes.length;
    if (end >= 0) return "complete";
    if (this.#length >= PART_HEADER_MAX_BYTES) return "too_long";
    this.#tail = Buffer.from(window.subarray(-3));
    return "reading";
  }

  /**
   * Parses the complete block into header fields. A folded line (obs-fold) continues the
   * previous value. Lines that are not `name: value` are left out, since busboy rejects the
   * whole body for them.
   */
  headers(): PartHeader[] {
    const text = Buffer.concat(this.#chunks).toString("latin1");
    const headers: PartHeader[] = [];
    for (const line of text.split("\r\n")) {
      const last = headers[headers.length - 1];
      if ((line.startsWith(" ") || line.startsWith("\t")) && last) {
        last.value = `${last.value} ${line.trim()}`.trim();
        continue;
      }
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      headers.push({
        name: line.slice(0, colon).toLowerCase(),
        value: line.slice(colon + 1).trim(),
      });
    }
    return headers;
  }
}

const DASH = 0x2d;
const HEADER_BLOCK_END = Buffer.from("\r\n\r\n");
