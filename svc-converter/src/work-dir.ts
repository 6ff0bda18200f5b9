/**
 * The converter's temporary files in WORK_DIR. WORK_DIR is the OS temp dir by default and may be
 * shared by several converter processes, so each process keeps its files in an instance
 * directory of its own (`mp3converter-XXXXXX`). The directory records its owner (host, PID
 * namespace and PID) in `owner.json`, and the owner refreshes its modification time as a
 * heartbeat. A sweep at start-up and after each heartbeat removes what a crash or SIGKILL left
 * behind. It removes an instance directory whose owner has exited, and one whose owner it cannot
 * check (another host or container) once no heartbeat came for `HEARTBEAT_STALE_MS`. It also
 * removes the job directories of earlier versions once they are older than any conversion can
 * run. Before it removes an instance directory, the sweep kills the ffmpeg and
 * ffprobe processes that its owner left running (see `orphans.ts`).
 */
import { randomUUID } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { errorFields, type Logger } from "@mp3converter/lib/log";
import { isToolRecordName, killOrphanedTools, pidNamespace } from "./orphans.ts";

/** Name prefix of an instance directory, to which `mkdtemp` appends six random characters. */
export const INSTANCE_PREFIX = "mp3converter-";

/** File in an instance directory that names its owner. */
export const OWNER_FILE = "owner.json";

/** Time between two heartbeats of a running converter, each followed by a sweep. */
export const HEARTBEAT_INTERVAL_MS = 30_000;

/**
 * Age of the last heartbeat after which an instance directory counts as abandoned. It covers
 * owners this process cannot check, such as a converter on another host or in another container
 * that shares WORK_DIR, or an earlier run of a container that Kubernetes restarted.
 */
export const HEARTBEAT_STALE_MS = 5 * 60_000;

/**
 * Tool runs of one conversion, each limited to CONVERT_TIMEOUT_SECONDS: ffprobe of the input,
 * ffmpeg, and ffprobe of the MP3.
 */
const TOOL_RUNS_PER_CONVERSION = 3;

/** Time for storing the MP3 after the last tool run, added to the age limit of old directories. */
const STORE_MARGIN_MS = 10 * 60_000;

const INSTANCE_NAME = /^mp3converter-[A-Za-z0-9]{6}$/;

/**
 * Job directories that earlier versions of the converter made directly in WORK_DIR, each kind
 * with the only file it contains.
 */
const LEGACY_DIRECTORIES = [
  { name: /^job-[A-Za-z0-9]{6}$/, files: ["input"] },
  { name: /^mp3-[A-Za-z0-9]{6}$/, files: ["output.mp3"] },
];

/** Identity of the process that owns an instance directory, as stored in `owner.json`. */
interface InstanceOwner {
  host: string;
  /** The PID namespace, such as `pid:[4026531836]`, or null where `/proc` does not show it. */
  pid_namespace: string | null;
  pid: number;
  /** Random id of the instance, which distinguishes the converters of one process. */
  instance: string;
}

/** Ids of the instances open in this process. Tests open several in one process. */
const ownInstances = new Set<string>();

/** The instance directory of a running converter. */
export interface WorkDir {
  /** Directory for the job's temporary files; conversions make their subdirectories here. */
  readonly path: string;
  /** Stops the heartbeat and removes the instance directory with everything in it. */
  close(): Promise<void>;
}

export interface WorkDirOptions {
  /** WORK_DIR, created when missing. */
  root: string;
  /** CONVERT_TIMEOUT_SECONDS, which bounds how long an old job directory may be in use. */
  timeoutSeconds: number;
  logger: Logger;
}

/**
 * Creates this converter's instance directory in `options.root`, sweeps the root once, and starts
 * the heartbeat, which sweeps again after each beat.
 */
