import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { readlinkSync } from "node:fs";
import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createLogger } from "@mp3converter/lib/log";
import {
  HEARTBEAT_STALE_MS,
  INSTANCE_PREFIX,
  OWNER_FILE,
  openWorkDir,
  sweepWorkDir,
} from "./work-dir.ts";

const HOUR_MS = 60 * 60_000;
const silent = createLogger({ service: "work-dir-test", level: "silent" });

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "converter-work-dir-test-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function pidNamespace(): string | null {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return null;
  }
}

/** Writes an instance directory as a converter would, with a job directory inside. */
async function instanceOf(
  name: string,
  owner: { host?: string; pid: number },
  ageMs = 0,
): Promise<string> {
  const path = join(root, name);
  await mkdir(join(path, "job-a1b2c3"), { recursive: true });
  await writeFile(join(path, "job-a1b2c3", "input"), "half a video");
  const record = {
    host: owner.host ?? hostname(),
    pid_namespace: pidNamespace(),
    pid: owner.pid,
    instance: crypto.randomUUID(),
  };
  await writeFile(join(path, OWNER_FILE), JSON.stringify(record));
  const time = new Date(Date.now() - ageMs);
  await utimes(path, time, time);
  return path;
}

/** Writes a job directory of an older converter, directly in the root. */
async function legacyDirectory(name: string, file: string, ageMs: number): Promise<void> {
  const path = join(root, name);
  await mkdir(path);
  await writeFile(join(path, file), "partial");
  const time = new Date(Date.now() - ageMs);
  await utimes(join(path, file), time, time);
  await utimes(path, time, time);
}

/** Returns the PID of a process that has exited. */
async function exitedPid(): Promise<number> {
  const child = spawn("true");
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid as number;
}

const sweep = (now?: number) => sweepWorkDir(root, { legacyMaxAgeMs: HOUR_MS, now });

/** Result of a sweep that removed `removed` directories and found no tool processes. */
const sweptDirectories = (removed: number) => ({ removed, killed: 0, unchecked: 0, errors: [] });

describe("openWorkDir", () => {
  test("records its owner and removes itself on close", async () => {
    const workDir = await openWorkDir({ root, timeoutSeconds: 60, logger: silent });
    expect(workDir.path.startsWith(join(root, INSTANCE_PREFIX))).toBe(true);
    const owner = JSON.parse(await readFile(join(workDir.path, OWNER_FILE), "utf8"));
    expect(owner.pid).toBe(process.pid);
    expect(owner.host).toBe(hostname());

    await workDir.close();
    expect(await readdir(root)).toEqual([]);
  });

  test("logs the removed count once", async () => {
    await instanceOf("mp3converter-dead01", { pid: await exitedPid() });
    await instanceOf("mp3converter-dead02", { pid: await exitedPid() });
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(JSON.parse(String(chunk)));
        callback();
      },
    });
    const logger = createLogger({ service: "work-dir-test", level: "info", destination });

    const workDir = await openWorkDir({ root, timeoutSeconds: 60, logger });

    const removed = lines.filter((line) => line.msg === "leftover work directories removed");
    expect(removed).toHaveLength(1);
    expect(removed[0]?.removed).toBe(2);
    expect(await readdir(root)).toEqual([workDir.path.slice(root.length + 1)]);
    await workDir.close();
  });

  test("keeps the open instances of this process", async () => {
    const first = await openWorkDir({ root, timeoutSeconds: 60, logger: silent });
    const second = await openWorkDir({ root, timeoutSeconds: 60, logger: silent });

    expect(await sweep(Date.now() + HOUR_MS)).toEqual(sweptDirectories(0));
    expect(await readdir(root)).toHaveLength(2);
    await first.close();
    await second.close();
  });
});

describe("sweepWorkDir", () => {
  test("removes an instance of an exited process", async () => {
    await instanceOf("mp3converter-exited", { pid: await exitedPid() });

    expect(await sweep()).toEqual(sweptDirectories(1));
    expect(await readdir(root)).toEqual([]);
  });

  test("removes an earlier instance with this PID", async () => {
    await instanceOf("mp3converter-reused", { pid: process.pid });

    expect(await sweep()).toEqual(sweptDirectories(1));
  });

  test("keeps a live local owner even when stale", async () => {
    const child = spawn("sleep", ["30"]);
    try {
      await instanceOf("mp3converter-living", { pid: child.pid as number });
      expect(await sweep()).toEqual(sweptDirectories(0));
      expect(await sweep(Date.now() + HEARTBEAT_STALE_MS + 1000)).toEqual(sweptDirectories(0));
      expect(await readdir(root)).toEqual(["mp3converter-living"]);
    } finally {
      child.kill();
    }
  });

  test("keeps another host's instance until stale", async () => {
    await instanceOf("mp3converter-remote", { host: "other-host", pid: await exitedPid() });

    expect(await sweep()).toEqual(sweptDirectories(0));
    expect(await sweep(Date.now() + HEARTBEAT_STALE_MS + 1000)).toEqual(sweptDirectories(1));
  });

  test("keeps an instance without owner file until stale", async () => {
    await mkdir(join(root, "mp3converter-nofile"));

    expect(await sweep()).toEqual(sweptDirectories(0));
    expect(await sweep(Date.now() + HEARTBEAT_STALE_MS + 1000)).toEqual(sweptDirectories(1));
  });

  test("removes old job directories of older converters", async () => {
    await legacyDirectory("job-old123", "input", 2 * HOUR_MS);
    await legacyDirectory("mp3-old123", "output.mp3", 2 * HOUR_MS);
    await legacyDirectory("job-new123", "input", 0);

    expect(await sweep()).toEqual(sweptDirectories(2));
    expect(await readdir(root)).toEqual(["job-new123"]);
  });

  test("keeps what is not the converter's", async () => {
    const stale = Date.now() + 10 * HOUR_MS;
    await legacyDirectory("job-other1", "notes.txt", 2 * HOUR_MS);
    await legacyDirectory("job-too-long-suffix", "input", 2 * HOUR_MS);
    await writeFile(join(root, "mp3-file12"), "a file, not a directory");
    const foreign = join(root, "mp3converter-foreig");
    await mkdir(foreign);
    await writeFile(join(foreign, "report.pdf"), "someone else's file");
    const target = await instanceOf("target-of-link", { pid: await exitedPid() });
    await symlink(target, join(root, "mp3converter-linked"));

    expect(await sweep(stale)).toEqual(sweptDirectories(0));
    expect((await readdir(root)).sort()).toEqual([
      "job-other1",
      "job-too-long-suffix",
      "mp3-file12",
      "mp3converter-foreig",
      "mp3converter-linked",
      "target-of-link",
    ]);
  });
});
