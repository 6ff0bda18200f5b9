/**
 * Converts every file of a media corpus and checks the result against the corpus's
 * `expectations.json`. Runs only when MEDIA_CORPUS_DIR names the corpus directory, which is read,
 * never written.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ConvertSettings, convertToMp3 } from "./convert.ts";
import { ConversionError } from "./failures.ts";

interface Expectation {
  expect: "convert" | "reject" | "reject_or_convert";
  duration_s?: number;
  tolerance_s?: number;
  channels?: number;
  channels_max?: number;
  reason?: string;
}

const corpusDir = process.env.MEDIA_CORPUS_DIR;
const expectations: Record<string, Expectation> = corpusDir
  ? JSON.parse(readFileSync(join(corpusDir, "expectations.json"), "utf8")).files
  : {};

let workDir: string;
let settings: ConvertSettings;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "converter-corpus-"));
  settings = {
    ffmpegPath: "ffmpeg",
    ffprobePath: "ffprobe",
    workDir,
    maxInputSeconds: 14400,
    timeoutSeconds: 120,
    cpuSeconds: 120,
    mp3Quality: 2,
  };
});

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

// Without the corpus, one skipped test names it in the summary.
if (corpusDir === undefined) test.skip("media corpus (set MEDIA_CORPUS_DIR to run)", () => {});

describe.skipIf(corpusDir === undefined)("media corpus", () => {
  test("lists files", () => {
    expect(Object.keys(expectations).length).toBeGreaterThan(0);
  });

  test.each(Object.entries(expectations))("%s", async (name, expected) => {
    const path = join(corpusDir as string, name);
    let result: Awaited<ReturnType<typeof convertToMp3>> | undefined;
    let failure: ConversionError | undefined;
    try {
      result = await convertToMp3(path, settings);
    } catch (error) {
      if (!(error instanceof ConversionError)) throw error;
      failure = error;
    }

    try {
      if (expected.expect === "reject") {
        expect<string | undefined>(failure?.code).toBe(expected.reason);
        return;
      }
      if (failure) {
        if (expected.expect === "reject_or_convert") {
          expect<string>(failure.code).toBe(expected.reason as string);
          return;
        }
        throw new Error(`${name} was expected to convert but failed: ${failure.message}`);
      }
      const mp3 = result as NonNullable<typeof result>;
      const tolerance = expected.tolerance_s ?? 0.5;
      expect(Math.abs(mp3.durationSeconds - (expected.duration_s as number))).toBeLessThanOrEqual(
        tolerance,
      );
      if (expected.channels !== undefined) expect(mp3.channels).toBe(expected.channels);
      if (expected.channels_max !== undefined) {
        expect(mp3.channels).toBeLessThanOrEqual(expected.channels_max);
      }
      if (expected.expect === "reject_or_convert") {
        // A file that may also be rejected is a damaged one, so its MP3 must say so.
        expect(mp3.warnings.some((w) => w.startsWith("The input ended early"))).toBe(true);
      }
    } finally {
      await result?.dispose();
    }
  });

  test("leaves no temporary files", async () => {
    expect(await readdir(workDir)).toEqual([]);
  });
});
