import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  type ConvertSettings,
  convertToMp3,
  ffmpegArgs,
  outputSampleRate,
  tagsToDrop,
} from "./convert.ts";
import { ConversionError } from "./failures.ts";
import { findPrlimit } from "./ffmpeg.ts";
import type { ProbedStream } from "./probe.ts";
import {
  CLIP_SECONDS,
  FLAC_TITLE,
  ffprobeJson,
  generateTestMedia,
  type TestMedia,
  writeRandomBytes,
} from "./test-media.ts";

const execFileAsync = promisify(execFile);

/** Allowed difference between the expected and the measured MP3 duration, in seconds. */
const DURATION_TOLERANCE_SECONDS = 0.5;

let dir: string;
let workDir: string;
let media: TestMedia;
let settings: ConvertSettings;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "converter-test-"));
  workDir = join(dir, "work");
  await mkdir(workDir);
  media = await generateTestMedia(dir);
  settings = {
    ffmpegPath: "ffmpeg",
    ffprobePath: "ffprobe",
    workDir,
    maxInputSeconds: 14400,
    timeoutSeconds: 120,
    cpuSeconds: 120,
    mp3Quality: 2,
  };
}, 180_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Converts `path`, checks the MP3 with ffprobe, deletes it and returns what was checked. */
async function convertAndCheck(path: string, expectedSeconds: number, expectedChannels: number) {
  const mp3 = await convertToMp3(path, settings);
  try {
    const probed = await ffprobeJson(mp3.path);
    const stream = probed.streams.find((s) => s.codec_type === "audio");
    expect(probed.format.format_name).toBe("mp3");
    expect(stream?.codec_name).toBe("mp3");
    expect(stream?.channels).toBe(expectedChannels);
    expect(mp3.channels).toBe(expectedChannels);
    expect(Math.abs(mp3.durationSeconds - expectedSeconds)).toBeLessThanOrEqual(
      DURATION_TOLERANCE_SECONDS,
    );
    expect(Math.abs(Number(probed.format.duration) - expectedSeconds)).toBeLessThanOrEqual(
      DURATION_TOLERANCE_SECONDS,
    );
    return { mp3, probed, stream };
  } finally {
    await mp3.dispose();
  }
}

/** Runs `convertToMp3` and returns the failure it throws. */
async function failureOf(path: string, overrides: Partial<ConvertSettings> = {}) {
  try {
    const mp3 = await convertToMp3(path, { ...settings, ...overrides });
    await mp3.dispose();
  } catch (error) {
    if (error instanceof ConversionError) return error.toFailure();
    throw error;
  }
  throw new Error(`expected the conversion of ${path} to fail`);
}

