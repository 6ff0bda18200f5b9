/**
 * Wires the converter service: the broker consumer of the `video` queue, the blob store and the
 * health server. Tests and the all-in-one mode pass their own broker, store or logger.
 */
import { openBroker } from "@mp3converter/lib/adapters/broker";
import { openBlobStore } from "@mp3converter/lib/adapters/storage";
import { createLogger, errorFields, type Logger } from "@mp3converter/lib/log";
import type { Broker, Subscription } from "@mp3converter/lib/ports/broker";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import { type Server, serve } from "@mp3converter/lib/runtime";
import { createConverterApp } from "./app.ts";
import type { ConverterConfig } from "./config.ts";
import { findExecutable, findPrlimit } from "./ffmpeg.ts";
import { openWorkDir } from "./work-dir.ts";
import { createConvertHandler } from "./worker.ts";

export interface ConverterOverrides {
  /** A broker to use instead of opening `BROKER_URL`; the service does not close it. */
  broker?: Broker;
  /** A blob store to use instead of opening `STORAGE_URL`; the service does not close it. */
  store?: BlobStore;
  logger?: Logger;
}

export interface ConverterService {
  /** Port of the health server. */
  port: number;
  /**
   * Stops consuming and waits for the running conversions. Those still running after
   * CONVERTER_DRAIN_SECONDS are killed and their messages go back to the queue.
   */
  stop(): Promise<void>;
}

/** Throws when ffmpeg or ffprobe is missing, naming the setting to fix. */
function checkBinaries(config: Readonly<ConverterConfig>, logger: Logger): void {
  for (const [name, path] of [
    ["FFMPEG_PATH", config.ffmpegPath],
    ["FFPROBE_PATH", config.ffprobePath],
  ] as const) {
    if (findExecutable(path) === null) {
      throw new Error(`${name}=${path} is not an executable file; install ffmpeg or fix ${name}`);
    }
  }
  if (findPrlimit() === null) {
    logger.warn("prlimit not found on PATH, so CONVERT_CPU_SECONDS is not enforced");
  }
}

/** Starts the converter; rejects when ffmpeg is missing or an adapter cannot be opened. */
export async function startConverter(
  config: Readonly<ConverterConfig>,
  overrides: ConverterOverrides = {},
): Promise<ConverterService> {
  const logger = overrides.logger ?? createLogger({ service: "converter", level: config.logLevel });
  checkBinaries(config, logger);
  const workDir = await openWorkDir({
    root: config.workDir,
    timeoutSeconds: config.timeoutSeconds,
    logger,
  });

  const cleanups: Array<() => Promise<void>> = [() => workDir.close()];
  const closeAll = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    const store = overrides.store ?? (await openBlobStore(config.storageUrl, { logger }));
    if (!overrides.store) cleanups.push(() => store.close());
    const broker = overrides.broker ?? (await openBroker(config.brokerUrl, { logger }));
    if (!overrides.broker) cleanups.push(() => broker.close());

    await broker.declareQueues([config.videoQueue, config.mp3Queue, config.jobEventsQueue]);
    const shutdown = new AbortController();
    const handler = createConvertHandler({
      broker,
      store,
      logger,
      convert: { ...config, workDir: workDir.path },
      mp3Queue: config.mp3Queue,
      jobEventsQueue: config.jobEventsQueue,
      signal: shutdown.signal,
    });
    const subscription = await broker.consume(config.videoQueue, handler, {
      prefetch: config.prefetch,
    });
    cleanups.push(() => subscription.cancel());

    const app = createConverterApp({ logger, broker, store });
    const server = await serve(app.fetch, { port: config.healthPort, hostname: config.healthHost });
    logger.info(
      { queue: config.videoQueue, prefetch: config.prefetch, health_port: server.port },
      "converter started",
    );

    let stopping: Promise<void> | undefined;
    return {
      port: server.port,
      stop: () => {
        const drainMs = config.drainSeconds * 1000;
        stopping ??= stopConverter({ subscription, server, shutdown, closeAll, logger, drainMs });
        return stopping;
      },
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

interface RunningParts {
  subscription: Subscription;
  server: Server;
  shutdown: AbortController;
  closeAll: () => Promise<void>;
  logger: Logger;
  /** Time the running conversions get before ffmpeg is stopped. */
  drainMs: number;
}

async function stopConverter(parts: RunningParts): Promise<void> {
  parts.logger.info(
    { drain_ms: parts.drainMs },
    "converter stopping; conversions in progress may finish within the drain time",
  );
  const killTimer = setTimeout(() => {
    parts.logger.warn(
      { drain_ms: parts.drainMs },
      "conversions still running after the drain time; stopping ffmpeg and requeueing",
    );
    parts.shutdown.abort();
  }, parts.drainMs);
  try {
    await parts.subscription.cancel();
  } catch (error) {
    parts.logger.error({ err: errorFields(error) }, "consumer failed to cancel cleanly");
  } finally {
    clearTimeout(killTimer);
  }
  await parts.server.stop();
  await parts.closeAll();
  parts.logger.info("converter stopped");
}
