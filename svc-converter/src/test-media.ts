/**
 * Generates small media files for tests with ffmpeg's lavfi sources (`sine`, `testsrc`), so the
 * tests need no checked-in media.
 */
import { execFile } from "node:child_process";
import { stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Upper bound on the time one fixture may take to generate. */
const GENERATE_TIMEOUT_MS = 120_000;

const VIDEO = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"];

function sine(seconds: number, sampleRateHz = 44100, frequencyHz = 440): string[] {
  return [
    "-f",
    "lavfi",
    "-i",
    `sine=frequency=${frequencyHz}:sample_rate=${sampleRateHz}:d=${seconds}`,
  ];
}

const H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];

/** Runs ffmpeg with `args` and writes to `dir/name`; returns the path. */
async function generate(dir: string, name: string, args: string[]): Promise<string> {
  const path = join(dir, name);
  await run("ffmpeg", ["-nostdin", "-hide_banner", "-v", "error", ...args, "-y", path], {
    timeout: GENERATE_TIMEOUT_MS,
  });
  return path;
}

/** Cuts `path` to half its size, as an interrupted upload would. */
async function cutInHalf(path: string): Promise<void> {
  const { size } = await stat(path);
  await truncate(path, Math.floor(size / 2));
}

/** Paths of the generated fixtures, by case. */
export interface TestMedia {
  mp4MoovAtEnd: string;
  mp4Faststart: string;
  mkv: string;
  webmOpus: string;
  m4aAudioOnly: string;
  videoWithoutAudio: string;
  emptyFile: string;
  textFile: string;
  /** A fast-start MP4 cut in the middle of its sample data: the index claims 20 s. */
  mp4CutWithIndex: string;
  /** An MP4 with the index at the end, cut in the middle of its sample data: no index. */
  mp4CutWithoutIndex: string;
  surround51: string;
  flac96kHz: string;
  /** Matroska whose timestamps start at 10 s. */
  startsAt10s: string;
  /** A mono first track and a stereo second track flagged default. */
  twoTracksSecondDefault: string;
  /**
   * An MPEG-TS clip that converts fine, which the playlist and concat files name by a relative
   * path, so ffmpeg reads it through them when the demuxer whitelist is missing. A WAV or an
   * absolute path would prove nothing: the HLS demuxer of ffmpeg 5.1.9 (Debian 12) opens only
   * segments whose format matches their extension, and the concat demuxer rejects absolute
   * paths by default.
   */
  referencedSegment: string;
  hlsPlaylist: string;
  ffconcat: string;
}

/** Title tag written into the FLAC fixture, with non-ASCII letters. */
export const FLAC_TITLE = "Mi Korasón – ünïcode";

/** Duration in seconds of the generated clips unless a case says otherwise. */
export const CLIP_SECONDS = 4;

