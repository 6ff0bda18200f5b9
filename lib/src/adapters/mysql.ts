/**
 * MySQL and MariaDB implementation of the SQL port on a bounded mysql2 connection pool. Every
 * session uses utf8mb4 and UTC, so stored text and times read back the same from any replica.
 */
import { createHash } from "node:crypto";
import mysql from "mysql2/promise";
import { errorFields, type Logger } from "../log.ts";
import {
  type ExecuteResult,
  type Migration,
  type SqlDatabase,
  type SqlExecutor,
  type SqlValue,
  UniqueViolationError,
} from "../ports/sql.ts";
import {
  CREATE_MIGRATIONS_TABLE,
  DEFAULT_MIGRATION_LOCK_TIMEOUT_SECONDS,
  INSERT_APPLIED_MIGRATION,
  type OpenSqlOptions,
  pendingMigrations,
  SELECT_APPLIED_MIGRATIONS,
} from "./sql.ts";

/** Maximum number of open connections per pool, and so per replica. */
const POOL_MAX_CONNECTIONS = 10;
/** Maximum number of callers waiting for a free connection before the pool rejects more. */
const POOL_MAX_QUEUED_REQUESTS = 500;
const POOL_IDLE_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_PORT = 3306;
/** MySQL and MariaDB reject `GET_LOCK` names longer than this. */
const LOCK_NAME_MAX_LENGTH = 64;

const DEFAULT_CONNECT_WAIT_SECONDS = 30;
const CONNECT_RETRY_MIN_MS = 500;
const CONNECT_RETRY_MAX_MS = 5_000;
/** Error codes of a server that is down, starting or not resolvable yet, retried when opening. */
const UNREACHABLE_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "PROTOCOL_CONNECTION_LOST",
]);

/** mysql2 `errno` of ER_DUP_ENTRY, raised for a duplicate key. */
const ER_DUP_ENTRY = 1062;

/** Raised when another session holds the migration lock for longer than the timeout. */
export class MigrationLockTimeoutError extends Error {
  readonly lockName: string;

  constructor(lockName: string, timeoutSeconds: number) {
    super(
      `timed out after ${timeoutSeconds} s waiting for the migration lock "${lockName}"; ` +
        "another replica may still be migrating or may hang. Check its logs and the server's " +
        "process list, then restart this replica",
    );
    this.name = "MigrationLockTimeoutError";
    this.lockName = lockName;
  }
}

interface MysqlTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** Parses `mysql://user:password@host:port/database`. Its errors never echo the password. */
export function parseMysqlUrl(url: string): MysqlTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("invalid MySQL URL: expected mysql://user:password@host:3306/database");
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ""));
  if (parsed.protocol !== "mysql:" || parsed.hostname === "" || database === "") {
    throw new Error(
      "invalid MySQL URL: it needs a host and a database name, as in " +
        "mysql://user:password@host:3306/database",
    );
  }
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: parsed.port === "" ? DEFAULT_PORT : Number(parsed.port),
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    database,
  };
}

/**
 * Opens a pool for the database in `url` and checks that one connection works. While the server
 * is unreachable it retries with backoff for up to `connectWaitSeconds`, because in a cluster the
 * database often starts after the services.
 */
export async function openMysqlDatabase(
  url: string,
  options: OpenSqlOptions,
): Promise<SqlDatabase> {
  const target = parseMysqlUrl(url);
  const pool = mysql.createPool({
    ...target,
    connectionLimit: POOL_MAX_CONNECTIONS,
    maxIdle: POOL_MAX_CONNECTIONS,
    idleTimeout: POOL_IDLE_TIMEOUT_MS,
    queueLimit: POOL_MAX_QUEUED_REQUESTS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    charset: "utf8mb4",
    // `timezone` only sets how mysql2 converts DATETIME values; the session zone is set below.
    timezone: "Z",
    enableKeepAlive: true,
    supportBigNumbers: true,
  });
  const { logger } = options;
  // Runs before the new connection serves its first query, because mysql2 queues commands.
  pool.pool.on("connection", (connection) => {
    connection.query("SET time_zone = '+00:00'", (error: unknown) => {
      if (error) logger.error({ err: errorFields(error) }, "mysql session setup failed");
    });
  });
  try {
    await connectFirst(pool, target, logger, options.connectWaitSeconds);
  } catch (error) {
    await pool.end().catch(() => {});
    throw error;
  }
  logger.info(
    { dialect: "mysql", host: target.host, port: target.port, database: target.database },
    "sql database opened",
  );
  return new MysqlDatabase(pool, target.database, {
    logger,
    lockTimeoutSeconds:
      options.migrationLockTimeoutSeconds ?? DEFAULT_MIGRATION_LOCK_TIMEOUT_SECONDS,
  });
}

