import { describe, expect, test } from "bun:test";
import {
  ConversionError,
  inputFailure,
  limitFailure,
  stderrExcerpt,
  toolFailure,
} from "./failures.ts";
import type { RunResult } from "./ffmpeg.ts";
import { chooseAudioStream, type ProbedStream, parseProbeOutput } from "./probe.ts";

function stream(overrides: Partial<ProbedStream>): ProbedStream {
  return {
    index: 0,
    codecType: "audio",
    codecName: "aac",
    channels: 2,
    sampleRateHz: 48000,
    startSeconds: 0,
    durationSeconds: 5,
    isDefault: false,
    isAttachedPic: false,
    ...overrides,
  };
}

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof ConversionError) return error.code;
    throw error;
  }
  throw new Error("expected a ConversionError");
}

describe("chooseAudioStream", () => {
  test("prefers the default audio stream", () => {
    const streams = [
      stream({ index: 0, codecType: "video", codecName: "h264", isDefault: true }),
      stream({ index: 1, channels: 1 }),
      stream({ index: 2, isDefault: true }),
    ];
    expect(chooseAudioStream(streams).index).toBe(2);
  });

  test("takes the first audio stream without a default", () => {
    const streams = [
      stream({ index: 0, codecType: "video" }),
      stream({ index: 1 }),
      stream({ index: 2 }),
    ];
    expect(chooseAudioStream(streams).index).toBe(1);
  });

  test("takes the first of two default streams", () => {
    const streams = [stream({ index: 0, isDefault: true }), stream({ index: 1, isDefault: true })];
    expect(chooseAudioStream(streams).index).toBe(0);
  });

  test("skips a default stream without a decoder", () => {
    const streams = [stream({ index: 0, codecName: null, isDefault: true }), stream({ index: 1 })];
    expect(chooseAudioStream(streams).index).toBe(1);
  });

  test("rejects cover art alone as no_audio", () => {
    const cover = stream({ codecType: "video", codecName: "mjpeg", isAttachedPic: true });
    expect(codeOf(() => chooseAudioStream([cover]))).toBe("no_audio");
  });

  test("rejects undecodable audio as no_decodable_audio", () => {
    const streams = [stream({ codecName: null }), stream({ index: 1, sampleRateHz: null })];
    expect(codeOf(() => chooseAudioStream(streams))).toBe("no_decodable_audio");
  });
});

test("parseProbeOutput reads dispositions and numbers", () => {
  const json = JSON.stringify({
    format: { format_name: "mp3", duration: "2.168", start_time: "0.025" },
    streams: [
      { index: 0, codec_type: "audio", codec_name: "mp3", channels: 2, sample_rate: "44100" },
      { index: 1, codec_type: "video", codec_name: "mjpeg", disposition: { attached_pic: 1 } },
    ],
  });
  const parsed = parseProbeOutput(json);
  expect(parsed.container).toBe("mp3");
  expect(parsed.durationSeconds).toBe(2.168);
  expect(parsed.startSeconds).toBe(0.025);
  expect(parsed.streams[0]?.sampleRateHz).toBe(44100);
  expect(parsed.streams[0]?.durationSeconds).toBeNull();
  expect(parsed.streams[1]?.isAttachedPic).toBe(true);
});

function runResult(overrides: Partial<RunResult>): RunResult {
  return {
    exitCode: 1,
    exitSignal: null,
    stdout: "",
    stderrTail: "",
    timedOut: false,
    killedByLimit: false,
    interrupted: false,
    stdoutOverflow: false,
    aborted: false,
    ...overrides,
  };
}

describe("failures", () => {
  test("stderrExcerpt hides local paths", () => {
    const stderr =
      "[aac @ 0x55d6eec58fc0] Reserved bit set.\n" +
      "[mp3 @ 0x5594a34baac0] Could not open file:/var/tmp/work/job-1/input for reading\n" +
      "Conversion failed!\n";
    const excerpt = stderrExcerpt(stderr);
    expect(excerpt).toBe("Could not open <file> for reading");
    expect(excerpt).not.toContain("/var/tmp");
  });

  test("toolFailure quotes the excerpt", () => {
    const failure = toolFailure("ffmpeg", runResult({ stderrTail: "/tmp/x/input: Broken pipe\n" }));
    expect(failure.code).toBe("conversion_failed");
    expect(failure.message).toContain("ffmpeg: <file>");
    expect(failure.message).not.toContain("/tmp/x");
  });

  test("inputFailure maps a low probe score to unsupported_format", () => {
    const stderr =
      "[mp3 @ 0x556068bf1180] Format mp3 detected only with low score of 1, misdetection possible!\n" +
      "[mp3 @ 0x5570f9c61300] Failed to read frame size: Could not seek to 5119.\n" +
      "file:/tmp/work/job-1/input: Invalid argument\n";
    const failure = inputFailure(stderr);
    expect(failure?.code).toBe("unsupported_format");
    expect(failure?.message).toContain("match no known media format");
  });

  test("limitFailure maps a timeout to timed_out", () => {
    expect(limitFailure(runResult({ timedOut: true }), 30)?.code).toBe("timed_out");
  });

  test("limitFailure maps an outside kill to resource_limit", () => {
    const run = runResult({ exitCode: null, exitSignal: "SIGKILL", killedByLimit: true });
    expect(limitFailure(run, 30)?.code).toBe("resource_limit");
  });

  test("limitFailure ignores an ordinary failure", () => {
    expect(limitFailure(runResult({}), 30)).toBeNull();
  });
});
