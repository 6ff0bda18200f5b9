/**
 * Starts the gateway: opens the adapters named in the config (unless passed in), applies the
 * migrations, starts the event consumers, the outbox and the retention sweep, and serves the
 * HTTP API.
 */
import { openBroker } from "@mp3converter/lib/adapters/broker";
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { openBlobStore } from "@mp3converter/lib/adapters/storage";
import { createLogger, errorFields, type Logger } from "@mp3converter/lib/log";
import type { Broker, Subscription } from "@mp3converter/lib/ports/broker";
import type { SqlDatabase } from "@mp3converter/lib/ports/sql";
import type { BlobStore } from "@mp3converter/lib/ports/storage";
import { RUNTIME, type Server, serve } from "@mp3converter/lib/runtime";
import { createTokenVerifier, type TokenVerifier } from "@mp3converter/lib/tokens";
import { createGatewayApp } from "./app.ts";
import type { GatewayConfig } from "./config.ts";
import { startEventConsumers } from "./events-consumer.ts";
import { republishUnsentFailureEmails } from "./failure-recovery.ts";
import { GATEWAY_MIGRATIONS } from "./jobs-migrations.ts";
import { JobStore } from "./jobs-store.ts";
import { type OutboxLoop, requeueUnfinishedJobs, startOutboxLoop } from "./outbox.ts";
import { gatewayReadinessChecks } from "./readiness.ts";
import { type RetentionLoop, type SweepResult, startRetentionLoop } from "./retention.ts";

/** Adapters and helpers to use in place of the ones the config names. */
export interface GatewayOverrides {
  db?: SqlDatabase;
  store?: BlobStore;
  broker?: Broker;
  logger?: Logger;
  verifier?: TokenVerifier;
}

/** A running gateway. */
export interface RunningGateway {
  port: number;
  /** Runs the outbox now; tests use it instead of waiting for the timer. */
  runOutbox(): Promise<number>;
  /** Runs the retention sweep now; tests use it instead of waiting for the timer. */
  runRetentionSweep(): Promise<SweepResult>;
  /**
   * Stops accepting HTTP requests and waits for the requests in progress, or closes their
   * connections with `closeActiveConnections`. The event consumers and the outbox keep running
   * until `stop`, so the all-in-one system can stop its HTTP servers first and let the workers
   * drain.
   */
  stopServing(options?: StopServingOptions): Promise<void>;
  /**
   * Stops serving, consuming, the outbox and the retention sweep, then closes the adapters it
   * opened itself.
   */
  stop(): Promise<void>;
}

type Closer = () => Promise<void>;

type StopServingOptions = Parameters<Server["stop"]>[0];

/** Uses the override when given; otherwise opens the adapter and remembers to close it. */
async function adapter<T extends { close(): Promise<void> }>(
  override: T | undefined,
  open: () => Promise<T>,
  closers: Closer[],
): Promise<T> {
  if (override) return override;
  const opened = await open();
  closers.push(() => opened.close());
  return opened;
}

/** Closes in reverse order of opening; logs and goes on when one close fails. */
async function closeAll(closers: Closer[], logger: Logger): Promise<void> {
  for (const close of closers.reverse()) {
    await close().catch((error: unknown) => {
      logger.error({ err: errorFields(error) }, "closing a gateway dependency failed");
    });
  }
}

/** Starts the gateway with `config`; see `GatewayOverrides` for the all-in-one mode and tests. */
export async function startGateway(
  config: GatewayConfig,
  overrides: GatewayOverrides = {},
): Promise<RunningGateway> {
  const logger = overrides.logger ?? createLogger({ service: "gateway", level: config.logLevel });
  const closers: Closer[] = [];
  try {
    const child = (component: string) => ({ logger: logger.child({ component }) });
    const db = await adapter(
      overrides.db,
      () => openSqlDatabase(config.databaseUrl, child("sql")),
      closers,
    );
    await db.migrate(GATEWAY_MIGRATIONS);
    const store = await adapter(
      overrides.store,
      () => openBlobStore(config.storageUrl, child("storage")),
      closers,
    );
    const broker = await adapter(
      overrides.broker,
      () => openBroker(config.brokerUrl, child("broker")),
      closers,
    );
    await broker.declareQueues([config.videoQueue, config.mp3Queue, config.jobEventsQueue]);

    const jwksUrl = `${config.authUrl}/.well-known/jwks.json`;
    const verifier =
      overrides.verifier ??
      createTokenVerifier({ jwksUrl, issuer: config.jwtIssuer, audience: config.jwtAudience });
    const jobs = new JobStore(db);
    // Before the outbox starts, so that its first run publishes the recovered jobs.
    await requeueUnfinishedJobs({ broker, jobs, logger });
    await republishUnsentFailureEmails({ broker, jobs, logger, mp3Queue: config.mp3Queue });
    const app = createGatewayApp({
      ...config,
      logger,
      jobs,
      store,
      broker,
      verifier,
      readiness: gatewayReadinessChecks({ db, store, broker, jwksUrl }),
    });

    const queues = {
      videoQueue: config.videoQueue,
      mp3Queue: config.mp3Queue,
      jobEventsQueue: config.jobEventsQueue,
    };
    const subscriptions = await startEventConsumers({ broker, jobs, logger, ...queues });
    closers.push(() => cancelAll(subscriptions));
    const outbox = startOutboxLoop(
      { broker, jobs, logger, videoQueue: config.videoQueue },
      config.outboxIntervalSeconds * 1000,
    );
    closers.push(() => outbox.stop());
    const retention = startRetentionLoop({
      jobs,
      store,
      logger,
      retentionDays: config.jobRetentionDays,
    });
    closers.push(() => retention.stop());

    const server = await serve((request) => app.handle(request), {
      port: config.port,
      hostname: config.host,
      // Every route limits the body it reads and rejects a larger one with a JSON 413. A server
      // limit would reject first, with an empty 413, before the app reads the request.
      maxRequestBodyBytes: Number.MAX_SAFE_INTEGER,
    });
    let serving: Promise<void> | undefined;
    const stopServing = (options?: StopServingOptions) => {
      if (options?.closeActiveConnections) return server.stop(options);
      serving ??= server.stop();
      return serving;
    };
    closers.push(() => stopServing());
    logger.info({ port: server.port, host: config.host, runtime: RUNTIME }, "gateway started");
    return runningGateway({ port: server.port, outbox, retention, stopServing }, closers, logger);
  } catch (error) {
    await closeAll(closers, logger);
    throw error;
  }
}

async function cancelAll(subscriptions: Subscription[]): Promise<void> {
  await Promise.all(subscriptions.map((subscription) => subscription.cancel()));
}

function runningGateway(
  parts: Pick<RunningGateway, "port" | "stopServing"> & {
    outbox: OutboxLoop;
    retention: RetentionLoop;
  },
  closers: Closer[],
  logger: Logger,
): RunningGateway {
  let stopping: Promise<void> | undefined;
  return {
    port: parts.port,
    runOutbox: () => parts.outbox.runNow(),
    runRetentionSweep: () => parts.retention.runNow(),
    stopServing: parts.stopServing,
    stop() {
      stopping ??= closeAll(closers, logger).then(() => logger.info("gateway stopped"));
      return stopping;
    },
  };
}
