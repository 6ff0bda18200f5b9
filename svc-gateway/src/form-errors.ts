/**
 * Errors of a rejected upload form. Every 400 carries `details.reason`, one of `FORM_PROBLEMS`,
 * so a client can tell the cases apart without parsing the message.
 */
import { AppError } from "@mp3converter/lib/errors";

/** Name of the form field that carries the file. */
export const FILE_FIELD = "file";

/** How to send an upload, quoted in every rejection of a malformed form. */
export const UPLOAD_HINT = `Send one file in a multipart/form-data field named "${FILE_FIELD}", for example: curl -F ${FILE_FIELD}=@video.mp4`;

/** Values of `details.reason` in a 400 for a malformed form. Clients rely on them, so never rename one. */
export const FORM_PROBLEMS = [
  /**
   * The Content-Type does not parse, or its `boundary` parameter is missing, repeated, empty,
   * over 70 characters or has characters that RFC 2046 does not allow.
   */
  "invalid_boundary",
  /** The form has no file part named `file`. */
  "no_file",
  /** The form has a second file part. */
  "multiple_files",
  /** The part named `file` is a text field, without a filename. */
  "file_sent_as_text",
  /** The file part has another name than `file`. */
  "wrong_field_name",
  /** A part's `Content-Disposition` has no `name` parameter. */
  "unnamed_part",
  /** A part busboy could not read: a bad header block or a bad delimiter line. */
  "malformed_part",
  /** The request has no body, or the body ends or the connection breaks before the close delimiter. */
  "incomplete_body",
  /** The body cannot be parsed as multipart/form-data for another reason. */
  "malformed_body",
  "too_many_parts",
  "too_many_fields",
  /** A text field is longer than the field size limit. */
  "field_too_long",
  /** The file part declares a Content-Transfer-Encoding that would have to be decoded, or two. */
  "unsupported_encoding",
] as const;

export type FormProblem = (typeof FORM_PROBLEMS)[number];

/** Builds the 400 for a malformed form: `problem` describes what is wrong, then how to upload. */
export function invalidForm(reason: FormProblem, problem: string): AppError {
  return new AppError("invalid_argument", `${problem} ${UPLOAD_HINT}`, { details: { reason } });
}

/** Raises 413 for a file over `maxBytes`, with the limit in the details. */
export function tooLarge(maxBytes: number): AppError {
  return new AppError(
    "payload_too_large",
    `The file is larger than the upload limit of ${maxBytes} bytes. Send a smaller file.`,
    { details: { max_bytes: maxBytes } },
  );
}

/**
 * Maps an error busboy emits to the 400 for it. The messages matched are those of busboy 1.6.0
 * (`lib/types/multipart.js`). Any other error becomes `malformed_body`.
 */
export function parserError(error: Error): AppError {
  switch (error.message) {
    case "Unexpected end of form":
    case "Unexpected end of file":
      return invalidForm(
        "incomplete_body",
        "The multipart/form-data body ends before its close delimiter (--boundary--).",
      );
    case "Malformed part header":
      return invalidForm(
        "malformed_part",
        "A part of the form has a malformed header block, such as a line without a colon or " +
          "headers over 16 KiB.",
      );
    default:
      return invalidForm("malformed_body", "The multipart/form-data body is malformed.");
  }
}