export async function openWorkDir(options: WorkDirOptions): Promise<WorkDir> {
  await mkdir(options.root, { recursive: true });
  const path = await mkdtemp(join(options.root, INSTANCE_PREFIX));
  const instance = randomUUID();
  ownInstances.add(instance);
  const owner: InstanceOwner = { ...currentProcess(), instance };
  await writeFile(join(path, OWNER_FILE), JSON.stringify(owner));

  const sweep = () => sweepAndLog(options);
  await sweep();
  let beating: Promise<void> | undefined;
  const timer = setInterval(() => {
    beating ??= beat(path, options.logger)
      .then(sweep)
      .finally(() => {
        beating = undefined;
      });
  }, HEARTBEAT_INTERVAL_MS);
  // The heartbeat alone must not keep a process alive whose other work has ended.
  timer.unref?.();

  let closing: Promise<void> | undefined;
  return {
    path,
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        await beating;
        await rm(path, { recursive: true, force: true });
        ownInstances.delete(instance);
      })();
      return closing;
    },
  };
}

async function beat(path: string, logger: Logger): Promise<void> {
  const now = new Date();
  try {
    await utimes(path, now, now);
  } catch (error) {
    logger.warn({ err: errorFields(error), work_dir: path }, "work directory heartbeat failed");
  }
}

async function sweepAndLog(options: WorkDirOptions): Promise<void> {
  const maxAgeMs = TOOL_RUNS_PER_CONVERSION * options.timeoutSeconds * 1000 + STORE_MARGIN_MS;
  const result = await sweepWorkDir(options.root, { legacyMaxAgeMs: maxAgeMs });
  if (result.killed > 0) {
    options.logger.warn(
      { work_dir: options.root, killed: result.killed },
      "killed ffmpeg processes left running by a converter that died",
    );
  }
  if (result.unchecked > 0) {
    options.logger.warn(
      { work_dir: options.root, unchecked: result.unchecked },
      "cannot check for ffmpeg processes left by a converter that died, because /proc is " +
        "missing or they ran on another host; they run until CONVERT_CPU_SECONDS",
    );
  }
  const fields = { work_dir: options.root, removed: result.removed };
  if (result.errors.length > 0) {
    const failed = result.errors.length;
    options.logger.warn(
      { ...fields, failed, err: errorFields(result.errors[0]) },
      "removing leftover work directories failed; retrying after the next heartbeat",
    );
  } else if (result.removed > 0) {
    options.logger.info(fields, "leftover work directories removed");
  }
}

/** Outcome of one sweep: counts of removed directories and killed tools, and the errors met. */
export interface SweepResult {
  removed: number;
  /** Process groups of tools, left running by a dead converter, that received SIGKILL. */
  killed: number;
  /** Recorded tools that could not be checked and so were left alone. */
  unchecked: number;
  errors: unknown[];
}

/**
 * Removes from `root` the instance directories whose owner has exited or whose heartbeat is
 * older than `HEARTBEAT_STALE_MS`, after killing the tools still running for them, and the job
 * directories of older converters that were last
 * written more than `legacyMaxAgeMs` ago. Everything else stays, including symbolic links and
 * directories whose names or contents are not the converter's. `procRoot` is where procfs is
 * mounted, `/proc` unless a test changes it.
 */
export async function sweepWorkDir(
  root: string,
  options: { legacyMaxAgeMs: number; now?: number; procRoot?: string },
): Promise<SweepResult> {
  const now = options.now ?? Date.now();
  const result: SweepResult = { removed: 0, killed: 0, unchecked: 0, errors: [] };
  let entries: Array<{ name: string; isDirectory(): boolean }>;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (error) {
    result.errors.push(error);
    return result;
  }
  for (const entry of entries) {
    // A Dirent of a symbolic link is not a directory, so the sweep never follows one.
    if (!entry.isDirectory()) continue;
    const path = join(root, entry.name);
    try {
      if (await isAbandoned(path, entry.name, now, options.legacyMaxAgeMs)) {
        if (INSTANCE_NAME.test(entry.name)) {
          const orphans = await killOrphanedTools(path, options.procRoot);
          result.killed += orphans.killed;
          result.unchecked += orphans.unchecked;
          result.errors.push(...orphans.errors);
        }
        await rm(path, { recursive: true, force: true });
        result.removed += 1;
      }
    } catch (error) {
      result.errors.push(error);
    }
  }
  return result;
}

