/**
 * Streams the one file part of a `multipart/form-data` request into blob storage with busboy, so
 * the file is never held in memory. Either the whole file is stored and the whole body was read
 * and found well-formed, or the call throws and nothing of the file remains in storage.
 *
 * The form is strict: exactly one file part named `file`, no part that busboy could not read
 * (busboy skips those silently), no unnamed part, no text field over the size limit and a close
 * delimiter at the end. Well-formed text fields with other names are allowed and ignored, so an
 * HTML form with extra inputs still uploads. Bytes before the first delimiter (the preamble) and
 * after the close delimiter (the epilogue) are ignored, as RFC 2046 allows.
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
import { readBoundary } from "./content-type.ts";
import { toDisplayFilename } from "./filename.ts";
import { FILE_FIELD, invalidForm, parserError, tooLarge } from "./form-errors.ts";
import { PART_HEADER_MAX_BYTES, PartScanner } from "./multipart-delimiters.ts";

/** Limits on the non-file parts of the form; they also bound the multipart overhead. */
const FORM_LIMITS = {
  parts: 8,
  fields: 7,
  fieldNameSize: 100,
  fieldSize: 1024,
  headerPairs: 16,
} as const;

/**
 * Content-Transfer-Encoding values that leave the bytes as they are. RFC 7578 deprecates the
 * header, and busboy passes the bytes on undecoded, so a file in base64 would be stored as text.
 */
const IDENTITY_ENCODINGS = new Set(["7bit", "8bit", "binary"]);

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

/**
 * Builds the Content-Type that busboy parses from the boundary the gateway read. busboy 1.6.0
 * parses some values differently from RFC 9110: it keeps the first of a repeated parameter and
 * keeps the backslash of an escape such as `\a`. Handing it only this value makes busboy split
 * the body on the same boundary that PartScanner counts. A boundary has no `"` or `\`, so
 * quoting it needs no escapes.
 */
function toBusboyHeaders(boundary: string): Record<string, string> {
  return { "content-type": `multipart/form-data; boundary="${boundary}"` };
}

/**
 * Receives the single file part of `request` into `options.store`. Rejects with an `AppError`:
 * 400 for a missing, second or misnamed file part or a malformed form (see the module comment),
 * 413 when the file passes `maxBytes`. Resolves only after the whole body was parsed, so a
 * second file part or a malformed part after the file is caught.
 */
export function receiveSingleFile(
  request: Request,
  options: ReceiveOptions,
): Promise<ReceivedFile> {
  const boundary = readBoundary(request.headers.get("content-type") ?? "");
  if ("problem" in boundary) {
    return Promise.reject(invalidForm("invalid_boundary", boundary.problem));
  }
  if (!request.body) {
    return Promise.reject(
      invalidForm(
        "incomplete_body",
        "The request has no body, so it ends before the first delimiter (--boundary).",
      ),
    );
  }
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: toBusboyHeaders(boundary.boundary),
      // busboy reports partsLimit at the delimiter that ends part number `parts`, even when that
      // is the close delimiter. It also marks a field of exactly `fieldSize` bytes truncated.
      // One more in each lets a form that is exactly at FORM_LIMITS through.
      limits: {
        ...FORM_LIMITS,
        parts: FORM_LIMITS.parts + 1,
        fieldSize: FORM_LIMITS.fieldSize + 1,
        files: 1,
      },
      // Clients such as curl send UTF-8 filenames without RFC 2231 encoding.
      defParamCharset: "utf8",
    });
  } catch {
    return Promise.reject(
      invalidForm("invalid_boundary", "The multipart/form-data boundary is missing or invalid."),
    );
  }
  const source = Readable.fromWeb(request.body as unknown as NodeReadableStream<Uint8Array>);
  const scanner = new PartScanner(boundary.boundary);
  return new FileReception(source, parser, scanner, options).run();
}

/** One run of the parser over one request body; settles exactly once. */
class FileReception {
  readonly #source: Readable;
  readonly #parser: busboy.Busboy;
  readonly #options: ReceiveOptions;
  readonly #scanner: PartScanner;
  /** Parts busboy reported as a file or a field. */
  #reportedParts = 0;
  /** Index among the reported parts of the file part. */
  #filePartIndex: number | undefined;
  #fileStream: Readable | undefined;
  #put: Promise<BlobInfo> | undefined;
  #received: Omit<ReceivedFile, "blob"> | undefined;
  #failure: AppError | undefined;
  #bodyBytes = 0;
  #settle: { resolve(file: ReceivedFile): void; reject(error: unknown): void } | undefined;

