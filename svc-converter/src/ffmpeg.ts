/**
 * Runs `ffmpeg` and `ffprobe` as child processes with bounded output, a wall-clock timeout and a
 * CPU-time limit. Arguments are passed as an array and no shell is involved, so file names never
 * reach a shell parser.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { removeToolRecord, writeToolRecord } from "./orphans.ts";

/**
 * Demuxers a user upload may use, checked by `-format_whitelist` on every ffmpeg and ffprobe call.
 * Playlist and indirection demuxers (hls, dash, concat, image2 sequences, vobsub and the like)
 * are left out on purpose, because they open other files named inside the upload.
 */
export const ALLOWED_DEMUXERS = [
  "mov",
  "mp4",
  "m4a",
  "3gp",
  "3g2",
  "mj2",
  "matroska",
  "webm",
  "avi",
  "flv",
  "ogg",
  "mpegts",
  "mpeg",
  "asf",
  "wav",
  "w64",
  "aiff",
  "caf",
  "flac",
  "mp3",
  "aac",
  "ac3",
  "eac3",
  "amr",
  "wv",
  "ape",
] as const;

/**
 * Input options placed before `-i` on every call: only the `file` protocol (no network, no
 * pipes) and only the demuxers in `ALLOWED_DEMUXERS`. The `file:` prefix stops ffmpeg from
 * reading a colon in the path as a protocol name.
 */
export function safeInputArgs(path: string): string[] {
  return [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    ALLOWED_DEMUXERS.join(","),
    "-i",
    `file:${path}`,
  ];
}

/** Options ahead of every ffmpeg call: no reading from stdin, no banner, errors only. */
export const FFMPEG_BASE_ARGS = ["-nostdin", "-hide_banner", "-nostats", "-v", "error"] as const;

/** Options ahead of every ffprobe call; ffprobe 5.1 has no `-nostdin` and never reads stdin. */
export const FFPROBE_BASE_ARGS = ["-hide_banner", "-v", "error"] as const;

/** Bytes of stderr kept for error messages; ffmpeg prints its cause in the last lines. */
export const STDERR_TAIL_BYTES = 8 * 1024;

/** Default bound on stdout; ffprobe's JSON for a file with many streams stays far below it. */
export const DEFAULT_MAX_STDOUT_BYTES = 4 * 1024 * 1024;

/** Signals by which an operator or a supervisor stops processes, as opposed to a crash. */
const OUTSIDE_STOP_SIGNALS: ReadonlySet<string> = new Set(["SIGTERM", "SIGINT", "SIGHUP"]);

/**
 * ffmpeg catches SIGTERM, SIGINT and SIGHUP, finishes its output and exits with this status, so
 * the signal never shows in the exit status. ffmpeg 5.1 uses it for nothing else: its main()
 * ends with `received_nb_signals ? 255 : main_return_code`, and errors exit with 1. The
 * "received signal" line it prints is at info level, below the `-v error` the converter runs.
 */
const CAUGHT_STOP_SIGNAL_STATUS = 255;

/** Grace period between the timeout and the SIGKILL that follows an ignored SIGTERM. */
const TERM_GRACE_MS = 2_000;

export interface RunLimits {
  /** Wall-clock limit; the process is killed when it passes. */
  timeoutSeconds: number;
  /** CPU-time limit applied with `prlimit --cpu` when prlimit is installed. */
  cpuSeconds: number;
  /** The process is killed when its stdout passes this many bytes. */
  maxStdoutBytes?: number;
  /** Kills the process when aborted, for example on shutdown. */
  signal?: AbortSignal;
  /**
   * The conversion's work directory. While the process runs, a record of it stays there, so
   * that a sweep can kill the process if the converter dies (see `orphans.ts`).
   */
  workDir?: string;
}