async function isAbandoned(
  path: string,
  name: string,
  now: number,
  legacyMaxAgeMs: number,
): Promise<boolean> {
  if (INSTANCE_NAME.test(name)) return isAbandonedInstance(path, now);
  const legacy = LEGACY_DIRECTORIES.find((kind) => kind.name.test(name));
  if (!legacy) return false;
  const names = await readdir(path);
  if (!names.every((file) => legacy.files.includes(file))) return false;
  return now - (await newestChange(path, names)) > legacyMaxAgeMs;
}

async function isAbandonedInstance(path: string, now: number): Promise<boolean> {
  const names = await readdir(path);
  const ours = (file: string) =>
    file === OWNER_FILE ||
    isToolRecordName(file) ||
    LEGACY_DIRECTORIES.some((kind) => kind.name.test(file));
  if (!names.every(ours)) return false;
  const owner = await readOwner(path);
  if (owner !== null && ownInstances.has(owner.instance)) return false;
  const status = owner === null ? "unchecked" : ownerStatus(owner);
  if (status === "exited") return true;
  // A converter on this host that still runs keeps its directory and its ffmpeg, even when its
  // heartbeat is late, because the sweep would otherwise kill a conversion in progress.
  if (status === "running") return false;
  return now - (await lstat(path)).mtimeMs > HEARTBEAT_STALE_MS;
}

/** Returns the newest modification time of `path` and of its entries `names`. */
async function newestChange(path: string, names: string[]): Promise<number> {
  const times = await Promise.all(
    [path, ...names.map((name) => join(path, name))].map(
      async (file) => (await lstat(file)).mtimeMs,
    ),
  );
  return Math.max(...times);
}

function currentProcess(): Omit<InstanceOwner, "instance"> {
  return { host: hostname(), pid_namespace: pidNamespace(), pid: process.pid };
}

/**
 * Reads `owner.json`. Returns null when it is missing or invalid, as after a crash between
 * creating the directory and writing the file.
 */
async function readOwner(path: string): Promise<InstanceOwner | null> {
  let owner: InstanceOwner;
  try {
    owner = JSON.parse(await readFile(join(path, OWNER_FILE), "utf8")) as InstanceOwner;
  } catch {
    return null;
  }
  const valid =
    typeof owner.host === "string" &&
    (owner.pid_namespace === null || typeof owner.pid_namespace === "string") &&
    Number.isSafeInteger(owner.pid) &&
    owner.pid > 0 &&
    typeof owner.instance === "string";
  return valid ? owner : null;
}

/**
 * Tells whether `owner`, which is not an instance of this process, has certainly exited. That
 * is known only for an owner on this host and in this PID namespace, when its PID is this
 * process's own (so it was an earlier process) or no process has that PID. A PID in use may
 * belong to an unrelated process that reused it, so that case waits for the stale heartbeat.
 */
/**
 * Returns whether the owner of an instance directory has exited or still runs, or `unchecked`
 * when it is on another host or in another PID namespace. An owner with this process's PID is an
 * earlier run whose PID was reused, so it has exited.
 */
function ownerStatus(owner: InstanceOwner): "exited" | "running" | "unchecked" {
  const self = currentProcess();
  if (owner.host !== self.host || owner.pid_namespace !== self.pid_namespace) return "unchecked";
  if (owner.pid === self.pid) return "exited";
  try {
    process.kill(owner.pid, 0);
    return "running";
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ESRCH") return "exited";
    // EPERM: the process exists but belongs to another user.
    return code === "EPERM" ? "running" : "unchecked";
  }
}