  constructor(
    source: Readable,
    parser: busboy.Busboy,
    scanner: PartScanner,
    options: ReceiveOptions,
  ) {
    this.#source = source;
    this.#parser = parser;
    this.#scanner = scanner;
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
    parser.on("field", (name, _value, info) => this.#onField(name, info));
    parser.on("filesLimit", () =>
      this.#fail(invalidForm("multiple_files", "The form contains more than one file.")),
    );
    parser.on("partsLimit", () =>
      this.#fail(
        invalidForm("too_many_parts", `The form contains more than ${FORM_LIMITS.parts} parts.`),
      ),
    );
    parser.on("fieldsLimit", () =>
      this.#fail(
        invalidForm(
          "too_many_fields",
          `The form contains more than ${FORM_LIMITS.fields} text fields.`,
        ),
      ),
    );
    parser.on("error", (error: Error) => this.#fail(parserError(error)));
    parser.on("close", () => void this.#onParserClose());
    this.#source.on("data", (chunk: Buffer) => {
      this.#countBodyBytes(chunk.byteLength);
      this.#scanner.push(chunk);
    });
    this.#source.on("error", (error) => {
      this.#options.log.warn({ err: { message: error.message } }, "upload body stream failed");
      this.#fail(
        new AppError(
          "invalid_argument",
          "The upload ended before the body was complete. Send the whole file again.",
          { details: { reason: "incomplete_body" } },
        ),
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
    const partIndex = this.#reportedParts++;
    // The store reads the errors through its iterator; without a listener, an error emitted
    // while no read is pending would be an uncaught exception.
    stream.on("error", () => {});
    if (this.#failure) {
      stream.resume();
      return;
    }
    // busboy 1.6.0 reports a part without a name parameter with the name undefined.
    if (!name) {
      stream.resume();
      this.#fail(unnamedPart());
      return;
    }
    if (name !== FILE_FIELD) {
      stream.resume();
      this.#fail(
        invalidForm(
          "wrong_field_name",
          `The form field "${name.slice(0, 100)}" is not "${FILE_FIELD}".`,
        ),
      );
      return;
    }
    if (!IDENTITY_ENCODINGS.has(info.encoding)) {
      stream.resume();
      this.#fail(unsupportedEncoding(`Content-Transfer-Encoding "${info.encoding.slice(0, 40)}"`));
      return;
    }
    this.#filePartIndex = partIndex;
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

  /** Checks a text field. A well-formed field with another name than `file` is ignored. */
  #onField(name: string, info: busboy.FieldInfo): void {
    this.#reportedParts++;
    if (!name) {
      this.#fail(unnamedPart());
    } else if (name === FILE_FIELD) {
      this.#fail(
        invalidForm(
          "file_sent_as_text",
          `The field "${FILE_FIELD}" was sent as text, not as a file.`,
        ),
      );
    } else if (info.valueTruncated) {
      this.#fail(
        invalidForm(
          "field_too_long",
          `The form field "${name.slice(0, 100)}" is longer than ${FORM_LIMITS.fieldSize} bytes. ` +
            "Shorten it or leave it out.",
        ),
      );
    }
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

  /**
   * Settles once busboy has parsed the whole body. A part busboy skipped fails the upload even
   * when the file part was fine, and #fail then deletes the stored file.
   */
  async #onParserClose(): Promise<void> {
    if (this.#failure) return;
    const skipped = this.#scanner.parts - this.#reportedParts;
    if (skipped > 0) {
      this.#fail(
        invalidForm(
          "malformed_part",
          "The form contains a part whose Content-Disposition header is missing or malformed, " +
            "for example a filename with an unescaped quote, or whose delimiter line has " +
            'characters after the boundary. Escape a quote in a filename as \\".',
        ),
      );
      return;
    }
    if (!this.#put || !this.#received || this.#filePartIndex === undefined) {
      this.#fail(invalidForm("no_file", `The form has no file part named "${FILE_FIELD}".`));
      return;
    }
    // With no part skipped, busboy reported the parts in body order, so the file part's index
    // among them is its index in the body.
    const encodings = (this.#scanner.headersOf(this.#filePartIndex) ?? []).filter(
      (header) => header.name === "content-transfer-encoding",
    );
    if (encodings.length > 1) {
      this.#fail(unsupportedEncoding(`${encodings.length} Content-Transfer-Encoding headers`));
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

/** Builds the 400 for a file part whose Content-Transfer-Encoding `found` the gateway cannot use. */
function unsupportedEncoding(found: string): AppError {
  return invalidForm(
    "unsupported_encoding",
    `The file part has ${found}, but the gateway stores the bytes as sent and decodes no ` +
      "transfer encoding. Send the file bytes without that header.",
  );
}

function unnamedPart(): AppError {
  return invalidForm(
    "unnamed_part",
    'The form contains a part whose Content-Disposition has no name, such as form-data; name="file".',
  );
}
