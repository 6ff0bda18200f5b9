/**
 * Health endpoints for Kubernetes probes. `/healthz` answers 200 while the process runs;
 * `/readyz` runs every dependency check and answers 503 naming each one that failed.
 */
import { Elysia } from "elysia";
import type { Logger } from "./log.ts";

/** A dependency check: resolves when the dependency is usable, throws or rejects when not. */
export type ReadinessCheck = () => void | Promise<void>;

/** Maximum time one readiness check may take before it counts as failed. */
const CHECK_TIMEOUT_MS = 2_000;

async function runCheck(check: ReadinessCheck): Promise<string | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([Promise.resolve().then(check), timeout]);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs all checks at once and returns the failures by dependency name. */
export async function runReadinessChecks(
  checks: Record<string, ReadinessCheck>,
): Promise<Record<string, string>> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => [name, await runCheck(check)] as const),
  );
  const failures: Record<string, string> = {};
  for (const [name, failure] of entries) if (failure !== null) failures[name] = failure;
  return failures;
}

/** Creates the `/healthz` and `/readyz` routes, to be mounted with `.use()`. */
export function healthRoutes(logger: Logger, checks: Record<string, ReadinessCheck>) {
  let lastFailures = "";
  return new Elysia({ name: "health" })
    .get("/healthz", () => ({ status: "ok" }))
    .get("/readyz", async ({ set }) => {
      const failures = await runReadinessChecks(checks);
      const summary = JSON.stringify(failures);
      if (summary !== lastFailures) {
        // Logged on change only, because probes call this every few seconds.
        if (Object.keys(failures).length > 0) logger.warn({ failures }, "not ready");
        else logger.info("ready");
        lastFailures = summary;
      }
      if (Object.keys(failures).length === 0) return { status: "ready" };
      set.status = 503;
      return {
        code: "unavailable",
        message: `Not ready: ${Object.keys(failures).join(", ")} unavailable.`,
        details: failures,
      };
    });
}
