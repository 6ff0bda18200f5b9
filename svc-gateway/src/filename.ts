/** Display names of uploads and downloads. A filename is shown to people, never used as a path. */

/** Name recorded when an upload has no usable filename. */
export const DEFAULT_UPLOAD_FILENAME = "upload";

/** Maximum length of a stored filename, in Unicode code points. */
export const FILENAME_MAX_CHARS = 255;

// C0 and C1 controls, and the bidirectional formatting characters that can make a name display
// in a different order than it is stored.
const UNSAFE_CHARS = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/**
 * Cleans a client-supplied filename for display: keeps the last path segment, removes control
 * characters, applies Unicode NFC and caps the length. Returns the default name when nothing is
 * left.
 */
export function toDisplayFilename(raw: string | undefined): string {
  if (raw === undefined) return DEFAULT_UPLOAD_FILENAME;
  const segments = raw.split(/[/\\]/);
  const base = (segments[segments.length - 1] ?? "").replace(UNSAFE_CHARS, "").normalize("NFC");
  const capped = Array.from(base.trim()).slice(0, FILENAME_MAX_CHARS).join("").trim();
  return capped === "" || capped === "." || capped === ".." ? DEFAULT_UPLOAD_FILENAME : capped;
}

/** Derives the download name of the MP3 from the upload's name: `talk.mp4` becomes `talk.mp3`. */
export function toMp3Filename(uploadName: string): string {
  const dot = uploadName.lastIndexOf(".");
  // A leading dot starts a name such as `.hidden`, not an extension.
  const stem = dot > 0 ? uploadName.slice(0, dot) : uploadName;
  return `${stem || DEFAULT_UPLOAD_FILENAME}.mp3`;
}