describe("convertToMp3 converts", () => {
  test("MP4 with the index at the end", async () => {
    const { mp3 } = await convertAndCheck(media.mp4MoovAtEnd, CLIP_SECONDS, 1);
    expect(mp3.warnings).toEqual([]);
  });

  test("MP4 with faststart", async () => {
    await convertAndCheck(media.mp4Faststart, CLIP_SECONDS, 1);
  });

  test("MKV", async () => {
    await convertAndCheck(media.mkv, CLIP_SECONDS, 1);
  });

  test("WebM with Opus audio", async () => {
    const { stream } = await convertAndCheck(media.webmOpus, CLIP_SECONDS, 1);
    expect(stream?.sample_rate).toBe("48000");
  });

  test("audio-only M4A", async () => {
    await convertAndCheck(media.m4aAudioOnly, CLIP_SECONDS, 1);
  });

  test("5.1 audio downmixed to stereo", async () => {
    await convertAndCheck(media.surround51, CLIP_SECONDS, 2);
  });

  test("96 kHz FLAC resampled with its UTF-8 title", async () => {
    const { stream, probed } = await convertAndCheck(media.flac96kHz, CLIP_SECONDS, 1);
    expect(stream?.sample_rate).toBe("48000");
    expect(probed.format.tags?.title).toBe(FLAC_TITLE);
  });

  test("MP4 tags copied without brands or location", async () => {
    const input = join(dir, "phone.mp4");
    await execFileAsync("ffmpeg", [
      ...["-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1"],
      ...["-metadata", "title=Field recording", "-metadata", "artist=Alice"],
      ...["-metadata", "location=+48.8577+002.2950/", "-c:a", "aac", input],
    ]);
    const tagged = await ffprobeJson(input);
    expect(tagged.format.tags?.location).toBe("+48.8577+002.2950/");
    expect(tagged.format.tags?.major_brand).toBeDefined();

    const mp3 = await convertToMp3(input, settings);
    try {
      const tags = (await ffprobeJson(mp3.path)).format.tags ?? {};
      expect(tags.title).toBe("Field recording");
      expect(tags.artist).toBe("Alice");
      expect(
        Object.keys(tags).filter((name) => /location|brand|minor_version/i.test(name)),
      ).toEqual([]);
    } finally {
      await mp3.dispose();
    }
  });

  test("input starting at 10 s from 0", async () => {
    const input = await ffprobeJson(media.startsAt10s);
    expect(Number(input.streams[0]?.start_time)).toBeGreaterThan(9.9);

    const { mp3, stream } = await convertAndCheck(media.startsAt10s, CLIP_SECONDS, 1);
    // An MP3 from LAME starts at its encoder delay, a few hundredths of a second.
    expect(Number(stream?.start_time)).toBeLessThan(0.1);
    expect(mp3.warnings).toEqual([]);
  });

  test("default track of two, alone", async () => {
    const { mp3 } = await convertAndCheck(media.twoTracksSecondDefault, CLIP_SECONDS, 2);
    expect(mp3.probe.audio.index).toBe(1);
    expect(mp3.sampleRateHz).toBe(44100);
  });

  test("truncated MP4 with an index, with a warning", async () => {
    const mp3 = await convertToMp3(media.mp4CutWithIndex, settings);
    try {
      expect(mp3.probe.durationSeconds).toBeGreaterThanOrEqual(19);
      expect(mp3.durationSeconds).toBeLessThan(15);
      expect(mp3.durationSeconds).toBeGreaterThan(0);
      expect(mp3.warnings).toHaveLength(1);
      expect(mp3.warnings[0]).toStartWith("The input ended early: ");
    } finally {
      await mp3.dispose();
    }
  });
});

describe("convertToMp3 rejects", () => {
  test("an empty file as empty_file", async () => {
    expect((await failureOf(media.emptyFile)).code).toBe("empty_file");
  });

  test("a text file as unsupported_format", async () => {
    expect((await failureOf(media.textFile)).code).toBe("unsupported_format");
  });

  test("random bytes as unsupported_format", async () => {
    // Seeds 3 and 5 at 333 bytes read as MPEG-TS and end in EOF, and seed 4 at 4096 and 5000
    // bytes reads as MP3 and ends in EINVAL, each after a low-score guess of the format.
    const codes: Record<string, string> = {};
    const ffmpegQuotes: string[] = [];
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      for (const size of [1, 333, 4096, 5000, 65536]) {
        const name = `random-${seed}-${size}.bin`;
        await writeRandomBytes(join(dir, name), size, seed);
        const failure = await failureOf(join(dir, name));
        codes[name] = failure.code;
        if (/ffprobe|ffmpeg/.test(failure.message)) ffmpegQuotes.push(name);
      }
    }
    const expected = Object.fromEntries(
      Object.keys(codes).map((name) => [name, "unsupported_format"]),
    );
    expect(codes).toEqual(expected);
    expect(ffmpegQuotes).toEqual([]);
  });

  test("a video without audio as no_audio", async () => {
    const failure = await failureOf(media.videoWithoutAudio);
    expect(failure.code).toBe("no_audio");
    expect(failure.message).toContain("The video has no audio track");
  });

  test("an MP4 cut before its index as truncated", async () => {
    expect((await failureOf(media.mp4CutWithoutIndex)).code).toBe("truncated");
  });

  test("an HLS playlist as unsupported_format", async () => {
    const failure = await failureOf(media.hlsPlaylist);
    expect(failure.code).toBe("unsupported_format");
    expect(failure.message).toContain("(hls)");
  });

  test("an ffconcat file as unsupported_format", async () => {
    const failure = await failureOf(media.ffconcat);
    expect(failure.code).toBe("unsupported_format");
    expect(failure.message).toContain("(concat)");
  });

  test("an input longer than the limit as too_long", async () => {
    const failure = await failureOf(media.mp4Faststart, { maxInputSeconds: 2 });
    expect(failure.code).toBe("too_long");
    expect(failure.message).toContain("limit of 2 seconds");
  });
});

