/** The data directory lock of the all-in-one system. */
import { afterEach, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DataDirInUseError,
  LOCK_FILE_NAME,
  lockDataDir,
  removeStaleLock,
} from "./data-dir-lock.ts";
import { runDevRunnerToExit } from "./dev-runner.ts";

const dirs: string[] = [];
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "mp3c-lock-"));
  dirs.push(dir);
  return dir;
}

/** Starts a process that runs for a minute, standing in for another system. */
function otherProcess(): ChildProcess & { pid: number } {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  children.push(child);
  return child as ChildProcess & { pid: number };
}

/** Resolves once `child` has exited and been reaped. */
function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

test("lock writes the PID and release removes it", async () => {
  const dir = tempDir();
  const release = await lockDataDir(dir);
  expect(readFileSync(join(dir, LOCK_FILE_NAME), "utf8")).toBe(`${process.pid}\n`);
  expect(readdirSync(dir)).toEqual([LOCK_FILE_NAME]);
  await release();
  expect(existsSync(join(dir, LOCK_FILE_NAME))).toBe(false);
});

test("lock held by a running process is rejected", async () => {
  const dir = tempDir();
  const other = otherProcess();
  writeFileSync(join(dir, LOCK_FILE_NAME), `${other.pid}\n`);

  const error = await lockDataDir(dir).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(DataDirInUseError);
  expect((error as DataDirInUseError).pid).toBe(other.pid);
  expect((error as Error).message).toContain(`in use by process ${other.pid}`);
  expect((error as Error).message).toContain("DATA_DIR");
  expect(readFileSync(join(dir, LOCK_FILE_NAME), "utf8")).toBe(`${other.pid}\n`);
});

test("lock of a stopped process is taken over", async () => {
  const dir = tempDir();
  const other = otherProcess();
  writeFileSync(join(dir, LOCK_FILE_NAME), `${other.pid}\n`);
  other.kill("SIGKILL");
  await exited(other);

  const release = await lockDataDir(dir);
  expect(readFileSync(join(dir, LOCK_FILE_NAME), "utf8")).toBe(`${process.pid}\n`);
  await release();
});

test("unreadable lock file is taken over", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, LOCK_FILE_NAME), "not a pid");
  const release = await lockDataDir(dir);
  expect(readFileSync(join(dir, LOCK_FILE_NAME), "utf8")).toBe(`${process.pid}\n`);
  await release();
});

test("dev runner exits when the directory is in use", async () => {
  const dir = tempDir();
  const other = otherProcess();
  writeFileSync(join(dir, LOCK_FILE_NAME), `${other.pid}\n`);

  const { code, stderr } = await runDevRunnerToExit(dir);

  expect(code).toBe(1);
  expect(stderr).toContain(`in use by process ${other.pid}`);
}, 30_000);

test("stale-lock removal spares a lock taken meanwhile", async () => {
  // A process read a dead PID, and another process then replaced the file with its own lock.
  // The removal that follows must find the running holder and leave the file.
  const dir = tempDir();
  const other = otherProcess();
  const path = join(dir, LOCK_FILE_NAME);
  writeFileSync(path, `${other.pid}\n`);

  await removeStaleLock(path, `${process.pid}\n`);

  expect(readFileSync(path, "utf8")).toBe(`${other.pid}\n`);
  expect(existsSync(`${path}.takeover`)).toBe(false);
});

test("processes taking over a stale lock at once: one wins", async () => {
  const dir = tempDir();
  const other = otherProcess();
  writeFileSync(join(dir, LOCK_FILE_NAME), `${other.pid}\n`);
  other.kill("SIGKILL");
  await exited(other);
  const script = join(dir, "take.ts");
  writeFileSync(
    script,
    [
      `import { lockDataDir } from ${JSON.stringify(join(import.meta.dir, "data-dir-lock.ts"))};`,
      "try {",
      `  const release = await lockDataDir(${JSON.stringify(dir)});`,
      '  process.stdout.write("locked");',
      "  await new Promise((resolve) => setTimeout(resolve, 2_000));",
      "  await release();",
      "} catch (error) {",
      "  process.stdout.write((error as Error).name);",
      "}",
    ].join("\n"),
  );

  const outcomes = await Promise.all(
    [1, 2, 3, 4, 5].map(
      () =>
        new Promise<string>((resolve) => {
          const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "ignore"] });
          children.push(child);
          let output = "";
          child.stdout?.on("data", (chunk: Buffer) => {
            output += chunk.toString();
          });
          child.on("close", () => resolve(output));
        }),
    ),
  );

  expect(outcomes.filter((outcome) => outcome === "locked")).toHaveLength(1);
  expect(outcomes.filter((outcome) => outcome === "DataDirInUseError")).toHaveLength(4);
}, 30_000);
