/**
 * Test media made with ffmpeg's lavfi sources, so tests need no checked-in files. Each helper
 * writes into `dir` and returns the path.
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

async function ffmpeg(args: string[]): Promise<void> {
  await run("ffmpeg", ["-hide_banner", "-loglevel", "error", "-y", ...args]);
}

const TONE = (seconds: number) => ["-f", "lavfi", "-i", `sine=frequency=440:duration=${seconds}`];
const PICTURE = (seconds: number) => [
  "-f",
  "lavfi",
  "-i",
  `testsrc=size=160x120:rate=10:duration=${seconds}`,
];

/** The test inputs of the end-to-end suite, by case name. */
export interface TestMedia {
  mp4MoovEnd: string;
  mp4MoovFront: string;
  mkv: string;
  webm: string;
  audioOnly: string;
  noAudio: string;
  empty: string;
  text: string;
  truncatedMp4: string;
}

/** Seconds of audio in every generated file that has audio. */
export const TEST_MEDIA_SECONDS = 3;

/** Writes every test input into `dir`. */
export async function makeTestMedia(dir: string): Promise<TestMedia> {
  const s = TEST_MEDIA_SECONDS;
  const path = (name: string) => join(dir, name);
  const av = [...PICTURE(s), ...TONE(s), "-shortest"];
  await ffmpeg([...av, "-c:v", "mpeg4", "-c:a", "aac", path("moov-end.mp4")]);
  await ffmpeg([
    ...av,
    "-c:v",
    "mpeg4",
    "-c:a",
    "aac",
    "-movflags",
    "+faststart",
    path("moov-front.mp4"),
  ]);
  await ffmpeg([...av, "-c:v", "mpeg4", "-c:a", "aac", path("clip.mkv")]);
  await ffmpeg([...av, "-c:v", "libvpx", "-b:v", "100k", "-c:a", "libopus", path("clip.webm")]);
  await ffmpeg([...TONE(s), "-c:a", "aac", path("audio-only.m4a")]);
  await ffmpeg([...PICTURE(s), "-c:v", "mpeg4", path("no-audio.mp4")]);
  await writeFile(path("empty.mp4"), new Uint8Array());
  await writeFile(path("notes.txt"), "These are meeting notes, not a video.\n".repeat(50));
  // Cut before the index at the end of the file, so no demuxer can find the samples.
  const whole = await readFile(path("moov-end.mp4"));
  await writeFile(path("truncated.mp4"), whole.subarray(0, Math.floor(whole.length / 3)));
  return {
    mp4MoovEnd: path("moov-end.mp4"),
    mp4MoovFront: path("moov-front.mp4"),
    mkv: path("clip.mkv"),
    webm: path("clip.webm"),
    audioOnly: path("audio-only.m4a"),
    noAudio: path("no-audio.mp4"),
    empty: path("empty.mp4"),
    text: path("notes.txt"),
    truncatedMp4: path("truncated.mp4"),
  };
}

/** Reads codec, channels and duration of the first audio stream of a file with ffprobe. */
export async function probeAudio(
  file: string,
): Promise<{ codec: string; channels: number; durationS: number }> {
  const { stdout } = await run("ffprobe", [
    "-v",
    "error",
    "-select_streams",
    "a:0",
    "-show_entries",
    "stream=codec_name,channels:format=duration",
    "-of",
    "json",
    file,
  ]);
  const parsed = JSON.parse(stdout) as {
    streams?: Array<{ codec_name?: string; channels?: number }>;
    format?: { duration?: string };
  };
  const stream = parsed.streams?.[0];
  return {
    codec: stream?.codec_name ?? "none",
    channels: stream?.channels ?? 0,
    durationS: Number(parsed.format?.duration ?? Number.NaN),
  };
}
