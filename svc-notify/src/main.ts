/**
 * Entry point of the notify service: reads the environment, starts consuming the `mp3` queue,
 * and drains on SIGTERM or SIGINT.
 */
import { ConfigError } from "@mp3converter/lib/config";
import { createLogger, errorFields } from "@mp3converter/lib/log";
import { MailConfigurationError } from "@mp3converter/lib/ports/mail";
import { onShutdownSignal, processEnv, RUNTIME } from "@mp3converter/lib/runtime";
import { type NotifyConfig, readNotifyConfig } from "./config.ts";
import { startNotify } from "./service.ts";
import { mailSettingToFix } from "./worker.ts";

function readConfigOrExit(): Readonly<NotifyConfig> {
  try {
    return readNotifyConfig(processEnv());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`notify: ${error.message}\n`);
    process.exit(1);
  }
}

const config = readConfigOrExit();
const logger = createLogger({ service: "notify", level: config.logLevel });
logger.info({ runtime: RUNTIME }, "notify starting");

try {
  const service = await startNotify(config, { logger });
  onShutdownSignal((signal) => {
    logger.info({ signal }, "shutdown signal received");
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: errorFields(error) }, "notify failed to stop cleanly");
        process.exit(1);
      },
    );
  });
} catch (error) {
  if (error instanceof MailConfigurationError) {
    process.stderr.write(
      `notify: the mail server rejected the configuration: ${error.message}\n` +
        `Fix ${mailSettingToFix(error)}, then start the service again.\n`,
    );
  } else {
    logger.fatal({ err: errorFields(error) }, "notify failed to start");
  }
  process.exit(1);
}
