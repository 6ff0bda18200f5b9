/**
 * Health endpoints for Kubernetes probes. `/healthz` returns 200 while the process runs.
 * `/readyz` runs every dependency check and returns 503 naming each required one that failed.
 * When only optional dependencies fail, it returns 200 with `status: "degraded"` and names them.
 */
import { Elysia } from "elysia";
import type { Logger } from "./log.ts";

/** A dependency check: resolves when the dependency is usable, throws or rejects when not. */
export type ReadinessCheck = () => void | Promise<void>;

/**
 * A check of a dependency the service can do without for a while, such as the broker of a
 * gateway that keeps unpublished jobs in its outbox. Its failure is reported but keeps the pod in
 * its Service, so that clients are still served.
 */
export interface OptionalReadinessCheck {
  check: ReadinessCheck;
  required: false;
}

/** Readiness checks by dependency name. */
export type ReadinessChecks = Record<string, ReadinessCheck | OptionalReadinessCheck>;

function checkFunction(entry: ReadinessCheck | OptionalReadinessCheck): ReadinessCheck {
  return typeof entry === "function" ? entry : entry.check;
}

function isRequired(entry: ReadinessCheck | OptionalReadinessCheck): boolean {
  return typeof entry === "function" || entry.required;
}

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
export async function runReadinessChecks(checks: ReadinessChecks): Promise<Record<string, string>> {
  const entries = await Promise.all(
    Object.entries(checks).map(
      async ([name, entry]) => [name, await runCheck(checkFunction(entry))] as const,
    ),
  );
  const failures: Record<string, string> = {};
  for (const [name, failure] of entries) if (failure !== null) failures[name] = failure;
  return failures;
}

/** Creates the `/healthz` and `/readyz` routes, to be mounted with `.use()`. */
export function healthRoutes(logger: Logger, checks: ReadinessChecks) {
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
      const failed = Object.keys(failures);
      if (failed.length === 0) return { status: "ready" };
      const requiredFailed = failed.filter((name) => isRequired(checks[name] as ReadinessCheck));
      if (requiredFailed.length === 0) {
        return {
          status: "degraded",
          message: `Ready, but ${failed.join(", ")} unavailable.`,
          details: failures,
        };
      }
      set.status = 503;
      return {
        code: "unavailable",
        message: `Not ready: ${failed.join(", ")} unavailable.`,
        details: failures,
      };
    });
}
