/**
 * Probes a local media file with ffprobe and chooses the one audio stream to convert.
 */
import { stat } from "node:fs/promises";
import { ConversionError, inputFailure, limitFailure, toolFailure } from "./failures.ts";
import { type RunLimits, runTool, safeInputArgs } from "./ffmpeg.ts";

/**
 * Options ahead of the ffprobe call on an upload. Unlike `FFPROBE_BASE_ARGS`, they keep warnings,
 * so that `inputFailure` can detect a format that libavformat guessed from a weak match.
 */
const PROBE_INPUT_BASE_ARGS = ["-hide_banner", "-v", "warning"] as const;

/** One stream as ffprobe reports it, reduced to the fields the converter uses. */
export interface ProbedStream {
  index: number;
  /** `audio`, `video`, `subtitle`, `data` or `attachment`. */
  codecType: string;
  /** Null when ffprobe found no decoder for the stream. */
  codecName: string | null;
  channels: number | null;
  sampleRateHz: number | null;
  /** First timestamp in seconds; an MP3 from LAME starts at its encoder delay. */
  startSeconds: number | null;
  /** Stream duration in seconds; many containers (Matroska, FLV) give none. */
  durationSeconds: number | null;
  isDefault: boolean;
  /** A still image such as cover art, which ffprobe lists as a video stream. */
  isAttachedPic: boolean;
}

/** What ffprobe found in a file, and the audio stream chosen for conversion. */
export interface ProbeResult {
  /** ffprobe's `format_name`, such as `mov,mp4,m4a,3gp,3g2,mj2`. */
  container: string;
  /** Duration the container header claims, in seconds; null when it gives none. */
  durationSeconds: number | null;
  /** First timestamp of the file in seconds, which is not 0 for a cut-out MPEG-TS segment. */
  startSeconds: number | null;
  streams: ProbedStream[];
  audio: ProbedStream;
  /** Names of the container's metadata tags, such as `title` or `major_brand`. */
  tagNames: string[];
}

export interface ProbeSettings extends RunLimits {
  ffprobePath: string;
}

function numberOrNull(value: unknown): number | null {
  const parsed = typeof value === "string" ? Number(value) : value;
  return typeof parsed === "number" && Number.isFinite(parsed) ? parsed : null;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}

function parseStream(raw: unknown): ProbedStream {
  const stream = record(raw);
  const disposition = record(stream.disposition);
  const codecName = typeof stream.codec_name === "string" ? stream.codec_name : null;
  return {
    index: numberOrNull(stream.index) ?? -1,
    codecType: typeof stream.codec_type === "string" ? stream.codec_type : "unknown",
    codecName: codecName === "none" ? null : codecName,
    channels: numberOrNull(stream.channels) || null,
    sampleRateHz: numberOrNull(stream.sample_rate) || null,
    startSeconds: numberOrNull(stream.start_time),
    durationSeconds: numberOrNull(stream.duration),
    isDefault: disposition.default === 1,
    isAttachedPic: disposition.attached_pic === 1,
  };
}

/** Parses ffprobe's `-print_format json -show_format -show_streams` output. */
export function parseProbeOutput(json: string): Omit<ProbeResult, "audio"> {
  const root = record(JSON.parse(json));
  const format = record(root.format);
  const streams = Array.isArray(root.streams) ? root.streams.map(parseStream) : [];
  return {
    container: typeof format.format_name === "string" ? format.format_name : "unknown",
    durationSeconds: numberOrNull(format.duration),
    startSeconds: numberOrNull(format.start_time),
    streams,
    tagNames: Object.keys(record(format.tags)),
  };
}

/** Whether ffmpeg has a decoder and a usable layout for an audio stream. */
function isDecodable(stream: ProbedStream): boolean {
  return stream.codecName !== null && stream.channels !== null && stream.sampleRateHz !== null;
}

/**
 * Chooses the audio stream to convert: among decodable audio streams, the first one flagged
 * `default`, else the first one. Cover art (`attached_pic`) never counts, and only one stream is
 * ever chosen, so two tracks are never mixed or joined.
 */
export function chooseAudioStream(streams: readonly ProbedStream[]): ProbedStream {
  const audio = streams.filter((s) => s.codecType === "audio" && !s.isAttachedPic);
  if (audio.length === 0) {
    throw new ConversionError(
      "no_audio",
      "The video has no audio track, so there is nothing to convert to MP3. Upload a file " +
        "that plays with sound.",
    );
  }
  const decodable = audio.filter(isDecodable);
  const chosen = decodable.find((s) => s.isDefault) ?? decodable[0];
  if (!chosen) {
    throw new ConversionError(
      "no_decodable_audio",
      "The file describes an audio track, but it is in a codec that cannot be decoded. Export " +
        "the file again with AAC, MP3 or Opus audio and upload it again.",
    );
  }
  return chosen;
}

/** Probes `path` and chooses its audio stream; throws `ConversionError` for a bad input. */
export async function probeMedia(path: string, settings: ProbeSettings): Promise<ProbeResult> {
  const info = await stat(path);
  if (info.size === 0) {
    throw new ConversionError("empty_file", "The file is empty (0 bytes). Upload it again.");
  }

  const args = [
    ...PROBE_INPUT_BASE_ARGS,
    "-print_format",
    "json",
    "-show_format",
    "-show_streams",
    ...safeInputArgs(path),
  ];
  const run = await runTool(settings.ffprobePath, args, settings);
  if (run.aborted || run.interrupted) {
    throw new Error(`ffprobe was stopped before it finished (${run.exitSignal ?? "shutdown"})`);
  }
  const limited = limitFailure(run, settings.timeoutSeconds);
  if (limited) throw limited;
  if (run.exitCode !== 0 || run.stdoutOverflow) {
    throw inputFailure(run.stderrTail) ?? toolFailure("ffprobe", run);
  }

  const parsed = parseProbeOutput(run.stdout);
  return { ...parsed, audio: chooseAudioStream(parsed.streams) };
}
