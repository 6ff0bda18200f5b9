/**
 * The start-up and shutdown that every service's `main.ts` shares. It reads the configuration,
 * creates the logger, starts the service, and stops it on SIGINT or SIGTERM. A configuration
 * error is printed to stderr, naming every bad variable, and a failure to start is logged as one
 * JSON line. Both end the process with exit status 1.
 */
import { ConfigError, type Env } from "./config.ts";
import { createLogger, errorFields, type Logger } from "./log.ts";
import { onShutdownSignal, processEnv, RUNTIME } from "./runtime.ts";

/** A running service, reduced to what its entry point calls. */
export interface StoppableService {
  /** Drains and closes the service, and rejects when a part of it failed to close. */
  stop(): Promise<void>;
}

/** How to start one service. */
export interface ServiceMain<Config extends { logLevel: string }> {
  /** Value of the `service` field of every log line, and the prefix of configuration errors. */
  service: string;
  /** Reads the configuration, throwing `ConfigError` when a variable is missing or invalid. */
  readConfig(env: Env): Readonly<Config>;
  start(config: Readonly<Config>, logger: Logger): Promise<StoppableService>;
  /** Fields added to the line logged when `start` fails, such as the setting to fix. */
  startFailureFields?(error: unknown): Record<string, unknown>;
}

/** Runs a service as the main program of the process, until a signal stops it. */
export async function runServiceMain<Config extends { logLevel: string }>(
  main: ServiceMain<Config>,
): Promise<void> {
  const config = readConfigOrExit(main);
  const logger = createLogger({ service: main.service, level: config.logLevel });
  logger.info({ runtime: RUNTIME }, "service starting");

  let service: StoppableService;
  try {
    service = await main.start(config, logger);
  } catch (error) {
    const fields = main.startFailureFields?.(error) ?? {};
    logger.fatal({ err: errorFields(error), ...fields }, "service failed to start");
    process.exit(1);
  }

  onShutdownSignal((signal) => {
    logger.info({ signal }, "shutdown signal received");
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: errorFields(error) }, "service failed to stop cleanly");
        process.exit(1);
      },
    );
  });
}

function readConfigOrExit<Config extends { logLevel: string }>(
  main: ServiceMain<Config>,
): Readonly<Config> {
  try {
    return main.readConfig(processEnv());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${main.service}: ${error.message}\n`);
    process.exit(1);
  }
}
