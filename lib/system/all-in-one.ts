/**
 * Runs the whole system in one process on the embedded adapters: SQLite for users and jobs, a
 * directory for files, the in-process broker, and `.eml` files in an outbox directory. This is
 * `bun run dev`; `deno run -A lib/system/all-in-one.ts` runs the same on Deno.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { DestinationStream } from "pino";
import { readAuthConfig } from "../../svc-auth/src/config.ts";
import { startAuth } from "../../svc-auth/src/service.ts";
import { readConverterConfig } from "../../svc-converter/src/config.ts";
import { startConverter } from "../../svc-converter/src/service.ts";
import { readGatewayConfig } from "../../svc-gateway/src/config.ts";
import { startGateway } from "../../svc-gateway/src/service.ts";
import { readNotifyConfig } from "../../svc-notify/src/config.ts";
import { startNotify } from "../../svc-notify/src/service.ts";
import { DEFAULT_MAX_DELIVERIES } from "../src/adapters/broker.ts";
import { MemoryBroker } from "../src/adapters/memory-broker.ts";
import { ConfigError, type Env, EnvReader } from "../src/config.ts";
import { createLogger, LOG_LEVELS } from "../src/log.ts";
import { onParentExit, onShutdownSignal, processEnv } from "../src/runtime.ts";
import { generateSigningKey } from "../src/tokens.ts";
import { DataDirInUseError, lockDataDir } from "./data-dir-lock.ts";
import { findFreePort } from "./ports.ts";
import { type SystemParts, stopSystem } from "./shutdown.ts";

export interface AllInOneOptions {
  /** Directory for every database, file and email; created when missing. */
  dataDir: string;
  /** Gateway port; 0 picks a free one. */
  gatewayPort: number;
  /** Auth port; 0 picks a free one. */
  authPort: number;
  /** Address both HTTP services bind to. */
  host: string;
  logLevel: string;
  /** Whether the process stops when its parent exits; `bun run dev` sets it. */
  exitWithParent?: boolean;
  /** Extra variables for every service, such as `UPLOAD_MAX_BYTES`. */
  extraEnv?: Env;
  /** Destination of every service's log lines, stdout when absent. Tests pass one to read them. */
  logDestination?: DestinationStream;
}

export interface AllInOne {
  gatewayUrl: string;
  /** Base of the links in API responses and emails. */
  publicUrl: string;
  authUrl: string;
  outboxDir: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** Loads the signing keys kept in the data directory, making a key on first start. */
async function loadOrCreateSigningKeys(dataDir: string): Promise<string> {
  const path = join(dataDir, "jwt-signing-keys.json");
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const keys = JSON.stringify({ keys: [await generateSigningKey()] });
  await writeFile(path, keys, { mode: 0o600 });
  await chmod(path, 0o600);
  return keys;
}

/** Starts auth, gateway, converter and notify in this process, wired to each other. */
export async function startAllInOne(options: AllInOneOptions): Promise<AllInOne> {
  const dataDir = resolve(options.dataDir);
  const outboxDir = join(dataDir, "outbox");
  await mkdir(outboxDir, { recursive: true });
  const unlockDataDir = await lockDataDir(dataDir);
  const common: Env = { ...options.extraEnv, LOG_LEVEL: options.logLevel };
  // The gateway must know its port before it starts, because the links it returns contain it.
  const gatewayPort = options.gatewayPort || (await findFreePort(options.host));
  const publicUrl = options.extraEnv?.PUBLIC_URL ?? `http://localhost:${gatewayPort}`;
  const loggerOf = (service: string) =>
    createLogger({ service, level: options.logLevel, destination: options.logDestination });
  const broker = new MemoryBroker({
    logger: loggerOf("broker"),
    maxDeliveries: DEFAULT_MAX_DELIVERIES,
  });
  const parts: SystemParts = {
    broker,
    logger: loggerOf("all-in-one"),
    queues: { video: "", mp3: "", jobEvents: "" },
  };
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= stopSystem(parts).finally(unlockDataDir);
    return stopping;
  };

