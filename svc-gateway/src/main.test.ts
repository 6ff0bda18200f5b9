/**
 * The gateway's entry point run as a process, as Kubernetes runs it, with settings that let it
 * fail at start-up.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "main.ts");
const BROKER_PASSWORD = "s3cret-broker-pw";
/** Longer than a refused connection takes (well under a second), shorter than the test timeout. */
const EXIT_DEADLINE_MS = 30_000;

let dir: string;
let closedPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mp3c-gateway-main-"));
  closedPort = await unusedPort();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Returns a loopback port that was free a moment ago and has no listener now. */
function unusedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Runs `main.ts` with `env` (and only PATH and HOME from this process) until it exits. */
function runMain(env: Record<string, string>): Promise<Exit> {
  const started = performance.now();
  const child = spawn(process.execPath, ["run", MAIN], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_DEADLINE_MS);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, durationMs: performance.now() - started });
    });
  });
}

function settings(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: `sqlite:${join(dir, "gateway.sqlite")}`,
    STORAGE_URL: `file:${join(dir, "files")}`,
    BROKER_URL: `amqp://mp3converter:${BROKER_PASSWORD}@127.0.0.1:${closedPort}`,
    AUTH_URL: "http://127.0.0.1:9",
    ...overrides,
  };
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("gateway main", () => {
  test("unreachable broker exits 1 with one log line", async () => {
    const exit = await runMain(settings());

    expect(exit.code).toBe(1);
    expect(exit.durationMs).toBeLessThan(EXIT_DEADLINE_MS);
    expect(exit.stderr).toBe("");
    const lines = jsonLines(exit.stdout);
    const errors = lines.filter((line) => line.level === "error" || line.level === "fatal");
    expect(errors).toHaveLength(1);
    const failure = errors[0] ?? {};
    expect(failure.level).toBe("fatal");
    expect(failure.msg).toBe("service failed to start");
    expect(failure.service).toBe("gateway");
    const err = failure.err as Record<string, unknown>;
    expect(err.message).toContain(`connecting to the broker at 127.0.0.1:${closedPort} failed`);
    expect(err.code).toBe("ECONNREFUSED");
    expect(exit.stdout).not.toContain(BROKER_PASSWORD);
  });

  test("missing setting exits 1 naming it", async () => {
    const env = settings();
    delete (env as Partial<Record<string, string>>).DATABASE_URL;
    const exit = await runMain(env);

    expect(exit.code).toBe(1);
    expect(exit.stdout).toBe("");
    expect(exit.stderr).toStartWith("gateway: invalid configuration:");
    expect(exit.stderr).toContain("DATABASE_URL is missing");
    expect(exit.stderr).not.toContain("    at ");
  });
});
