/**
 * The lock that keeps two all-in-one systems off one data directory. Each system republishes
 * every unfinished job at start-up, because its in-process broker lost its messages, so a second
 * system started while the first still drains would convert the same jobs and email twice.
 */
import { readFileSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Name of the lock file in the data directory. It contains the PID of the holder. */
export const LOCK_FILE_NAME = "all-in-one.pid";

/** Maximum attempts to take the lock while other starting processes replace a stale lock file. */
const LOCK_ATTEMPTS = 3;

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
 * Returns whether `pid` names a running process. A zombie (a dead process that its parent has not
 * reaped yet) counts as stopped where /proc shows it.
 */
export function isProcessRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return true;
  }
}

/**
 * Takes the lock of `dataDir` for this process and returns the function that releases it. A lock
 * file left by a process that no longer runs is taken over. Raises `DataDirInUseError` when a
 * running process holds it.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE_NAME);
  const ours = `${process.pid}\n`;
  for (let attempt = 1; attempt <= LOCK_ATTEMPTS; attempt++) {
    try {
      await writeFile(path, ours, { flag: "wx" });
      return async () => {
        const content = await readFile(path, "utf8").catch(() => "");
        if (content === ours) await rm(path, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
    const valid = Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid;
    if (valid && isProcessRunning(holder)) throw new DataDirInUseError(dataDir, holder);
    await rm(path, { force: true });
  }
  throw new Error(`failed to lock ${path}: other processes kept taking it; start again`);
}