describe("convertToMp3 limits", () => {
  /** Long enough that converting it takes seconds of CPU: 4.7 s with ffmpeg 5.1.9 on x86-64. */
  let longInput: string;

  beforeAll(async () => {
    longInput = join(dir, "long.flac");
    const tone = "sine=frequency=440:sample_rate=44100:duration=1200";
    await execFileAsync("ffmpeg", [
      "-v",
      "error",
      "-f",
      "lavfi",
      "-i",
      tone,
      "-ac",
      "2",
      longInput,
    ]);
  }, 60_000);

  test("a conversion past the time limit as timed_out", async () => {
    const failure = await failureOf(longInput, { timeoutSeconds: 1 });
    expect(failure.code).toBe("timed_out");
    expect(failure.message).toContain("limit of 1 seconds");
    expect(await readdir(workDir)).toEqual([]);
  });

  test.skipIf(findPrlimit() === null)(
    "a conversion past the CPU limit as resource_limit",
    async () => {
      const failure = await failureOf(longInput, { cpuSeconds: 1 });
      expect(failure.code).toBe("resource_limit");
      expect(await readdir(workDir)).toEqual([]);
    },
  );
});

test("referenced file converts when given directly", async () => {
  // The playlist and concat cases above only prove something if the file they name is a good
  // input: reading it would have produced an MP3 instead of a rejection.
  await convertAndCheck(media.referencedSegment, CLIP_SECONDS, 1);
});

test("work directory is empty after each case", async () => {
  await failureOf(media.videoWithoutAudio);
  await failureOf(media.mp4CutWithoutIndex);
  const mp3 = await convertToMp3(media.m4aAudioOnly, settings);
  expect(await readdir(workDir)).toHaveLength(1);
  await mp3.dispose();
  expect(await readdir(workDir)).toEqual([]);
});

describe("outputSampleRate", () => {
  test("keeps the rates MP3 supports", () => {
    for (const rate of [8000, 22050, 44100, 48000]) expect(outputSampleRate(rate)).toBeNull();
  });

  test("maps rates above 48 kHz down", () => {
    expect(outputSampleRate(96000)).toBe(48000);
    expect(outputSampleRate(88200)).toBe(44100);
    expect(outputSampleRate(192000)).toBe(48000);
  });

  test("maps other rates up to the next supported one", () => {
    expect(outputSampleRate(7350)).toBe(8000);
    expect(outputSampleRate(37800)).toBe(44100);
  });
});

test("ffmpegArgs maps one stream with every safety option", () => {
  const audio: ProbedStream = {
    index: 3,
    codecType: "audio",
    codecName: "aac",
    channels: 6,
    sampleRateHz: 96000,
    startSeconds: 0,
    durationSeconds: 10,
    isDefault: true,
    isAttachedPic: false,
  };
  const args = ffmpegArgs("/in/video", "/out/a.mp3", audio, { maxInputSeconds: 60, mp3Quality: 4 });
  const after = (name: string) => args[args.indexOf(name) + 1];

  expect(args.slice(0, 2)).toEqual(["-nostdin", "-hide_banner"]);
  expect(after("-protocol_whitelist")).toBe("file");
  expect(after("-format_whitelist")?.split(",")).not.toContain("hls");
  expect(args.indexOf("-format_whitelist")).toBeLessThan(args.indexOf("-i"));
  expect(after("-i")).toBe("file:/in/video");
  expect(after("-map")).toBe("0:3");
  expect(args.filter((a) => a === "-map")).toHaveLength(1);
  expect(args).toContain("-vn");
  expect(args).toContain("-sn");
  expect(args).toContain("-dn");
  expect(after("-ac")).toBe("2");
  expect(after("-ar")).toBe("48000");
  expect(after("-q:a")).toBe("4");
  expect(after("-t")).toBe("60");
  expect(after("-map_metadata")).toBe("0");
  expect(args).not.toContain("-metadata");
  expect(after("-id3v2_version")).toBe("3");
  expect(args.at(-1)).toBe("file:/out/a.mp3");
});

test("tagsToDrop keeps descriptive tags", () => {
  const names = ["title", "major_brand", "minor_version", "compatible_brands", "location"];
  const more = ["location-eng", "com.apple.quicktime.location.ISO6709", "artist", "PRODUCER"];
  expect(tagsToDrop([...names, ...more])).toEqual([
    "major_brand",
    "minor_version",
    "compatible_brands",
    "location",
    "location-eng",
    "com.apple.quicktime.location.ISO6709",
  ]);
});
