/**
 * `bun run bench`: measures two pairs side by side in one run on this machine. The gateway's peak
 * memory while it streams a large upload is set against a buffering baseline, and the converter's
 * time against a bare ffmpeg call on the same file. It also measures the all-in-one system's
 * throughput, then writes docs/benchmarks.md.
 */
import { execFile } from "node:child_process";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { readConverterConfig } from "../../svc-converter/src/config.ts";
import { convertToMp3 } from "../../svc-converter/src/convert.ts";
import { GatewayClient } from "../system/client.ts";
import { findFreePort } from "../system/ports.ts";
import { measureUploadPeakRss, startProcess, waitForHttp } from "./processes.ts";

const run = promisify(execFile);
const REPO_ROOT = resolve(import.meta.dir, "../..");
const UPLOAD_BYTES = 200 * 1024 * 1024;
const CONVERSION_ROUNDS = 3;
const CLIP_SECONDS = 120;
const THROUGHPUT_JOBS = 12;
const PASSWORD = "benchmark passphrase";

interface Results {
  streamingPeakMiB: number;
  bufferedPeakMiB: number;
  streamingIdleMiB: number;
  bufferedIdleMiB: number;
  converterSeconds: number[];
  ffmpegSeconds: number[];
  throughputJobs: number;
  throughputSeconds: number;
}