/** Runs `SELECT 1` until it succeeds, retrying only while the server is unreachable. */
async function connectFirst(
  pool: mysql.Pool,
  target: MysqlTarget,
  logger: Logger,
  waitSeconds = DEFAULT_CONNECT_WAIT_SECONDS,
): Promise<void> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (let attempt = 1, delayMs = CONNECT_RETRY_MIN_MS; ; attempt++) {
    try {
      await pool.query("SELECT 1");
      return;
    } catch (error) {
      const unreachable = UNREACHABLE_ERROR_CODES.has(String(errorCode(error)));
      if (!unreachable || Date.now() + delayMs > deadline) {
        throw new Error(connectFailureMessage(error, target, unreachable, waitSeconds), {
          cause: error,
        });
      }
      logger.warn(
        { err: errorFields(error), host: target.host, port: target.port, attempt, delayMs },
        "mysql server not reachable; retrying",
      );
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs = Math.min(delayMs * 2, CONNECT_RETRY_MAX_MS);
    }
  }
}

function errorCode(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

/** Says what failed, where, and what to check; the password never appears in it. */
function connectFailureMessage(
  error: unknown,
  target: MysqlTarget,
  unreachable: boolean,
  waitSeconds: number,
): string {
  const where = `MySQL at ${target.host}:${target.port}, database "${target.database}"`;
  const detail = error instanceof Error ? error.message : String(error);
  if (unreachable) {
    return (
      `failed to connect to ${where} within ${waitSeconds} s (${detail}); check the host and ` +
      "port in DATABASE_URL and that the server is running"
    );
  }
  if (errorCode(error) === "ER_ACCESS_DENIED_ERROR") {
    return `${where} rejected the login (${detail}); check the user and password in DATABASE_URL`;
  }
  if (errorCode(error) === "ER_BAD_DB_ERROR") {
    return (
      `${where} does not exist (${detail}); create it with ` +
      `CREATE DATABASE \`${target.database}\` CHARACTER SET utf8mb4`
    );
  }
  return `failed to open ${where}: ${detail}`;
}

/** Converts values that mysql2's escaping would otherwise misread. */
function toMysqlParams(params: readonly SqlValue[]): unknown[] {
  return params.map((value) => {
    if (typeof value === "bigint") return value.toString();
    // A Uint8Array that is not a Buffer would be escaped as an object of key-value pairs.
    if (value instanceof Uint8Array && !Buffer.isBuffer(value)) {
      return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    }
    return value;
  });
}

/**
 * Rethrows ER_DUP_ENTRY as `UniqueViolationError`. The driver error stays as `cause` with its
 * `code`, `errno` and `sqlState`. The new message names the key but not the duplicate value,
 * because that value may be an email address.
 */
function mapMysqlError(error: unknown): unknown {
  if ((error as { errno?: unknown } | null)?.errno !== ER_DUP_ENTRY) return error;
  const message = error instanceof Error ? error.message : "";
  const key = /for key '([^']+)'/.exec(message)?.[1] ?? "unknown key";
  return new UniqueViolationError(`unique constraint violated: duplicate entry for ${key}`, {
    cause: error,
  });
}

type Queryable = Pick<mysql.Pool, "query">;

class MysqlExecutor implements SqlExecutor {
  readonly dialect = "mysql" as const;
  readonly #target: Queryable;

  constructor(target: Queryable) {
    this.#target = target;
  }

