/** Entry point of the auth service when it runs alone, as in Kubernetes. */
import { ConfigError } from "@mp3converter/lib/config";
import { createLogger, errorFields } from "@mp3converter/lib/log";
import { onShutdownSignal, processEnv } from "@mp3converter/lib/runtime";
import { readAuthConfig } from "./config.ts";
import { startAuth } from "./service.ts";

function readConfigOrExit() {
  try {
    return readAuthConfig(processEnv());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`svc-auth: ${error.message}`);
    process.exit(1);
  }
}

const config = readConfigOrExit();
const logger = createLogger({ service: "svc-auth", level: config.logLevel });
try {
  const service = await startAuth(config, { logger });
  onShutdownSignal((signal) => {
    logger.info({ signal }, "shutting down");
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: errorFields(error) }, "shutdown failed");
        process.exit(1);
      },
    );
  });
} catch (error) {
  logger.fatal({ err: errorFields(error) }, "auth failed to start");
  process.exit(1);
}
