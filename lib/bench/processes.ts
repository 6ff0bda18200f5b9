/** Child processes for the benchmark, and their peak memory as Linux reports it. */
import { type ChildProcess, spawn } from "node:child_process";
import { openAsBlob } from "node:fs";
import { readFile } from "node:fs/promises";

export interface StartedProcess {
  child: ChildProcess;
  /** The first line the process writes to stdout. */
  firstLine: Promise<string>;
  stop(): Promise<void>;
}

/** Starts `command` with `env` added to PATH and HOME only. */
export function startProcess(
  command: string,
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): StartedProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...options.env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const firstLine = new Promise<string>((resolve, reject) => {
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const end = buffered.indexOf("\n");
      if (end >= 0) resolve(buffered.slice(0, end));
    });
    child.once("exit", (code) => reject(new Error(`${command} exited with ${code}`)));
  });
  firstLine.catch(() => undefined);
  return {
    child,
    firstLine,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Reads a `kB` field of /proc/PID/status (VmRSS, VmHWM) in bytes. */
async function readStatusBytes(pid: number, field: "VmRSS" | "VmHWM"): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const match = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  if (!match?.[1]) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Polls `url` until it responds, for up to `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${url} did not respond within ${timeoutMs} ms`);
}

/**
 * Uploads `file` as multipart field `file` to `url` and returns the server process's resident
 * memory before the upload and its peak (VmHWM) after it. The peak counts from process start, so
 * each server gets one upload only.
 */
export async function measureUploadPeakRss(
  server: StartedProcess,
  url: string,
  file: string,
  token?: string,
): Promise<{ idleBytes: number; peakBytes: number }> {
  const pid = server.child.pid;
  if (pid === undefined) throw new Error("server process has no pid");
  const idleBytes = await readStatusBytes(pid, "VmRSS");
  const form = new FormData();
  form.set("file", await openAsBlob(file), "large.bin");
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(url, { method: "POST", body: form, headers });
  if (response.status >= 300) {
    throw new Error(
      `upload to ${url} failed with status ${response.status}: ${await response.text()}`,
    );
  }
  await response.arrayBuffer();
  return { idleBytes, peakBytes: await readStatusBytes(pid, "VmHWM") };
}
