/**
 * Blob storage port for uploaded videos and produced MP3s. Production: MongoDB GridFS
 * (`mongodb://`, `mongodb+srv://`), one bucket each for videos and MP3s. Embedded: files in a
 * directory (`file:`).
 */

export const BUCKETS = ["videos", "mp3s"] as const;
export type Bucket = (typeof BUCKETS)[number];

/** Metadata of a stored blob. */
export interface BlobInfo {
  id: string;
  bucket: Bucket;
  filename: string;
  contentType: string;
  size: number;
  createdAt: Date;
}

export interface PutOptions {
  /** Id to store the blob under; a fresh random id when absent. */
  id?: string;
  /** The name shown to people; never used as a path. */
  filename: string;
  contentType: string;
  /** The put fails with `BlobTooLargeError` as soon as the source passes this many bytes. */
  maxBytes?: number;
}

/** Inclusive byte range, already checked against the blob's size. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * A blob opened for reading: its bytes, or those of the requested range, as a stream and, when
 * the store can offer them without buffering, as a `Blob` too. A reader uses one of the two.
 */
export interface OpenedBlob {
  info: BlobInfo;
  /**
   * The bytes as a stream. A store that also sets `blob` opens nothing for the stream until its
   * first read, so a reader that sends `blob` may drop the stream without cancelling it.
   */
  stream: ReadableStream<Uint8Array>;
  /**
   * The same bytes as a `Blob` that the runtime reads from storage while it sends them. Bun 1.4
   * sends a `Blob` body with its `Content-Length`, but a stream that yields its chunks
   * asynchronously is sent chunked, without it. Absent when the store has no such `Blob`, as with
   * GridFS, or when the runtime would read the whole blob into memory to make one.
   */
  blob?: Blob;
}

/** Pattern every blob id matches; ids become file names in the `file:` store. */
export const BLOB_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/** Whether `id` is usable as a blob id: it matches `BLOB_ID_PATTERN` and is not `.` or `..`. */
export function isValidBlobId(id: string): boolean {
  return BLOB_ID_PATTERN.test(id) && id !== "." && id !== "..";
}

/** Raised by every store method given an id that `isValidBlobId` rejects. */
export class InvalidBlobIdError extends Error {
  constructor(id: string, reason?: string) {
    super(
      `invalid blob id ${JSON.stringify(id.slice(0, 140))}; ` +
        (reason ??
          "expected 1 to 128 characters from A-Z, a-z, 0-9, '.', '_' and '-', " +
            "other than '.' and '..'"),
    );
    this.name = "InvalidBlobIdError";
  }
}

export class BlobTooLargeError extends Error {
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    super(`blob is larger than the limit of ${maxBytes} bytes`);
    this.name = "BlobTooLargeError";
    this.maxBytes = maxBytes;
  }
}

export class BlobExistsError extends Error {
  constructor(bucket: Bucket, id: string) {
    super(`blob ${bucket}/${id} exists already`);
    this.name = "BlobExistsError";
  }
}

export interface BlobStore {
  /**
   * Streams `source` into a new blob with backpressure. On any failure (source error, size limit,
   * storage error) nothing of the blob remains and the error is rethrown. A blob becomes visible
   * to `stat` and `open` only once it is complete.
   */
  put(bucket: Bucket, source: AsyncIterable<Uint8Array>, options: PutOptions): Promise<BlobInfo>;
  stat(bucket: Bucket, id: string): Promise<BlobInfo | null>;
  /** Opens a complete blob, or `range` of it; null when no such blob exists. */
  open(bucket: Bucket, id: string, range?: ByteRange): Promise<OpenedBlob | null>;
  /** Deletes a blob; false when there was none. */
  delete(bucket: Bucket, id: string): Promise<boolean>;
  /** Rejects when the store cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