  try {
    const storageUrl = `file:${join(dataDir, "files")}`;
    const authEnv: Env = {
      ...common,
      // Auth trusts X-Forwarded-For from the gateway, so only this machine may reach it.
      HOST: "127.0.0.1",
      PORT: String(options.authPort),
      DATABASE_URL: `sqlite:${join(dataDir, "auth.db")}`,
      JWT_SIGNING_KEYS: await loadOrCreateSigningKeys(dataDir),
      TRUST_PROXY: "true",
    };
    const gatewayEnv = (authUrl: string): Env => ({
      ...common,
      HOST: options.host,
      PORT: String(gatewayPort),
      DATABASE_URL: `sqlite:${join(dataDir, "gateway.db")}`,
      STORAGE_URL: storageUrl,
      BROKER_URL: "memory:",
      AUTH_URL: authUrl,
      PUBLIC_URL: publicUrl,
    });
    const converterEnv: Env = {
      ...common,
      BROKER_URL: "memory:",
      STORAGE_URL: storageUrl,
      HEALTH_PORT: "0",
      HEALTH_HOST: options.host,
      WORK_DIR: join(dataDir, "work"),
    };
    const notifyEnv: Env = {
      ...common,
      BROKER_URL: "memory:",
      MAIL_URL: `file:${outboxDir}`,
      PUBLIC_URL: publicUrl,
      HEALTH_PORT: "0",
      HEALTH_HOST: options.host,
    };
    // Every service's settings are checked before the first one starts, so that one run lists
    // every invalid setting. Auth's port is known only once it listens, so a stand-in is used.
    checkSettings([
      () => readAuthConfig(authEnv),
      () => readGatewayConfig(gatewayEnv("http://127.0.0.1:1")),
      () => readConverterConfig(converterEnv),
      () => readNotifyConfig(notifyEnv),
    ]);

    parts.auth = await startAuth(readAuthConfig(authEnv), { logger: loggerOf("svc-auth") });
    const authUrl = `http://127.0.0.1:${parts.auth.port}`;
    const gatewayConfig = readGatewayConfig(gatewayEnv(authUrl));
    const notifyConfig = readNotifyConfig(notifyEnv);
    parts.queues = {
      video: gatewayConfig.videoQueue,
      mp3: notifyConfig.mp3Queue,
      jobEvents: gatewayConfig.jobEventsQueue,
    };
    parts.gateway = await startGateway(gatewayConfig, { broker, logger: loggerOf("gateway") });
    const gatewayUrl = `http://127.0.0.1:${parts.gateway.port}`;

    parts.converter = await startConverter(readConverterConfig(converterEnv), {
      broker,
      logger: loggerOf("converter"),
    });

    parts.notify = await startNotify(notifyConfig, { broker, logger: loggerOf("notify") });

    return { gatewayUrl, publicUrl, authUrl, outboxDir, dataDir, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Runs every settings reader and raises one `ConfigError` with the problems of all of them. */
function checkSettings(readers: ReadonlyArray<() => unknown>): void {
  const problems: string[] = [];
  for (const read of readers) {
    try {
      read();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

export function readAllInOneOptions(env: Env): AllInOneOptions {
  const reader = new EnvReader(env);
  const options: AllInOneOptions = {
    dataDir: reader.string("DATA_DIR", { default: "./.data" }),
    gatewayPort: reader.int("GATEWAY_PORT", { default: 8080, min: 0, max: 65535 }),
    authPort: reader.int("AUTH_PORT", { default: 5000, min: 0, max: 65535 }),
    host: reader.string("HOST", { default: "127.0.0.1" }),
    logLevel: reader.oneOf("LOG_LEVEL", LOG_LEVELS, { default: "info" }),
    exitWithParent: reader.bool("EXIT_WITH_PARENT", { default: false }),
    extraEnv: env,
  };
  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return options;
}

function printWelcome(system: AllInOne): void {
  const publicUrl = system.publicUrl;
  const lines = [
    "",
    "mp3converter is running (all-in-one, embedded adapters)",
    `  API:       ${publicUrl}`,
    `  data:      ${system.dataDir} (SQLite databases, files, signing key)`,
    `  emails:    ${system.outboxDir} (one .eml file per email)`,
    "",
    "Create a user and log in:",
    `  curl -X POST ${publicUrl}/signup -H 'content-type: application/json' \\`,
    `    -d '{"email":"you@example.com","password":"a long passphrase"}'`,
    `  curl -X POST -u 'you@example.com:a long passphrase' ${publicUrl}/login`,
    "",
    "Stop with Ctrl-C.",
    "",
  ];
  process.stderr.write(`${lines.join("\n")}\n`);
}

/** Tells whether `error` is Bun's (`EADDRINUSE`) or Deno's (`AddrInUse`) port-taken error. */
/** Returns whether `error` is a file system error that names a path, such as EACCES. */
function isFileSystemError(error: unknown): error is NodeJS.ErrnoException {
  const fields = error as NodeJS.ErrnoException | null;
  return typeof fields?.code === "string" && typeof fields.path === "string";
}

function isAddressInUse(error: unknown): boolean {
  const fields = error as { code?: unknown; name?: unknown } | null;
  return fields?.code === "EADDRINUSE" || fields?.name === "AddrInUse";
}

async function main(): Promise<void> {
  let options: AllInOneOptions;
  try {
    options = readAllInOneOptions(processEnv());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  let system: AllInOne;
  try {
    system = await startAllInOne(options);
  } catch (error) {
    // A service's own settings are read only while the system starts.
    if (error instanceof DataDirInUseError || error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    if (isFileSystemError(error)) {
      process.stderr.write(
        `The data directory ${options.dataDir} cannot be used: ${error.message}. ` +
          "Fix its permissions or contents, or set DATA_DIR to another directory.\n",
      );
      process.exit(1);
    }
    if (!isAddressInUse(error)) throw error;
    process.stderr.write(
      `A port is already in use (gateway ${options.gatewayPort}, auth ${options.authPort}). ` +
        "Stop the program that uses it, or set GATEWAY_PORT and AUTH_PORT to free ports.\n",
    );
    process.exit(1);
  }
  printWelcome(system);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= system.stop().then(() => process.exit(0));
    return stopping;
  };
  onShutdownSignal(stop);
  if (options.exitWithParent) {
    onParentExit(() => {
      process.stderr.write("The parent process exited, so the system stops.\n");
      void stop();
    });
  }
}

if (import.meta.main) await main();
