/**
 * The converter's HTTP app, which serves only the health routes: the service has no public API.
 */
import { healthRoutes } from "@mp3converter/lib/health";
import { createHttpApp } from "@mp3converter/lib/http";
import type { Logger } from "@mp3converter/lib/log";
import type { Broker } from "@mp3converter/lib/ports/broker";
import type { BlobStore } from "@mp3converter/lib/ports/storage";

export interface ConverterAppDependencies {
  logger: Logger;
  broker: Broker;
  store: BlobStore;
}

/** Creates the app with `/healthz` and `/readyz`, which checks the broker and the blob store. */
export function createConverterApp(deps: ConverterAppDependencies) {
  return createHttpApp("converter", deps.logger).use(
    healthRoutes(deps.logger, {
      broker: () => {
        const health = deps.broker.health();
        if (!health.connected) throw new Error(health.detail ?? "broker is not connected");
      },
      storage: () => deps.store.ping(),
    }),
  );
}
