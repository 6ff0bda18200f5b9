/**
 * The lock that keeps two all-in-one systems off one data directory. Each system republishes
 * every unfinished job at start-up, because its in-process broker lost its messages, so a second
 * system started while the first still drains would convert the same jobs and email twice.
 */

import { randomBytes } from "node:crypto";
import { link, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isProcessRunning } from "../src/runtime.ts";

/** Name of the lock file in the data directory. It contains the PID of the holder. */
export const LOCK_FILE_NAME = "all-in-one.pid";

/** Maximum attempts to take the lock while other starting processes replace a stale lock file. */
const LOCK_ATTEMPTS = 40;

/** Wait between attempts while another process takes over a stale lock. */
const LOCK_RETRY_MS = 50;

/** Suffix of the file that the process taking over a stale lock holds meanwhile. */
const TAKEOVER_SUFFIX = ".takeover";

/** Age after which a takeover file counts as left behind by a crash. */
const TAKEOVER_STALE_MS = 10_000;

/** Raised when a running process holds the lock of the data directory. */
export class DataDirInUseError extends Error {
  readonly pid: number;

  constructor(dataDir: string, pid: number) {
    super(
      `The data directory ${dataDir} is in use by process ${pid}, which may still be finishing ` +
        `its conversions. Wait for it to stop, or set DATA_DIR to another directory. If no ` +
        `mp3converter process ${pid} runs, delete ${join(dataDir, LOCK_FILE_NAME)}.`,
    );
    this.name = "DataDirInUseError";
    this.pid = pid;
  }
}

/**
 * Takes the lock of `dataDir` for this process and returns the function that releases it. A lock
 * file left by a process that no longer runs is taken over. Raises `DataDirInUseError` when the
 * lock belongs to a running process.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE_NAME);
  const ours = `${process.pid}\n`;
  for (let attempt = 1; attempt <= LOCK_ATTEMPTS; attempt++) {
    if (await createExclusive(path, ours)) {
      return async () => {
        const content = await readFile(path, "utf8").catch(() => "");
        if (content === ours) await rm(path, { force: true });
      };
    }
    const holder = await readHolder(path);
    if (holder !== undefined && isProcessRunning(holder)) {
      throw new DataDirInUseError(dataDir, holder);
    }
    await removeStaleLock(path, ours);
  }
  throw new Error(`failed to lock ${path}: other processes kept taking it; start again`);
}

/**
 * Removes the lock file at `path` if it still names no running process. Only the process that
 * creates the takeover file may remove it, so two starting processes cannot each remove the lock
 * that the other has just taken. A takeover file that a crash left behind is removed once stale.
 */
export async function removeStaleLock(path: string, ours: string): Promise<void> {
  const guard = `${path}${TAKEOVER_SUFFIX}`;
  if (!(await createExclusive(guard, ours))) {
    const age = await stat(guard).then(
      (info) => Date.now() - info.mtimeMs,
      () => 0,
    );
    if (age > TAKEOVER_STALE_MS) await rm(guard, { force: true });
    await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
    return;
  }
  try {
    const holder = await readHolder(path);
    if (holder === undefined || !isProcessRunning(holder)) await rm(path, { force: true });
  } finally {
    await rm(guard, { force: true });
  }
}

/**
 * Creates `path` with `content` unless it exists; returns whether this call created it. The
 * content is written to a temporary file that is then linked into place, so that no reader ever
 * sees the file empty and takes it for a stale lock.
 */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString("hex")}`;
  await writeFile(temporary, content, { flag: "wx" });
  try {
    await link(temporary, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    await rm(temporary, { force: true });
  }
}

/** Returns the PID in the lock file, or undefined when it is missing, invalid or this process. */
async function readHolder(path: string): Promise<number | undefined> {
  const holder = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
  const valid = Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid;
  return valid ? holder : undefined;
}
