/**
 * Entry point of the converter service: reads the environment, starts consuming the `video`
 * queue, and drains on SIGTERM or SIGINT.
 */
import { ConfigError } from "@mp3converter/lib/config";
import { createLogger, errorFields } from "@mp3converter/lib/log";
import { onShutdownSignal, processEnv, RUNTIME } from "@mp3converter/lib/runtime";
import { type ConverterConfig, readConverterConfig } from "./config.ts";
import { startConverter } from "./service.ts";

function readConfigOrExit(): Readonly<ConverterConfig> {
  try {
    return readConverterConfig(processEnv());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`converter: ${error.message}\n`);
    process.exit(1);
  }
}

const config = readConfigOrExit();
const logger = createLogger({ service: "converter", level: config.logLevel });
logger.info({ runtime: RUNTIME }, "converter starting");

try {
  const service = await startConverter(config, { logger });
  onShutdownSignal((signal) => {
    logger.info({ signal }, "shutdown signal received");
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: errorFields(error) }, "converter failed to stop cleanly");
        process.exit(1);
      },
    );
  });
} catch (error) {
  logger.fatal({ err: errorFields(error) }, "converter failed to start");
  process.exit(1);
}