/** Generates every fixture into `dir`. Takes a few seconds of CPU. */
export async function generateTestMedia(dir: string): Promise<TestMedia> {
  const d = CLIP_SECONDS;
  const videoClip = ["-t", String(d), ...VIDEO, ...sine(d), ...H264, "-c:a", "aac", "-shortest"];

  const mp4MoovAtEnd = await generate(dir, "moov-end.mp4", videoClip);
  const mp4Faststart = await generate(dir, "faststart.mp4", [
    ...videoClip,
    "-movflags",
    "+faststart",
  ]);
  const mkv = await generate(dir, "clip.mkv", videoClip);
  const webmOpus = await generate(dir, "clip.webm", [
    "-t",
    String(d),
    ...VIDEO,
    ...sine(d, 48000),
    "-c:v",
    "libvpx",
    "-deadline",
    "realtime",
    "-cpu-used",
    "8",
    "-b:v",
    "100k",
    "-c:a",
    "libopus",
    "-shortest",
  ]);
  const m4aAudioOnly = await generate(dir, "audio.m4a", [...sine(d), "-c:a", "aac"]);
  const videoWithoutAudio = await generate(dir, "silent.mp4", ["-t", String(d), ...VIDEO, ...H264]);

  const emptyFile = join(dir, "empty.bin");
  await writeFile(emptyFile, "");
  const textFile = join(dir, "notes.txt");
  await writeFile(textFile, "These are meeting notes, not a video.\n".repeat(20));

  const longClip = ["-t", "20", ...VIDEO, ...sine(20), ...H264, "-c:a", "aac", "-shortest"];
  const mp4CutWithIndex = await generate(dir, "cut-faststart.mp4", [
    ...longClip,
    "-movflags",
    "+faststart",
  ]);
  await cutInHalf(mp4CutWithIndex);
  const mp4CutWithoutIndex = await generate(dir, "cut-moov-end.mp4", longClip);
  await cutInHalf(mp4CutWithoutIndex);

  const surround51 = await generate(dir, "surround.mkv", [
    ...sine(d, 48000),
    "-ac",
    "6",
    "-channel_layout",
    "5.1",
    "-c:a",
    "aac",
  ]);
  const flac96kHz = await generate(dir, "hires.flac", [
    ...sine(d, 96000),
    "-c:a",
    "flac",
    "-metadata",
    `title=${FLAC_TITLE}`,
  ]);
  const startsAt10s = await generate(dir, "offset.mkv", [
    ...sine(d),
    "-c:a",
    "libvorbis",
    "-output_ts_offset",
    "10",
  ]);
  const twoTracksSecondDefault = await generate(dir, "two-tracks.mkv", [
    ...sine(d, 22050, 300),
    ...sine(d, 44100, 600),
    "-map",
    "0:a",
    "-map",
    "1:a",
    "-ac:0",
    "1",
    "-ac:1",
    "2",
    "-c:a",
    "aac",
    "-disposition:a:0",
    "0",
    "-disposition:a:1",
    "default",
  ]);

  const referencedSegment = await generate(dir, "segment.ts", [...sine(d), "-c:a", "aac"]);
  const hlsPlaylist = join(dir, "playlist.m3u8");
  await writeFile(
    hlsPlaylist,
    `#EXTM3U\n#EXT-X-TARGETDURATION:${d}\n#EXTINF:${d}.0,\nsegment.ts\n#EXT-X-ENDLIST\n`,
  );
  const ffconcat = join(dir, "list.ffconcat");
  await writeFile(ffconcat, "ffconcat version 1.0\nfile 'segment.ts'\n");

  return {
    mp4MoovAtEnd,
    mp4Faststart,
    mkv,
    webmOpus,
    m4aAudioOnly,
    videoWithoutAudio,
    emptyFile,
    textFile,
    mp4CutWithIndex,
    mp4CutWithoutIndex,
    surround51,
    flac96kHz,
    startsAt10s,
    twoTracksSecondDefault,
    referencedSegment,
    hlsPlaylist,
    ffconcat,
  };
}

/**
 * Writes `size` pseudo-random bytes to `path`. The bytes come from xorshift32 seeded with `seed`
 * (not 0), so a test gets the same file on every run.
 */
export async function writeRandomBytes(path: string, size: number, seed: number): Promise<void> {
  const bytes = Buffer.alloc(size);
  let state = seed >>> 0;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[i] = state & 0xff;
  }
  await writeFile(path, bytes);
}

/** Stream and format fields of a file as ffprobe reports them, for checks in tests. */
export async function ffprobeJson(path: string): Promise<{
  format: { format_name: string; duration?: string; tags?: Record<string, string> };
  streams: Array<{
    codec_type: string;
    codec_name: string;
    channels?: number;
    sample_rate?: string;
    start_time?: string;
    duration?: string;
  }>;
}> {
  const { stdout } = await run("ffprobe", [
    "-v",
    "error",
    "-print_format",
    "json",
    "-show_format",
    "-show_streams",
    path,
  ]);
  return JSON.parse(stdout);
}
