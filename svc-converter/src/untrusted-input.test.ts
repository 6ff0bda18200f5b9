/**
 * Uploads crafted to make ffmpeg open other files or connect out: HLS playlists and ffconcat
 * lists, each under a video's name. Both the probe and the conversion command must reject them
 * without reading what they name. The local cases name an MPEG-TS clip, which ffmpeg 5.1 reads
 * through them when the demuxer whitelist is missing. The network cases name a port on
 * 127.0.0.1 that this file listens on, and that port must see no connection.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type ConvertSettings, convertToMp3, ffmpegArgs } from "./convert.ts";
import { ConversionError } from "./failures.ts";
import { runTool } from "./ffmpeg.ts";
import type { ProbedStream } from "./probe.ts";

const run = promisify(execFile);

/** Length of the referenced clip, in seconds. */
const CLIP_SECONDS = 2;

let dir: string;
let settings: ConvertSettings;
let listener: Server;
let port: number;
let connections = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "converter-untrusted-"));
  const workDir = join(dir, "work");
  await mkdir(workDir);
  settings = {
    ffmpegPath: "ffmpeg",
    ffprobePath: "ffprobe",
    workDir,
    maxInputSeconds: 600,
    timeoutSeconds: 60,
    cpuSeconds: 60,
    mp3Quality: 2,
  };
  const tone = `sine=frequency=440:duration=${CLIP_SECONDS}`;
  await run("ffmpeg", ["-v", "error", "-f", "lavfi", "-i", tone, "-c:a", "aac", join(dir, "a.ts")]);

  listener = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  port = (listener.address() as { port: number }).port;
}, 60_000);

afterAll(async () => {
  await new Promise((resolve) => listener?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

function hlsPlaylist(segmentUrl: string, extraLines: string[] = []): string {
  return [
    "#EXTM3U",
    `#EXT-X-TARGETDURATION:${CLIP_SECONDS}`,
    ...extraLines,
    `#EXTINF:${CLIP_SECONDS}.0,`,
    segmentUrl,
    "#EXT-X-ENDLIST",
    "",
  ].join("\n");
}

/** Builds a crafted upload from the clip's absolute path and the listener's base URL. */
type Craft = (clipPath: string, listenerUrl: string) => string;

/** Crafted uploads by case. They are written next to the clip, so relative names resolve. */
const CRAFTED: Array<[string, Craft]> = [
  ["HLS naming the clip by absolute path", (clip) => hlsPlaylist(clip)],
  ["HLS naming the clip by file: URL", (clip) => hlsPlaylist(`file:${clip}`)],
  ["HLS naming the clip by relative path", () => hlsPlaylist("a.ts")],
  ["ffconcat naming the clip by relative path", () => "ffconcat version 1.0\nfile 'a.ts'\n"],
  ["HLS naming an HTTP segment", (_clip, url) => hlsPlaylist(`${url}/a.ts`)],
  [
    "HLS with an HTTP key URI",
    (_clip, url) => hlsPlaylist("a.ts", [`#EXT-X-KEY:METHOD=AES-128,URI="${url}/key"`]),
  ],
  ["HLS naming a crypto+http segment", (_clip, url) => hlsPlaylist(`crypto+${url}/a.ts`)],
  ["ffconcat naming an HTTP file", (_clip, url) => `ffconcat version 1.0\nfile '${url}/a.ts'\n`],
  [
    "ffconcat naming the clip through subfile",
    (clip) => `ffconcat version 1.0\nfile 'subfile,,start,0,end,0,,:${clip}'\n`,
  ],
];

const CASES = CRAFTED.map(([name, craft], index) => [name, craft, index] as const);

/** Writes a crafted upload under a video's name: the converter decides by content alone. */
async function writeUpload(index: number, craft: Craft): Promise<string> {
  const path = join(dir, `upload-${index}.mp4`);
  await writeFile(path, craft(join(dir, "a.ts"), `http://127.0.0.1:${port}`));
  return path;
}

/** The audio stream the probe would have chosen for the clip. */
const CLIP_AUDIO: ProbedStream = {
  index: 0,
  codecType: "audio",
  codecName: "aac",
  channels: 1,
  sampleRateHz: 44100,
  startSeconds: 0,
  durationSeconds: CLIP_SECONDS,
  isDefault: true,
  isAttachedPic: false,
};

async function sizeOrNull(path: string): Promise<number | null> {
  return stat(path).then(
    (info) => info.size,
    () => null,
  );
}

test("referenced clip converts when uploaded itself", async () => {
  // The rejections below prove something only because this clip is a good input.
  const mp3 = await convertToMp3(join(dir, "a.ts"), settings);
  expect(mp3.durationSeconds).toBeGreaterThan(CLIP_SECONDS - 0.5);
  await mp3.dispose();
});

describe("crafted playlists", () => {
  test.each(CASES)("%s fails as unsupported_format", async (_case, craft, index) => {
    const path = await writeUpload(index, craft);
    const failure = await convertToMp3(path, settings).then(
      async (mp3) => {
        await mp3.dispose();
        return null;
      },
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ConversionError);
    expect((failure as ConversionError).code).toBe("unsupported_format");
  });

  test.each(CASES)("%s fails in ffmpeg alone", async (_case, craft, index) => {
    // As if the probe had let the file through: the ffmpeg call must stand on its own.
    const path = await writeUpload(index, craft);
    const output = join(dir, `output-${index}.mp3`);
    const result = await runTool(
      settings.ffmpegPath,
      ffmpegArgs(path, output, CLIP_AUDIO, settings),
      settings,
    );
    expect(result.exitCode).not.toBe(0);
    expect(await sizeOrNull(output)).toBeNull();
  });

  test("no crafted input connected to 127.0.0.1", () => {
    expect(connections).toBe(0);
  });

  test("work directory is left empty", async () => {
    expect(await readdir(settings.workDir)).toEqual([]);
  });
});
