/**
 * Streams the one file part of a `multipart/form-data` request into blob storage with busboy, so
 * the file is never held in memory. Either the whole file is stored and the request body was
 * read to its end, or the call throws and nothing of the file remains in storage.
 */
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { AppError } from "@mp3converter/lib/errors";
import type { Logger } from "@mp3converter/lib/log";
import {
  type BlobInfo,
  type BlobStore,
  BlobTooLargeError,
  type Bucket,
} from "@mp3converter/lib/ports/storage";
import busboy from "busboy";
import { toDisplayFilename } from "./filename.ts";
import { boundaryOf, DelimiterCounter } from "./multipart-delimiters.ts";

/** Name of the form field that carries the file. */
export const FILE_FIELD = "file";

/** How to send an upload, quoted in every rejection of a malformed form. */
export const UPLOAD_HINT = `Send one file in a multipart/form-data field named "${FILE_FIELD}", for example: curl -F ${FILE_FIELD}=@video.mp4`;

/** Limits on the non-file parts of the form; they also bound the multipart overhead. */
const FORM_LIMITS = {
  parts: 8,
  fields: 7,
  fieldNameSize: 100,
  fieldSize: 1024,
  headerPairs: 16,
} as const;

/** busboy caps each part's header block at 16 KiB (busboy 1.6.0, lib/types/multipart.js). */
const PART_HEADER_MAX_BYTES = 16 * 1024;

/**
 * Largest number of bytes a request may carry beyond the file itself: the part headers, the
 * allowed fields and the boundaries, rounded up.
 */
export const MULTIPART_OVERHEAD_BYTES =
  FORM_LIMITS.parts * (PART_HEADER_MAX_BYTES + FORM_LIMITS.fieldSize + 256) + 4096;

/** The stored file and what the client said about it. */
export interface ReceivedFile {
  blob: BlobInfo;
  /** Display name, already cleaned by `toDisplayFilename`. */
  filename: string;
  /** The part's declared type; recorded only, never trusted. */
  contentType: string;
}

export interface ReceiveOptions {
  store: BlobStore;
  bucket: Bucket;
  maxBytes: number;
  log: Logger;
}

/** Returns true when the request declares a `multipart/form-data` body. */
export function isMultipartFormData(request: Request): boolean {
  const type = request.headers.get("content-type") ?? "";
  return type.split(";")[0]?.trim().toLowerCase() === "multipart/form-data";
}

function invalidForm(problem: string): AppError {
  return new AppError("invalid_argument", `${problem} ${UPLOAD_HINT}`);
}

/** Raises 413 for a file over `maxBytes`, with the limit in the details. */
export function tooLarge(maxBytes: number): AppError {
  return new AppError(
    "payload_too_large",
    `The file is larger than the upload limit of ${maxBytes} bytes. Send a smaller file.`,
    { details: { max_bytes: maxBytes } },
  );
}

function toBusboyHeaders(request: Request): Record<string, string> {
  return { "content-type": request.headers.get("content-type") ?? "" };
}

/**
 * Receives the single file part of `request` into `options.store`. Rejects with an `AppError`:
 * 400 for a missing, second or misnamed file part or a malformed form, 413 when the file passes
 * `maxBytes`. Resolves only after the whole body was parsed, so a second file part is caught.
 */
export function receiveSingleFile(
  request: Request,
  options: ReceiveOptions,
): Promise<ReceivedFile> {
  if (!request.body) return Promise.reject(invalidForm("The request has no body."));
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: toBusboyHeaders(request),
      limits: { ...FORM_LIMITS, files: 1 },
      // Clients such as curl send UTF-8 filenames without RFC 2231 encoding.
      defParamCharset: "utf8",
    });
  } catch {
    return Promise.reject(invalidForm("The multipart/form-data boundary is missing or invalid."));
  }
  const source = Readable.fromWeb(request.body as unknown as NodeReadableStream<Uint8Array>);
  const boundary = boundaryOf(request.headers.get("content-type") ?? "");
  const delimiters = boundary === undefined ? undefined : new DelimiterCounter(boundary);
  return new FileReception(source, parser, delimiters, options).run();
}

/** One run of the parser over one request body; settles exactly once. */
class FileReception {
  readonly #source: Readable;
  readonly #parser: busboy.Busboy;
  readonly #options: ReceiveOptions;
  readonly #delimiters: DelimiterCounter | undefined;
  /** Parts busboy reported as a file or a field. */
  #reportedParts = 0;
  #fileStream: Readable | undefined;
  #put: Promise<BlobInfo> | undefined;
  #received: Omit<ReceivedFile, "blob"> | undefined;
  #failure: AppError | undefined;
  #bodyBytes = 0;
  #settle: { resolve(file: ReceivedFile): void; reject(error: unknown): void } | undefined;

  constructor(
    source: Readable,
    parser: busboy.Busboy,
    delimiters: DelimiterCounter | undefined,
    options: ReceiveOptions,
  ) {
    this.#source = source;
    this.#parser = parser;
    this.#delimiters = delimiters;
    this.#options = options;
  }