  async query<Row = Record<string, unknown>>(
    sql: string,
    params: readonly SqlValue[] = [],
  ): Promise<Row[]> {
    try {
      const [rows] = await this.#target.query(sql, toMysqlParams(params));
      return Array.isArray(rows) ? (rows as Row[]) : [];
    } catch (error) {
      throw mapMysqlError(error);
    }
  }

  async execute(sql: string, params: readonly SqlValue[] = []): Promise<ExecuteResult> {
    try {
      const [result] = await this.#target.query(sql, toMysqlParams(params));
      const affectedRows = (result as { affectedRows?: number }).affectedRows;
      return { affectedRows: typeof affectedRows === "number" ? affectedRows : 0 };
    } catch (error) {
      throw mapMysqlError(error);
    }
  }
}

interface MysqlDatabaseOptions {
  logger: Logger;
  lockTimeoutSeconds: number;
}

class MysqlDatabase extends MysqlExecutor implements SqlDatabase {
  readonly #pool: mysql.Pool;
  readonly #database: string;
  readonly #options: MysqlDatabaseOptions;

  constructor(pool: mysql.Pool, database: string, options: MysqlDatabaseOptions) {
    super(pool);
    this.#pool = pool;
    this.#database = database;
    this.#options = options;
  }

  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const connection = await this.#pool.getConnection();
    let reusable = true;
    try {
      await connection.beginTransaction();
      try {
        const result = await work(new MysqlExecutor(connection));
        await connection.commit();
        return result;
      } catch (error) {
        reusable = await this.#rollback(connection);
        throw mapMysqlError(error);
      }
    } finally {
      if (reusable) connection.release();
      else connection.destroy();
    }
  }

  /** Rolls back and returns whether the connection is fit to go back into the pool. */
  async #rollback(connection: mysql.PoolConnection): Promise<boolean> {
    try {
      await connection.rollback();
      return true;
    } catch (error) {
      this.#options.logger.error({ err: errorFields(error) }, "mysql rollback failed");
      return false;
    }
  }

  /**
   * Applies pending migrations while holding a named lock, so that replicas starting together
   * take turns and each migration runs once.
   * NOTE: MySQL commits DDL implicitly, so a migration that fails halfway stays partly applied
   * and is not recorded. Such a database needs a manual fix before the next start.
   */
  async migrate(migrations: readonly Migration[]): Promise<void> {
    const connection = await this.#pool.getConnection();
    const lockName = migrationLockName(this.#database);
    const { lockTimeoutSeconds } = this.#options;
    try {
      const [rows] = await connection.query("SELECT GET_LOCK(?, ?) AS acquired", [
        lockName,
        lockTimeoutSeconds,
      ]);
      const acquired = (rows as Array<{ acquired: number | null }>)[0]?.acquired;
      if (acquired !== 1) throw new MigrationLockTimeoutError(lockName, lockTimeoutSeconds);
      try {
        await this.#applyPending(new MysqlExecutor(connection), migrations);
      } finally {
        await connection.query("SELECT RELEASE_LOCK(?)", [lockName]);
      }
    } finally {
      connection.release();
    }
  }

  async #applyPending(executor: MysqlExecutor, migrations: readonly Migration[]): Promise<void> {
    await executor.execute(CREATE_MIGRATIONS_TABLE.mysql);
    const applied = await executor.query<{ id: string }>(SELECT_APPLIED_MIGRATIONS);
    const pending = pendingMigrations(migrations, new Set(applied.map((row) => row.id)));
    for (const migration of pending) {
      for (const statement of migration.statements.mysql) await executor.execute(statement);
      await executor.execute(INSERT_APPLIED_MIGRATION, [migration.id, new Date().toISOString()]);
      this.#options.logger.info({ migration: migration.id, dialect: "mysql" }, "migration applied");
    }
  }

  async ping(): Promise<void> {
    await this.#pool.query("SELECT 1");
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

/**
 * Returns the `GET_LOCK` name for a database. The lock is server-wide, so the name includes the
 * database. A long database name is replaced by its hash to stay within the length limit.
 */
function migrationLockName(database: string): string {
  const name = `schema_migrations.${database}`;
  if (name.length <= LOCK_NAME_MAX_LENGTH) return name;
  return `schema_migrations.${createHash("sha256").update(database).digest("hex").slice(0, 40)}`;
}