function mib(bytes: number): number {
  return Math.round((bytes / 1024 / 1024) * 10) / 10;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function makeUploadFile(dir: string): Promise<string> {
  const path = join(dir, "large.bin");
  const chunk = new Uint8Array(1024 * 1024);
  crypto.getRandomValues(chunk.subarray(0, 65536));
  const handle = await open(path, "w");
  for (let written = 0; written < UPLOAD_BYTES; written += chunk.length) await handle.write(chunk);
  await handle.close();
  return path;
}

async function benchUploadMemory(dir: string, file: string) {
  const gatewayPort = await findFreePort();
  const system = startProcess("bun", ["run", "lib/system/all-in-one.ts"], {
    cwd: REPO_ROOT,
    env: {
      DATA_DIR: join(dir, "data"),
      GATEWAY_PORT: String(gatewayPort),
      AUTH_PORT: "0",
      LOG_LEVEL: "warn",
      UPLOAD_MAX_BYTES: String(UPLOAD_BYTES * 2),
    },
  });
  const baseline = startProcess("bun", ["run", "lib/bench/buffered-upload-server.ts"], {
    cwd: REPO_ROOT,
    env: {},
  });
  try {
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    await waitForHttp(`${gatewayUrl}/healthz`);
    const client = new GatewayClient(gatewayUrl);
    await client.signup("bench@example.com", PASSWORD);
    const token = await client.login("bench@example.com", PASSWORD);
    const baselinePort = Number((await baseline.firstLine).trim());
    const streaming = await measureUploadPeakRss(system, `${gatewayUrl}/upload`, file, token);
    const buffered = await measureUploadPeakRss(
      baseline,
      `http://127.0.0.1:${baselinePort}/upload`,
      file,
    );
    return { streaming, buffered };
  } finally {
    await Promise.all([system.stop(), baseline.stop()]);
  }
}

async function timeIt(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return (performance.now() - started) / 1000;
}

async function benchConversion(dir: string) {
  const input = join(dir, "clip.mp4");
  await run("ffmpeg", [
    ...["-hide_banner", "-loglevel", "error", "-y"],
    ...["-f", "lavfi", "-i", `testsrc=size=320x240:rate=25:duration=${CLIP_SECONDS}`],
    ...["-f", "lavfi", "-i", `sine=frequency=440:duration=${CLIP_SECONDS}`],
    ...["-c:v", "mpeg4", "-c:a", "aac", "-shortest", input],
  ]);
  const config = readConverterConfig({
    BROKER_URL: "memory:",
    STORAGE_URL: `file:${join(dir, "files")}`,
    WORK_DIR: dir,
  });
  const converterSeconds: number[] = [];
  const ffmpegSeconds: number[] = [];
  for (let round = 0; round < CONVERSION_ROUNDS; round++) {
    // Alternate the two so that a slow moment of the machine hits both alike.
    ffmpegSeconds.push(
      await timeIt(() =>
        run("ffmpeg", [
          ...["-hide_banner", "-loglevel", "error", "-y", "-i", input],
          ...["-vn", "-c:a", "libmp3lame", "-q:a", "2", join(dir, "bare.mp3")],
        ]),
      ),
    );
    converterSeconds.push(
      await timeIt(async () => {
        const mp3 = await convertToMp3(input, config);
        await mp3.dispose();
      }),
    );
  }
  return { converterSeconds, ffmpegSeconds };
}

async function benchThroughput(dir: string) {
  const { startAllInOne } = await import("../system/all-in-one.ts");
  const { makeTestMedia } = await import("../system/media.ts");
  const media = await makeTestMedia(dir);
  const system = await startAllInOne({
    dataDir: join(dir, "throughput"),
    gatewayPort: 0,
    authPort: 0,
    host: "127.0.0.1",
    logLevel: "warn",
    // One user sends every job at once, more than the default limit of unfinished jobs.
    extraEnv: { MAX_ACTIVE_JOBS_PER_USER: String(THROUGHPUT_JOBS) },
  });
  try {
    const client = new GatewayClient(system.gatewayUrl);
    await client.signup("throughput@example.com", PASSWORD);
    await client.login("throughput@example.com", PASSWORD);
    const seconds = await timeIt(async () => {
      const jobs = await Promise.all(
        Array.from({ length: THROUGHPUT_JOBS }, () => client.upload(media.mp4MoovFront)),
      );
      await Promise.all(jobs.map((job) => client.waitForJob(job.job_id, 300_000)));
    });
    return { throughputJobs: THROUGHPUT_JOBS, throughputSeconds: seconds };
  } finally {
    await system.stop();
  }
}

function renderReport(results: Results, ffmpegVersion: string): string {
  const converter = median(results.converterSeconds);
  const bare = median(results.ffmpegSeconds);
  const streamingGrowth = results.streamingPeakMiB - results.streamingIdleMiB;
  const bufferedGrowth = results.bufferedPeakMiB - results.bufferedIdleMiB;
  return `# Benchmarks

Written by \`bun run bench\` (lib/bench/main.ts) on ${new Date().toISOString().slice(0, 10)}.
Machine: ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, ${mib(totalmem())} MiB of
memory, Bun ${Bun.version}, ${ffmpegVersion}. The machine is shared and noisy, so each pair below
was measured side by side in the same run and the ratio matters more than the absolute numbers.

## Upload memory

One ${mib(UPLOAD_BYTES)} MiB file uploaded as multipart to two servers, each in its own process;
peak resident memory (VmHWM) of the server process, and its growth over the idle value.

| server | idle RSS (MiB) | peak RSS (MiB) | growth (MiB) |
| --- | --- | --- | --- |
| gateway (streaming into the file store) | ${results.streamingIdleMiB} | ${results.streamingPeakMiB} | ${Math.round(streamingGrowth * 10) / 10} |
| Elysia \`t.File()\` baseline (buffers the body) | ${results.bufferedIdleMiB} | ${results.bufferedPeakMiB} | ${Math.round(bufferedGrowth * 10) / 10} |

The gateway's peak is ${(results.bufferedPeakMiB / results.streamingPeakMiB).toFixed(1)}× lower
than the baseline's, and its growth is ${(bufferedGrowth / Math.max(streamingGrowth, 0.1)).toFixed(1)}×
lower. The gateway process also runs auth, the converter and notify (the all-in-one mode), so
its idle value is higher than a lone gateway's.

## Conversion overhead

A ${CLIP_SECONDS} s MP4 (MPEG-4 video, AAC audio) converted ${CONVERSION_ROUNDS} times by each,
alternating: the converter's \`convertToMp3\` (ffprobe, the safety flags, ffmpeg under
\`prlimit\`, and an ffprobe of the output) and a bare \`ffmpeg -i clip.mp4 -vn -c:a libmp3lame
-q:a 2\`. Median wall-clock seconds.

| run | median (s) | all runs (s) |
| --- | --- | --- |
| converter | ${converter.toFixed(2)} | ${results.converterSeconds.map((s) => s.toFixed(2)).join(", ")} |
| bare ffmpeg | ${bare.toFixed(2)} | ${results.ffmpegSeconds.map((s) => s.toFixed(2)).join(", ")} |

The converter takes ${(converter / bare).toFixed(2)}× the time of the bare ffmpeg call.

## Throughput

${results.throughputJobs} uploads of a short MP4 sent at once to the all-in-one system (one
converter, prefetch 1), from the first upload to the last \`notified\` job:
${results.throughputSeconds.toFixed(1)} s, or ${(results.throughputJobs / results.throughputSeconds).toFixed(2)} jobs/s.
`;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mp3c-bench-"));
  try {
    const file = await makeUploadFile(dir);
    const memory = await benchUploadMemory(dir, file);
    const conversion = await benchConversion(dir);
    const throughput = await benchThroughput(dir);
    const results: Results = {
      streamingPeakMiB: mib(memory.streaming.peakBytes),
      streamingIdleMiB: mib(memory.streaming.idleBytes),
      bufferedPeakMiB: mib(memory.buffered.peakBytes),
      bufferedIdleMiB: mib(memory.buffered.idleBytes),
      ...conversion,
      ...throughput,
    };
    const { stdout } = await run("ffmpeg", ["-version"]);
    const ffmpegVersion = stdout.split("\n")[0]?.split(" Copyright")[0] ?? "ffmpeg";
    const report = renderReport(results, ffmpegVersion);
    const reportPath = join(REPO_ROOT, "docs/benchmarks.md");
    await writeFile(reportPath, report);
    // Biome formats Markdown in this repository, and `bun run test` checks that it is formatted.
    await run(join(REPO_ROOT, "node_modules/.bin/biome"), ["format", "--write", reportPath]);
    process.stdout.write(report);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