  run(): Promise<ReceivedFile> {
    return new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
      this.#listen();
      this.#source.pipe(this.#parser);
    });
  }

  #listen(): void {
    const parser = this.#parser;
    parser.on("file", (name, stream, info) => this.#onFile(name, stream, info));
    parser.on("field", (name) => this.#onField(name));
    parser.on("filesLimit", () => this.#fail(invalidForm("The form contains more than one file.")));
    parser.on("partsLimit", () => this.#fail(invalidForm("The form contains too many parts.")));
    parser.on("fieldsLimit", () => this.#fail(invalidForm("The form contains too many fields.")));
    parser.on("error", () => this.#fail(invalidForm("The multipart/form-data body is malformed.")));
    parser.on("close", () => void this.#onParserClose());
    this.#source.on("data", (chunk: Buffer) => {
      this.#countBodyBytes(chunk.byteLength);
      this.#delimiters?.push(chunk);
    });
    this.#source.on("error", (error) => {
      this.#options.log.warn({ err: { message: error.message } }, "upload body stream failed");
      this.#fail(
        new AppError("invalid_argument", "The upload ended before the body was complete."),
      );
    });
  }

  /**
   * Caps the whole body, framing included. The store caps the file, but busboy skips bytes after
   * the closing boundary, so without this a client could keep a request streaming forever.
   */
  #countBodyBytes(byteLength: number): void {
    this.#bodyBytes += byteLength;
    if (this.#bodyBytes > this.#options.maxBytes + MULTIPART_OVERHEAD_BYTES) {
      this.#fail(tooLarge(this.#options.maxBytes));
    }
  }

  #onFile(name: string, stream: Readable, info: busboy.FileInfo): void {
    this.#reportedParts++;
    // The store reads the errors through its iterator; without a listener, an error emitted
    // while no read is pending would be an uncaught exception.
    stream.on("error", () => {});
    if (this.#failure) {
      stream.resume();
      return;
    }
    if (name !== FILE_FIELD) {
      stream.resume();
      this.#fail(invalidForm(`The form field "${name.slice(0, 100)}" is not "${FILE_FIELD}".`));
      return;
    }
    const filename = toDisplayFilename(info.filename);
    const contentType = info.mimeType || "application/octet-stream";
    this.#fileStream = stream;
    this.#received = { filename, contentType };
    this.#put = this.#options.store.put(this.#options.bucket, stream, {
      filename,
      contentType,
      maxBytes: this.#options.maxBytes,
    });
    this.#put.catch((error: unknown) => this.#fail(this.#mapPutError(error)));
  }

  #onField(name: string): void {
    this.#reportedParts++;
    if (name !== FILE_FIELD) return;
    this.#fail(invalidForm(`The field "${FILE_FIELD}" was sent as text, not as a file.`));
  }

  #mapPutError(error: unknown): AppError {
    if (error instanceof BlobTooLargeError) return tooLarge(this.#options.maxBytes);
    if (error instanceof AppError) return error;
    // A storage failure, or the file stream destroyed by #fail; only the former is logged here.
    if (!this.#failure) {
      this.#options.log.error({ err: { message: String(error) } }, "storing the upload failed");
    }
    return new AppError("unavailable", "Storing the upload failed. Try again later.", {
      cause: error,
    });
  }

  async #onParserClose(): Promise<void> {
    if (this.#failure) return;
    if (!this.#put || !this.#received) {
      this.#fail(invalidForm(this.#missingFileProblem()));
      return;
    }
    try {
      const blob = await this.#put;
      if (this.#failure) return;
      this.#settle?.resolve({ blob, ...this.#received });
    } catch {
      // #put's own rejection handler has already called #fail.
    }
  }

  /** Returns why the form has no file part: a part header busboy skipped, or no such part. */
  #missingFileProblem(): string {
    const skipped = (this.#delimiters?.parts ?? 0) - this.#reportedParts;
    if (skipped > 0) {
      return (
        "The form contains a part whose Content-Disposition header is missing or malformed, " +
        'for example a filename with an unescaped quote. Escape a quote in a filename as \\".'
      );
    }
    return `The form has no file part named "${FILE_FIELD}".`;
  }

  /** Stops reading the body, removes any stored part of the file, then rejects with `error`. */
  #fail(error: AppError): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#source.unpipe(this.#parser);
    this.#source.destroy();
    this.#parser.removeAllListeners("file");
    this.#fileStream?.destroy(new Error(`upload rejected: ${error.code}`));
    void this.#discardBlob().then(() => this.#settle?.reject(error));
  }

  async #discardBlob(): Promise<void> {
    if (!this.#put) return;
    try {
      const blob = await this.#put;
      await this.#options.store.delete(this.#options.bucket, blob.id);
    } catch {
      // The put failed, and by the store's contract nothing of the blob remains.
    }
  }
}
