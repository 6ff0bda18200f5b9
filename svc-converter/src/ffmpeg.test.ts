import { expect, test } from "bun:test";
import { findPrlimit, runTool } from "./ffmpeg.ts";

/** Bound on every run in this file, so a broken limit cannot hang the suite. */
const SAFETY_TIMEOUT_SECONDS = 60;

/** An ffmpeg command that never ends by itself: a sine source read at real-time speed. */
const ENDLESS = ["-nostdin", "-hide_banner", "-re", "-f", "lavfi", "-i", "sine", "-f", "null", "-"];

test("runTool returns stdout and exit status", async () => {
  const run = await runTool("ffprobe", ["-hide_banner", "-version"], {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: SAFETY_TIMEOUT_SECONDS,
  });
  expect(run.exitCode).toBe(0);
  expect(run.stdout).toContain("ffprobe version");
  expect(run.timedOut).toBe(false);
  expect(run.killedByLimit).toBe(false);
});

test("runTool kills a run past its timeout", async () => {
  const run = await runTool("ffmpeg", ENDLESS, { timeoutSeconds: 1, cpuSeconds: 600 });
  expect(run.timedOut).toBe(true);
  expect(run.exitCode).not.toBe(0);
  expect(run.killedByLimit).toBe(false);
});

test.skipIf(findPrlimit() === null)("runTool stops a run past its CPU limit", async () => {
  // Encoding 720p video as fast as possible uses a full core, so it passes 1 s of CPU quickly.
  const args = [
    "-nostdin",
    "-hide_banner",
    "-f",
    "lavfi",
    "-i",
    "testsrc=size=1280x720",
    "-c:v",
    "libx264",
    "-threads",
    "1",
    "-f",
    "null",
    "-",
  ];
  const run = await runTool("ffmpeg", args, {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: 1,
  });
  expect(run.timedOut).toBe(false);
  expect(run.killedByLimit).toBe(true);
});

test("runTool stops on abort", async () => {
  const controller = new AbortController();
  const running = runTool("ffmpeg", ENDLESS, {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: SAFETY_TIMEOUT_SECONDS,
    signal: controller.signal,
  });
  controller.abort();
  const run = await running;
  expect(run.aborted).toBe(true);
  expect(run.timedOut).toBe(false);
});

test("runTool bounds stdout and keeps the stderr tail", async () => {
  // Writes raw samples to stdout and one stderr line per frame, more than either bound.
  const args = [
    "-nostdin",
    "-hide_banner",
    "-f",
    "lavfi",
    "-i",
    "sine=d=600",
    "-v",
    "debug",
    "-f",
    "s16le",
    "-",
  ];
  const run = await runTool("ffmpeg", args, {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: SAFETY_TIMEOUT_SECONDS,
    maxStdoutBytes: 64 * 1024,
  });
  expect(run.stdoutOverflow).toBe(true);
  expect(run.stdout.length).toBeLessThanOrEqual(64 * 1024);
  expect(Buffer.byteLength(run.stderrTail)).toBeLessThanOrEqual(8 * 1024);
});

test("runTool rejects a missing binary", async () => {
  const running = runTool("/nonexistent/ffmpeg", ["-version"], {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: SAFETY_TIMEOUT_SECONDS,
  });
  await expect(running).rejects.toThrow("failed to start /nonexistent/ffmpeg");
});

/** Returns the pids of this process's children named `name`, such as ffmpeg under prlimit. */
async function childPids(name: string): Promise<number[]> {
  const { execFileSync } = await import("node:child_process");
  const output = execFileSync("pgrep", ["-P", String(process.pid), name], { encoding: "utf8" });
  return output.trim().split("\n").map(Number);
}

/** Reads the process group id of `pid` from /proc (the fifth field of its stat line). */
async function processGroupOf(pid: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // The command name in brackets may contain spaces, so count fields after its closing bracket.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[2]);
}

test("runTool keeps ffmpeg out of the terminal's group", async () => {
  const controller = new AbortController();
  const running = runTool("ffmpeg", ENDLESS, {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: SAFETY_TIMEOUT_SECONDS,
    signal: controller.signal,
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const [pid] = await childPids("ffmpeg");
  const groups = [await processGroupOf(pid ?? 0), await processGroupOf(process.pid)];
  controller.abort();
  await running;
  // Ctrl-C in a terminal signals the foreground process group, which is the converter's.
  expect(groups[0]).not.toBe(groups[1]);
});

test("runTool marks a caught SIGINT as interrupted", async () => {
  // At -v error ffmpeg prints nothing when it catches a signal, as in the converter's own calls.
  const running = runTool("ffmpeg", ["-v", "error", ...ENDLESS], {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: SAFETY_TIMEOUT_SECONDS,
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const pid of await childPids("ffmpeg")) process.kill(pid, "SIGINT");
  const run = await running;
  expect(run.exitCode).toBe(255);
  expect(run.stderrTail).toBe("");
  expect(run.interrupted).toBe(true);
  expect(run.killedByLimit).toBe(false);
});

test("runTool marks an outside SIGTERM as interrupted", async () => {
  const running = runTool("ffmpeg", ENDLESS, {
    timeoutSeconds: SAFETY_TIMEOUT_SECONDS,
    cpuSeconds: SAFETY_TIMEOUT_SECONDS,
  });
  // Stands in for a supervisor that stops the process group: find the child and signal it.
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const pid of await childPids("ffmpeg")) process.kill(pid, "SIGTERM");
  const run = await running;
  expect(run.interrupted).toBe(true);
  expect(run.killedByLimit).toBe(false);
  expect(run.timedOut).toBe(false);
});
