/** Test helper that runs the dev runner as its own process, for the failures of its start-up. */
import { spawn } from "node:child_process";
import { join } from "node:path";

/** Time after which a runner that has not exited is killed, so that a test cannot hang. */
const RUNNER_TIMEOUT_MS = 20_000;

/**
 * Runs `all-in-one.ts` on `dataDir` with free ports, silent logs and `env`, until it exits, and
 * returns its exit code and standard error. A runner still running after `RUNNER_TIMEOUT_MS` is
 * killed and its code is null.
 */
export function runDevRunnerToExit(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string }> {
  const runner = spawn(process.execPath, [join(import.meta.dir, "all-in-one.ts")], {
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      GATEWAY_PORT: "0",
      AUTH_PORT: "0",
      LOG_LEVEL: "silent",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const killer = setTimeout(() => runner.kill("SIGKILL"), RUNNER_TIMEOUT_MS);
  let stderr = "";
  runner.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => {
    runner.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stderr });
    });
  });
}
