/**
 * Converts the chosen audio stream of a local media file to MP3 with ffmpeg and libmp3lame.
 */
import { copyFile, mkdtemp, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ConversionError, inputFailure, limitFailure, toolFailure } from "./failures.ts";
import { FFMPEG_BASE_ARGS, FFPROBE_BASE_ARGS, runTool, safeInputArgs } from "./ffmpeg.ts";
import { type ProbedStream, type ProbeResult, parseProbeOutput, probeMedia } from "./probe.ts";

/** Settings of one conversion, taken from the converter's configuration. */
export interface ConvertSettings {
  ffmpegPath: string;
  ffprobePath: string;
  /** Directory for temporary files; each conversion uses its own subdirectory. */
  workDir: string;
  /** Inputs whose probed duration is longer fail with `too_long`; the output is cut there too. */
  maxInputSeconds: number;
  /** Wall-clock limit for each ffmpeg and ffprobe run. */
  timeoutSeconds: number;
  /** CPU-time limit for each ffmpeg and ffprobe run. */
  cpuSeconds: number;
  /** LAME VBR quality for `-q:a`, 0 (best) to 9. */
  mp3Quality: number;
  /** Kills a running ffmpeg when aborted. */
  signal?: AbortSignal;
}

/** An MP3 in a temporary file; call `dispose` once it has been stored. */
export interface ConvertedMp3 {
  path: string;
  sizeBytes: number;
  /** Duration measured on the MP3 itself, in seconds. */
  durationSeconds: number;
  channels: number;
  sampleRateHz: number;
  /** Sentences a person should see, such as a note that the input ended early. */
  warnings: string[];
  probe: ProbeResult;
  /** Deletes the temporary file and its directory. */
  dispose(): Promise<void>;
}

/** Sample rates an MP3 can have (MPEG-1, MPEG-2 and MPEG-2.5 Layer III), in Hz. */
export const MP3_SAMPLE_RATES_HZ = [
  8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000,
] as const;

/**
 * Output that falls short of the container's duration by more than this fraction and by more
 * than `EARLY_END_MIN_GAP_SECONDS` gets a warning. Both bounds are needed because many files
 * have audio a little shorter than their video.
 */
const EARLY_END_MIN_RATIO = 0.9;
const EARLY_END_MIN_GAP_SECONDS = 2;

/** Returns the output sample rate for an input rate, or null to keep the input rate. */
export function outputSampleRate(inputHz: number | null): number | null {
  if (inputHz === null) return null;
  if ((MP3_SAMPLE_RATES_HZ as readonly number[]).includes(inputHz)) return null;
  const maxHz = MP3_SAMPLE_RATES_HZ[MP3_SAMPLE_RATES_HZ.length - 1] as number;
  if (inputHz > maxHz) return inputHz % 44100 === 0 ? 44100 : maxHz;
  // Between two supported rates, go up, which keeps every frequency of the input.
  return MP3_SAMPLE_RATES_HZ.find((rate) => rate > inputHz) ?? maxHz;
}

/**
 * Container tags that mean nothing in an MP3 (MP4 brands, handler names) and tags with the place
 * where a phone recorded the video, which the user may not expect to find in the audio file.
 */
const DROPPED_TAG =
  /^(major_brand|minor_version|compatible_brands|handler_name|vendor_id)$|location/i;

/** Returns the input tags that the MP3 leaves out; every other tag is copied. */
export function tagsToDrop(tagNames: readonly string[]): string[] {
  return tagNames.filter((name) => DROPPED_TAG.test(name));
}

/**
 * Builds the ffmpeg arguments that convert stream `audio` of `inputPath` to `outputPath`,
 * copying the container's tags except `droppedTags`.
 */
export function ffmpegArgs(
  inputPath: string,
  outputPath: string,
  audio: ProbedStream,
  settings: Pick<ConvertSettings, "maxInputSeconds" | "mp3Quality">,
  droppedTags: readonly string[] = [],
): string[] {
  const args = [
    ...FFMPEG_BASE_ARGS,
    ...safeInputArgs(inputPath),
    "-map",
    `0:${audio.index}`,
    "-vn",
    "-sn",
    "-dn",
    "-map_metadata",
    "0",
    // An empty value removes a tag that -map_metadata copied.
    ...droppedTags.flatMap((name) => ["-metadata", `${name}=`]),
    "-t",
    String(settings.maxInputSeconds),
  ];
  if (audio.channels !== null && audio.channels > 2) args.push("-ac", "2");
  const rate = outputSampleRate(audio.sampleRateHz);
  if (rate !== null) args.push("-ar", String(rate));
  args.push(
    "-c:a",
    "libmp3lame",
    "-q:a",
    String(settings.mp3Quality),
    // ID3v2.3 is the version most players read; ffmpeg writes non-Latin-1 text in it as UTF-16.
    "-id3v2_version",
    "3",
    "-write_id3v1",
    "0",
    "-f",
    "mp3",
    "-y",
    `file:${outputPath}`,
  );
  return args;
}

function tooLong(probe: ProbeResult, maxInputSeconds: number): ConversionError | null {
  const claimed = probe.audio.durationSeconds ?? probe.durationSeconds;
  if (claimed === null || claimed <= maxInputSeconds) return null;
  return new ConversionError(
    "too_long",
    `The file is ${Math.round(claimed)} seconds long, more than the limit of ` +
      `${maxInputSeconds} seconds. Cut it into shorter parts and upload them one by one.`,
  );
}

