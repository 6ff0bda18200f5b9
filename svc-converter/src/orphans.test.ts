import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { runTool } from "./ffmpeg.ts";
import { isRecordedTool, pidNamespace, type ToolRecord, writeToolRecord } from "./orphans.ts";
import { OWNER_FILE, sweepWorkDir } from "./work-dir.ts";

const HOUR_MS = 60 * 60_000;

/** Bound on each wait in this file, so a broken kill cannot hang the suite. */
const WAIT_MS = 10_000;

const hasProc = existsSync("/proc/self/stat");

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "converter-orphans-test-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Tells whether `pid` runs. A zombie counts as exited, because it only waits to be reaped. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Polls `check` every 50 ms until it returns a value other than undefined. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function exited(child: ChildProcess): Promise<unknown> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", resolve));
}

/** Writes an instance directory owned by a process that has exited, with one job directory. */
async function abandonedInstance(): Promise<string> {
  const path = join(root, "mp3converter-gone01");
  await mkdir(join(path, "job-a1b2c3"), { recursive: true });
  const dead = spawn("true");
  await exited(dead);
  const owner = {
    host: hostname(),
    pid_namespace: pidNamespace(),
    pid: dead.pid,
    instance: crypto.randomUUID(),
  };
  await writeFile(join(path, OWNER_FILE), JSON.stringify(owner));
  return path;
}

/**
 * A converter in a child process: opens an instance directory in ROOT, prints its path, and
 * encodes a sine read at real-time speed for 60 seconds into a job directory there.
 */
const CONVERTER_CHILD = `
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { createLogger } from "@mp3converter/lib/log";
import { FFMPEG_BASE_ARGS, runTool } from "./src/ffmpeg.ts";
import { openWorkDir } from "./src/work-dir.ts";

const logger = createLogger({ service: "orphans-test-child", level: "silent" });
const workDir = await openWorkDir({ root: process.env.ROOT, timeoutSeconds: 120, logger });
const jobDir = await mkdtemp(join(workDir.path, "mp3-"));
console.log(workDir.path);
const args = [...FFMPEG_BASE_ARGS, "-re", "-f", "lavfi", "-i", "sine=d=60", "-f", "mp3", "-y",
  "file:" + join(jobDir, "output.mp3")];
await runTool("ffmpeg", args, { timeoutSeconds: 120, cpuSeconds: 120, workDir: workDir.path });
`;

describe.skipIf(!hasProc)("sweep of a dead converter", () => {
  test("kills its ffmpeg and removes the folder", async () => {
    const child = spawn(process.execPath, ["-e", CONVERTER_CHILD], {
      cwd: join(import.meta.dir, ".."),
      env: { ...process.env, ROOT: root },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    let toolPid: number | undefined;
    try {
      const instance = await waitFor("the instance path", async () =>
        output.includes("\n") ? output.trim() : undefined,
      );
      const record = await waitFor("the tool record", async () =>
        (await readdir(instance)).find((name) => name.startsWith("tool-")),
      );
      toolPid = Number(/\d+/.exec(record)?.[0]);

      child.kill("SIGKILL");
      await exited(child);
      // ffmpeg runs in a session of its own, so it outlives the converter.
      expect(isRunning(toolPid)).toBe(true);

      const result = await sweepWorkDir(root, { legacyMaxAgeMs: HOUR_MS });
      expect(result).toEqual({ removed: 1, killed: 1, unchecked: 0, errors: [] });
      expect(isRunning(toolPid)).toBe(false);
      expect(await readdir(root)).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      if (toolPid !== undefined && isRunning(toolPid)) process.kill(toolPid, "SIGKILL");
    }
  }, 30_000);

  test("spares a process that reused the PID", async () => {
    const instance = await abandonedInstance();
    // Detached, so that it leads its process group as a recorded tool would.
    const unrelated = spawn("sleep", ["30"], { detached: true, stdio: "ignore" });
    try {
      const pid = unrelated.pid as number;
      writeToolRecord(instance, pid, ["ffmpeg", "-i", `file:${instance}/job-a1b2c3/input`]);

      const result = await sweepWorkDir(root, { legacyMaxAgeMs: HOUR_MS });
      expect(result).toEqual({ removed: 1, killed: 0, unchecked: 0, errors: [] });
      expect(isRunning(pid)).toBe(true);
    } finally {
      unrelated.kill("SIGKILL");
    }
  });

  test("skips the kill without /proc", async () => {
    const instance = await abandonedInstance();
    const tool = spawn("sleep", ["30"], { detached: true, stdio: "ignore" });
    try {
      const pid = tool.pid as number;
      writeToolRecord(instance, pid, ["sleep", "30"]);
      const procRoot = join(root, "no-proc");

      const result = await sweepWorkDir(root, { legacyMaxAgeMs: HOUR_MS, procRoot });
      expect(result).toEqual({ removed: 1, killed: 0, unchecked: 1, errors: [] });
      expect(isRunning(pid)).toBe(true);
    } finally {
      tool.kill("SIGKILL");
    }
  });
});

test("runTool records the tool while it runs", async () => {
  const controller = new AbortController();
  const args = ["-nostdin", "-re", "-f", "lavfi", "-i", "sine", "-f", "null", "-"];
  const running = runTool("ffmpeg", args, {
    timeoutSeconds: 60,
    cpuSeconds: 60,
    signal: controller.signal,
    workDir: root,
  });
  const names = await readdir(root);
  const record = names.length === 1 ? readFileSync(join(root, names[0] ?? ""), "utf8") : "{}";
  controller.abort();
  await running;

  expect(names).toHaveLength(1);
  expect(names[0]).toMatch(/^tool-[0-9]+\.json$/);
  expect(JSON.parse(record).argv).toEqual(["ffmpeg", ...args]);
  expect(await readdir(root)).toEqual([]);
});

describe("isRecordedTool", () => {
  const dir = "/work/mp3converter-abc123";
  const argv = ["ffmpeg", "-i", `file:${dir}/job-a1b2c3/input`, "-f", "mp3", "-"];
  const record: ToolRecord = { host: "h", pid_namespace: null, pid: 42, argv };

  test.each([
    ["accepts the recorded command", argv, true],
    ["accepts the command under prlimit", ["prlimit", "--cpu=60", "--", ...argv], true],
    ["rejects a wrapper without --", ["nice", "-n", "5", ...argv], false],
    ["rejects other arguments", ["ffmpeg", "-i", `file:${dir}/job-a1b2c3/input`], false],
    ["rejects another program", ["sleep", "30"], false],
    ["rejects an empty command line", [], false],
  ])("%s", (_case, cmdline, expected) => {
    expect(isRecordedTool(cmdline, record, dir)).toBe(expected);
  });

  test("rejects a command outside the directory", () => {
    const elsewhere = ["ffmpeg", "-i", "file:/tmp/input"];
    expect(isRecordedTool(elsewhere, { ...record, argv: elsewhere }, dir)).toBe(false);
  });
});