export interface RunResult {
  exitCode: number | null;
  /** Signal that ended the process, such as `SIGKILL`; null when it exited by itself. */
  exitSignal: NodeJS.Signals | null;
  stdout: string;
  /** The last `STDERR_TAIL_BYTES` of stderr. */
  stderrTail: string;
  /** Killed because it ran longer than `timeoutSeconds`. */
  timedOut: boolean;
  /**
   * Ended by SIGKILL or SIGXCPU that this module did not send. The CPU limit ends a process this
   * way (prlimit sets the soft and hard limits equal, so the kernel sends SIGKILL), and so does
   * the kernel's out-of-memory killer.
   */
  killedByLimit: boolean;
  /**
   * Ended by SIGTERM, SIGINT or SIGHUP from outside, such as a shutdown of the whole process
   * group. The input is not at fault, so callers retry the job instead of failing it.
   */
  interrupted: boolean;
  /** Killed because stdout passed `maxStdoutBytes`. */
  stdoutOverflow: boolean;
  /** Killed because `signal` was aborted. */
  aborted: boolean;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Resolves `name` the way a shell would: as a path when it has a slash, else on PATH. */
export function findExecutable(name: string): string | null {
  if (name.includes("/")) return isExecutable(name) ? name : null;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

let prlimitPath: string | null | undefined;

/** Finds `prlimit` (util-linux) on PATH once; null when it is not installed. */
export function findPrlimit(): string | null {
  if (prlimitPath === undefined) prlimitPath = findExecutable("prlimit");
  return prlimitPath;
}

/** Builds the command line, wrapped in `prlimit --cpu` when prlimit exists. */
function commandLine(binary: string, args: readonly string[], cpuSeconds: number): string[] {
  const prlimit = findPrlimit();
  // NOTE: without prlimit only the wall-clock timeout bounds a run; the CPU limit is skipped.
  if (prlimit === null) return [binary, ...args];
  return [prlimit, `--cpu=${cpuSeconds}`, "--", binary, ...args];
}

/** Appends `chunk` to `tail` and keeps the last `max` bytes. */
function keepTail(tail: Buffer, chunk: Buffer, max: number): Buffer {
  const joined = Buffer.concat([tail, chunk]);
  return joined.length > max ? joined.subarray(joined.length - max) : joined;
}

/**
 * Runs `binary` with `args` and resolves when it ends, whatever its exit status. Rejects only when
 * the process cannot be started (for example a wrong `FFMPEG_PATH`).
 */
export function runTool(
  binary: string,
  args: readonly string[],
  limits: RunLimits,
): Promise<RunResult> {
  // Checked here because under prlimit a missing binary would look like a failed run.
  if (findExecutable(binary) === null) {
    return Promise.reject(
      new Error(`failed to start ${binary}: no such executable; check the path in the settings`),
    );
  }
  const [command, ...commandArgs] = commandLine(binary, args, limits.cpuSeconds);
  const maxStdoutBytes = limits.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES;

  return new Promise((resolve, reject) => {
    const child = spawn(command as string, commandArgs, {
      stdio: ["ignore", "pipe", "pipe"],
      shell: false,
      // A session of its own, so that Ctrl-C or a hangup in the converter's terminal reaches only
      // the converter, which then drains, and not ffmpeg, which would stop mid-file. A tool left
      // running by a converter killed with SIGKILL is stopped by the next sweep of WORK_DIR.
      detached: true,
    });
    const stdoutChunks: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrTail: Buffer = Buffer.alloc(0);
    let timedOut = false;
    let stdoutOverflow = false;
    let aborted = false;
    let killedByUs = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    let recordPath: string | undefined;
    let recordError: unknown;

    const kill = () => {
      if (killedByUs) return;
      killedByUs = true;
      child.kill("SIGTERM");
      killTimer = setTimeout(() => child.kill("SIGKILL"), TERM_GRACE_MS);
    };
    const timeout = setTimeout(() => {
      timedOut = true;
      kill();
    }, limits.timeoutSeconds * 1000);
    const onAbort = () => {
      aborted = true;
      kill();
    };
    if (limits.signal?.aborted) onAbort();
    limits.signal?.addEventListener("abort", onAbort, { once: true });

    child.stdout.on("data", (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > maxStdoutBytes) {
        stdoutOverflow = true;
        kill();
        return;
      }
      stdoutChunks.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderrTail = keepTail(stderrTail, chunk, STDERR_TAIL_BYTES);
    });

    const cleanUp = () => {
      clearTimeout(timeout);
      clearTimeout(killTimer);
      limits.signal?.removeEventListener("abort", onAbort);
      if (recordPath !== undefined) removeToolRecord(recordPath);
    };
    child.on("error", (error) => {
      cleanUp();
      reject(new Error(`failed to start ${binary}: ${error.message}`, { cause: error }));
    });
    child.on("close", (exitCode, exitSignal) => {
      cleanUp();
      if (recordError !== undefined) {
        const reason = recordError instanceof Error ? recordError.message : String(recordError);
        const message = `failed to record ${binary} in the work directory: ${reason}`;
        reject(new Error(message, { cause: recordError }));
        return;
      }
      const stoppedFromOutside =
        exitSignal !== null
          ? OUTSIDE_STOP_SIGNALS.has(exitSignal)
          : exitCode === CAUGHT_STOP_SIGNAL_STATUS;
      resolve({
        exitCode,
        exitSignal,
        stdout: Buffer.concat(stdoutChunks).toString("utf8"),
        stderrTail: stderrTail.toString("utf8"),
        timedOut,
        killedByLimit: !killedByUs && (exitSignal === "SIGKILL" || exitSignal === "SIGXCPU"),
        interrupted: !killedByUs && stoppedFromOutside,
        stdoutOverflow,
        aborted,
      });
    });

    if (limits.workDir !== undefined && child.pid !== undefined) {
      try {
        recordPath = writeToolRecord(limits.workDir, child.pid, [binary, ...args]);
      } catch (error) {
        // Without the record, a crash of the converter would leave the tool running.
        recordError = error;
        kill();
      }
    }
  });
}