function earlyEndWarnings(probe: ProbeResult, outputSeconds: number, maxSeconds: number): string[] {
  const claimed = probe.audio.durationSeconds ?? probe.durationSeconds;
  if (claimed === null) {
    if (outputSeconds < maxSeconds - 1) return [];
    return [`Only the first ${maxSeconds} seconds were converted, the limit for one file.`];
  }
  // Some muxers count the start offset into the duration (Matroska written with an offset does),
  // so the offset is subtracted to avoid warning about a file that is complete.
  const shortfall = claimed - Math.max(0, probe.startSeconds ?? 0) - outputSeconds;
  if (outputSeconds >= claimed * EARLY_END_MIN_RATIO || shortfall <= EARLY_END_MIN_GAP_SECONDS) {
    return [];
  }
  return [
    `The input ended early: the file claims ${claimed.toFixed(1)} seconds, but only ` +
      `${outputSeconds.toFixed(1)} seconds of audio could be decoded, so the file is probably ` +
      "incomplete. Upload the complete file to get all of it.",
  ];
}

function noDecodableAudio(): ConversionError {
  return new ConversionError(
    "no_decodable_audio",
    "The file describes an audio track, but no audio could be decoded from it, because the " +
      "sample data is missing or damaged. Export the file again and upload the new copy.",
  );
}

/** Probes the finished MP3 and returns its channels, rate and real duration. */
async function probeOutput(path: string, settings: ConvertSettings) {
  const run = await runTool(
    settings.ffprobePath,
    [
      ...FFPROBE_BASE_ARGS,
      "-print_format",
      "json",
      "-show_format",
      "-show_streams",
      ...safeInputArgs(path),
    ],
    settings,
  );
  if (run.aborted || run.interrupted) {
    throw new Error(`ffprobe was stopped before it finished (${run.exitSignal ?? "shutdown"})`);
  }
  const limited = limitFailure(run, settings.timeoutSeconds);
  if (limited) throw limited;
  // An MP3 that ffprobe cannot open at all was written without a single audio frame.
  if (run.exitCode !== 0) throw noDecodableAudio();
  const output = parseProbeOutput(run.stdout);
  const audio = output.streams.find((s) => s.codecType === "audio");
  const framesSeconds = audio?.durationSeconds ?? output.durationSeconds;
  if (audio?.codecName !== "mp3" || !framesSeconds || !audio.channels || !audio.sampleRateHz) {
    throw noDecodableAudio();
  }
  // The duration covers whole MP3 frames, which include LAME's encoder delay at the start;
  // ffmpeg reports that delay, read from the LAME tag, as the stream's start time.
  const durationSeconds = Math.max(0, framesSeconds - Math.max(0, audio.startSeconds ?? 0));
  if (durationSeconds === 0) throw noDecodableAudio();
  return { durationSeconds, channels: audio.channels, sampleRateHz: audio.sampleRateHz };
}

/** Maps a failed ffmpeg run to the failure a user sees. */
function conversionFailure(run: Awaited<ReturnType<typeof runTool>>, settings: ConvertSettings) {
  const limited = limitFailure(run, settings.timeoutSeconds);
  if (limited) return limited;
  // ffmpeg 5.1 exits with 69 when more than `-max_error_rate` (default 2/3) of the decoded
  // frames failed, which is what an index without sample data produces.
  if (run.exitCode === 69) return noDecodableAudio();
  return inputFailure(run.stderrTail) ?? toolFailure("ffmpeg", run);
}

/**
 * Converts `inputPath`, a seekable local file (an MP4 with its index at the end needs one), to an
 * MP3 in a temporary file. Throws `ConversionError` when the input is bad; any other error is
 * not the input's fault. The temporary file is deleted on every failure.
 */
export async function convertToMp3(
  inputPath: string,
  settings: ConvertSettings,
): Promise<ConvertedMp3> {
  const probe = await probeMedia(inputPath, settings);
  const limitError = tooLong(probe, settings.maxInputSeconds);
  if (limitError) throw limitError;

  const dir = await mkdtemp(join(settings.workDir, "mp3-"));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    const outputPath = join(dir, "output.mp3");
    const run = await runTool(
      settings.ffmpegPath,
      ffmpegArgs(inputPath, outputPath, probe.audio, settings, tagsToDrop(probe.tagNames)),
      settings,
    );
    if (run.aborted || run.interrupted) {
      throw new Error(`ffmpeg was stopped before it finished (${run.exitSignal ?? "shutdown"})`);
    }
    if (run.exitCode !== 0) throw conversionFailure(run, settings);

    const output = await probeOutput(outputPath, settings);
    const { size } = await stat(outputPath);
    return {
      path: outputPath,
      sizeBytes: size,
      ...output,
      warnings: earlyEndWarnings(probe, output.durationSeconds, settings.maxInputSeconds),
      probe,
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/**
 * Converts `inputPath` to an MP3 at `outputPath`, replacing any file there, and returns what
 * `convertToMp3` measured. Throws like `convertToMp3`.
 */
export async function convertFile(
  inputPath: string,
  outputPath: string,
  settings: ConvertSettings,
): Promise<Omit<ConvertedMp3, "dispose">> {
  const mp3 = await convertToMp3(inputPath, settings);
  try {
    await moveFile(mp3.path, outputPath);
  } finally {
    await mp3.dispose();
  }
  const { dispose: _, ...result } = mp3;
  return { ...result, path: outputPath };
}

/** Renames `from` to `to`, copying when they are on different file systems. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EXDEV") throw error;
    await copyFile(from, to);
  }
}
