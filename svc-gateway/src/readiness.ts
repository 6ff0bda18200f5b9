/** Dependency checks of the gateway's `/readyz`. */
import type { ReadinessChecks } from "@mp3converter/lib/health";
import type { Broker } from "@mp3converter/lib/ports/broker";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import type { BlobStore } from "@mp3converter/lib/ports/storage";

/** Time the JWKS request may take; `/readyz` gives each check 2 s in all. */
const JWKS_CHECK_TIMEOUT_MS = 1_500;

export interface ReadinessDeps {
  db: SqlDatabase;
  store: BlobStore;
  broker: Broker;
  /** Auth's `/.well-known/jwks.json`, which token verification needs. */
  jwksUrl: string;
}

/** Fetches the JWK set and checks that it has at least one key. */
async function checkJwks(jwksUrl: string): Promise<void> {
  const response = await fetch(jwksUrl, { signal: AbortSignal.timeout(JWKS_CHECK_TIMEOUT_MS) });
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`GET ${jwksUrl} returned HTTP ${response.status}`);
  }
  const body = (await response.json()) as { keys?: unknown };
  if (!Array.isArray(body.keys) || body.keys.length === 0) {
    throw new Error(`GET ${jwksUrl} returned no keys`);
  }
}

/**
 * Returns the checks by dependency name: database, storage, broker and auth. The broker is
 * optional because uploads wait in the outbox while it is down.
 */
export function gatewayReadinessChecks(deps: ReadinessDeps): ReadinessChecks {
  return {
    database: () => deps.db.ping(),
    storage: () => deps.store.ping(),
    broker: {
      required: false,
      check: () => {
        const health = deps.broker.health();
        if (!health.connected) throw new Error(health.detail ?? "broker is not connected");
      },
    },
    auth: () => checkJwks(deps.jwksUrl),
  };
}
