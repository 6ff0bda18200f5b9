/** Runtime helpers that depend on the process tree. */
import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes. */
async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

/** Returns whether `pid` runs. A zombie that no process has reaped yet counts as exited. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return true;
  }
}

test("onParentExit runs when the parent is killed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mp3c-runtime-"));
  const pidFile = join(dir, "child.pid");
  const marker = join(dir, "parent-exited");
  const script = join(dir, "child.ts");
  writeFileSync(
    script,
    [
      'import { writeFileSync } from "node:fs";',
      `import { onParentExit } from ${JSON.stringify(join(import.meta.dir, "runtime.ts"))};`,
      `writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));`,
      "onParentExit(() => {",
      `  writeFileSync(${JSON.stringify(marker)}, "");`,
      "  process.exit(0);",
      "}, 50);",
      "setInterval(() => {}, 1_000);",
    ].join("\n"),
  );
  // The shell stays the child's parent, as the `bun run` wrapper does for `bun run dev`.
  const parent = spawn("sh", ["-c", `"${process.execPath}" "${script}" & wait`], {
    stdio: "ignore",
  });
  let childPid: number | undefined;
  try {
    expect(await waitUntil(() => existsSync(pidFile), 10_000)).toBe(true);
    childPid = Number(readFileSync(pidFile, "utf8"));
    expect(isAlive(childPid)).toBe(true);

    parent.kill("SIGKILL");

    expect(await waitUntil(() => existsSync(marker), 5_000)).toBe(true);
    expect(await waitUntil(() => !isAlive(childPid as number), 5_000)).toBe(true);
  } finally {
    if (parent.exitCode === null && parent.signalCode === null) parent.kill("SIGKILL");
    if (childPid !== undefined && isAlive(childPid)) process.kill(childPid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
