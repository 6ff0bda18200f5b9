/**
 * Terminal conversion failures: a stable code from the shared list of job failure codes and a
 * sentence that tells the user what went wrong and what to do.
 */
import type { Failure } from "@mp3converter/lib/messages";
import type { RunResult } from "./ffmpeg.ts";

export type FailureCode =
  | "empty_file"
  | "unsupported_format"
  | "no_audio"
  | "no_decodable_audio"
  | "truncated"
  | "too_long"
  | "timed_out"
  | "resource_limit"
  | "conversion_failed"
  | "processing_failed"
  | "video_missing";

/**
 * A failure caused by the input, so retrying cannot help: the job fails with `failure`. Every
 * other error from the conversion core is treated as transient by the worker.
 */
export class ConversionError extends Error {
  readonly code: FailureCode;

  constructor(code: FailureCode, message: string) {
    super(message);
    this.name = "ConversionError";
    this.code = code;
  }

  /** The failure as carried in queue messages. */
  toFailure(): Failure {
    return { code: this.code, message: this.message };
  }
}

/** Maximum length of the ffmpeg excerpt quoted in a `conversion_failed` message. */
const EXCERPT_MAX_CHARS = 200;

/** Log-line prefix such as `[aac @ 0x55d6eec58fc0] `. */
const CONTEXT_PREFIX = /^\[[^\]]*@ 0x[0-9a-f]+\]\s*/i;

/** An absolute path, with or without the `file:` prefix, up to the next space, quote or colon. */
const ABSOLUTE_PATH = /(?:file:)?\/[^\s'":]+/g;

/**
 * Returns the last meaningful line of ffmpeg's stderr with paths replaced by `<file>`, so it can be
 * shown to a user. Returns an empty string when stderr has no such line.
 */
export function stderrExcerpt(stderrTail: string): string {
  const lines = stderrTail
    .split(/\r?\n/)
    .map((line) => line.replace(CONTEXT_PREFIX, "").trim())
    .filter((line) => line !== "" && !/^Last message repeated/.test(line))
    .filter((line) => !/^Conversion failed!?$/.test(line));
  const last = lines.at(-1) ?? "";
  const safe = last
    .replace(ABSOLUTE_PATH, "<file>")
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips terminal control bytes.
    .replace(/[\u0000-\u001f\u007f]/g, "");
  return safe.length > EXCERPT_MAX_CHARS ? `${safe.slice(0, EXCERPT_MAX_CHARS)}…` : safe;
}

/** Maps a run that was stopped by a limit to its failure, or returns null. */
export function limitFailure(run: RunResult, timeoutSeconds: number): ConversionError | null {
  if (run.timedOut) {
    return new ConversionError(
      "timed_out",
      `The conversion took longer than the limit of ${timeoutSeconds} seconds and was stopped. ` +
        "Try a shorter file, or a file in a more common format such as MP4 with AAC audio.",
    );
  }
  if (run.killedByLimit) {
    return new ConversionError(
      "resource_limit",
      "The conversion used more processing time or memory than allowed and was stopped. " +
        "Try a shorter file, or a file in a more common format such as MP4 with AAC audio.",
    );
  }
  return null;
}

/** Demuxers that read other files named inside the input; see `ALLOWED_DEMUXERS`. */
const INDIRECT_DEMUXERS = new Set([
  "hls",
  "dash",
  "concat",
  "image2",
  "image2pipe",
  "vobsub",
  "webm_dash_manifest",
]);

/**
 * The warning libavformat prints when no demuxer recognised the input and it guessed one from a
 * weak match (a probe score at or below AVPROBE_SCORE_RETRY, 25). Random bytes often match the
 * MP3 or MPEG-TS probe this way, and the demuxer then fails with EINVAL or EOF. With ffmpeg 5.1,
 * real MP3, ADTS AAC and MPEG-TS files without a file name extension scored 50 or 51.
 */
const LOW_PROBE_SCORE = /Format (\S+) detected only with low score of \d+, misdetection possible/;

/**
 * Failure for stderr lines that show the input is not a file ffmpeg may read. ffmpeg prints the
 * low-score warning at the `warning` log level, so a run at `-v error` never shows it.
 */
export function inputFailure(stderrTail: string): ConversionError | null {
  if (LOW_PROBE_SCORE.test(stderrTail)) {
    return new ConversionError(
      "unsupported_format",
      "The file is not a video or audio file: its contents match no known media format. Check " +
        "that you chose the right file, and upload a video or audio file, for example MP4, MKV, " +
        "WebM, MP3 or WAV.",
    );
  }
  const notAllowed = /\[([\w,]+) @ 0x[0-9a-f]+\] Format not on whitelist/i.exec(stderrTail);
  if (notAllowed) {
    const demuxer = notAllowed[1] as string;
    if (INDIRECT_DEMUXERS.has(demuxer)) {
      return new ConversionError(
        "unsupported_format",
        `The file is a playlist or list of other files (${demuxer}), not a media file. Upload ` +
          "the video or audio file itself, for example MP4, MKV, WebM, MP3 or WAV.",
      );
    }
    return new ConversionError(
      "unsupported_format",
      `The file is not in an accepted video or audio format (it reads as ${demuxer}). Upload ` +
        "a video or audio file, for example MP4, MKV, WebM, MP3 or WAV.",
    );
  }
  if (/moov atom not found/.test(stderrTail)) {
    return new ConversionError(
      "truncated",
      "The MP4 file is incomplete: its index (the moov atom) is missing, which usually means " +
        "the upload or the recording was cut off. Upload the complete file again.",
    );
  }
  if (/Invalid data found when processing input/.test(stderrTail)) {
    return new ConversionError(
      "unsupported_format",
      "The file is not a video or audio file that can be read. Check that it plays on your " +
        "device and upload it again, for example as MP4, MKV, WebM, MP3 or WAV.",
    );
  }
  return null;
}

/** Failure for an ffmpeg or ffprobe run that ended with an error not covered above. */
export function toolFailure(tool: string, run: RunResult): ConversionError {
  const excerpt = stderrExcerpt(run.stderrTail);
  const detail = excerpt === "" ? `exit status ${run.exitCode ?? run.exitSignal}` : excerpt;
  return new ConversionError(
    "conversion_failed",
    `The audio could not be converted (${tool}: ${detail}). Try another copy of the file, or ` +
      "export it again as MP4 with AAC audio.",
  );
}
