/**
 * Records of running ffmpeg and ffprobe processes, so that a sweep of the work directory can stop
 * the ones whose converter died. `runTool` starts each tool in a session of its own, so a tool
 * outlives a converter killed with SIGKILL and would otherwise run until its CPU limit. While a
 * tool runs, `runTool` keeps `tool-<pid>.json` in the conversion's work directory. Before the
 * sweep removes an abandoned instance directory, it sends SIGKILL to each recorded process group.
 * It does so only when /proc shows that the PID still runs the recorded command line and that
 * this command line names a path in that directory, so a reused PID is never signalled.
 */
import { readlinkSync, rmSync, writeFileSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";

/** Name of a tool record. The number is the PID, which is also the process group id. */
const TOOL_RECORD_NAME = /^tool-([1-9][0-9]*)\.json$/;

/** Time the sweep waits for a killed process group to exit before it removes the directory. */
const EXIT_WAIT_MS = 2_000;

/** A running tool, as stored in `tool-<pid>.json`. */
export interface ToolRecord {
  host: string;
  /** The PID namespace, such as `pid:[4026531836]`, or null where /proc does not show it. */
  pid_namespace: string | null;
  pid: number;
  /** Command line of the tool itself, without the prlimit wrapper in front. */
  argv: string[];
}

/** Outcome of `killOrphanedTools`. */
export interface OrphanResult {
  /** Process groups that received SIGKILL. */
  killed: number;
  /** Recorded processes that could not be checked: no /proc, or another host or container. */
  unchecked: number;
  errors: unknown[];
}

/** Returns the PID namespace of this process, or null where /proc does not show it. */
export function pidNamespace(): string | null {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return null;
  }
}

/** Tells whether `name` is the file name of a tool record. */
export function isToolRecordName(name: string): boolean {
  return TOOL_RECORD_NAME.test(name);
}

/**
 * Writes the record of the tool with `pid`, started with `argv`, into `dir` and returns the
 * record's path. Synchronous, so that no await separates the spawn from the record.
 */
export function writeToolRecord(dir: string, pid: number, argv: readonly string[]): string {
  const path = join(dir, `tool-${pid}.json`);
  const record: ToolRecord = {
    host: hostname(),
    pid_namespace: pidNamespace(),
    pid,
    argv: [...argv],
  };
  writeFileSync(path, JSON.stringify(record));
  return path;
}

/** Deletes a tool record, unless a sweep has removed it already. */
export function removeToolRecord(path: string): void {
  rmSync(path, { force: true });
}

/**
 * Tells whether `cmdline`, the argument vector of a running process, is the tool of `record`,
 * started for a job in `dir`. Until prlimit executes the tool, the wrapper's own arguments come
 * first and end with `--`.
 */
export function isRecordedTool(cmdline: readonly string[], record: ToolRecord, dir: string) {
  const argv = record.argv;
  if (argv.length === 0 || cmdline.length < argv.length) return false;
  const offset = cmdline.length - argv.length;
  if (!argv.every((arg, i) => cmdline[offset + i] === arg)) return false;
  if (offset > 0 && cmdline[offset - 1] !== "--") return false;
  return argv.some((arg) => arg.includes(`${dir}/`));
}

/**
 * Sends SIGKILL to the process groups recorded in `dir` whose converter is gone, and waits up to
 * `EXIT_WAIT_MS` for them to exit. `procRoot` is where procfs is mounted, which tests change.
 */
export async function killOrphanedTools(dir: string, procRoot = "/proc"): Promise<OrphanResult> {
  const result: OrphanResult = { killed: 0, unchecked: 0, errors: [] };
  const names = (await readdir(dir)).filter(isToolRecordName);
  if (names.length === 0) return result;
  const hasProc = await exists(join(procRoot, "self"));
  const self = { host: hostname(), pid_namespace: pidNamespace() };

  const killed: number[] = [];
  for (const name of names) {
    try {
      const record = await readRecord(join(dir, name));
      if (record === null) continue;
      const local = record.host === self.host && record.pid_namespace === self.pid_namespace;
      if (!hasProc || !local) {
        result.unchecked += 1;
        continue;
      }
      if (!(await isOurToolRunning(record, dir, procRoot))) continue;
      process.kill(-record.pid, "SIGKILL");
      killed.push(record.pid);
      result.killed += 1;
    } catch (error) {
      // ESRCH: the process exited between the check and the signal.
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") result.errors.push(error);
    }
  }
  await waitForExit(killed, procRoot);
  return result;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads a tool record; returns null when it is invalid, as after a crash mid-write. */
async function readRecord(path: string): Promise<ToolRecord | null> {
  let record: ToolRecord;
  try {
    record = JSON.parse(await readFile(path, "utf8")) as ToolRecord;
  } catch {
    return null;
  }
  const valid =
    typeof record.host === "string" &&
    (record.pid_namespace === null || typeof record.pid_namespace === "string") &&
    Number.isSafeInteger(record.pid) &&
    record.pid > 1 &&
    Array.isArray(record.argv) &&
    record.argv.every((arg) => typeof arg === "string");
  return valid ? record : null;
}

/** Fields of `/proc/<pid>/stat` after the command name, which may contain spaces. */
async function processStat(pid: number, procRoot: string): Promise<string[] | null> {
  try {
    const line = await readFile(join(procRoot, String(pid), "stat"), "utf8");
    return line.slice(line.lastIndexOf(")") + 2).split(" ");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/**
 * Tells whether the recorded PID runs the recorded tool for `dir` and still leads its process
 * group. A zombie has exited already and has an empty command line, so it never matches.
 */
async function isOurToolRunning(record: ToolRecord, dir: string, procRoot: string) {
  let cmdline: string;
  try {
    cmdline = await readFile(join(procRoot, String(record.pid), "cmdline"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
  // Each argument ends with a NUL byte, so the split leaves an empty string at the end.
  if (!isRecordedTool(cmdline.split("\0").slice(0, -1), record, dir)) return false;
  const fields = await processStat(record.pid, procRoot);
  // The third field is the process group id, which a session leader shares with its PID.
  return fields !== null && Number(fields[2]) === record.pid;
}

/** Polls until each PID has exited (gone, or a zombie) or `EXIT_WAIT_MS` has passed. */
async function waitForExit(pids: readonly number[], procRoot: string): Promise<void> {
  const deadline = Date.now() + EXIT_WAIT_MS;
  for (const pid of pids) {
    for (;;) {
      const fields = await processStat(pid, procRoot);
      if (fields === null || fields[0] === "Z" || Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
