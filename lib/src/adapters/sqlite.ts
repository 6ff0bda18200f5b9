/**
 * SQLite implementation of the SQL port on node:sqlite, which Bun and Deno both provide. The
 * driver is synchronous, so one connection serves the whole process and an async mutex keeps a
 * transaction's statements from interleaving with other callers' statements.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
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
  INSERT_APPLIED_MIGRATION,
  type OpenSqlOptions,
  pendingMigrations,
  SELECT_APPLIED_MIGRATIONS,
} from "./sql.ts";

/**
 * How long a statement waits for another connection's write lock before it fails with
 * SQLITE_BUSY. The wait blocks the event loop, because node:sqlite is synchronous.
 */
const BUSY_TIMEOUT_MS = 5_000;

/** Primary result code of SQLITE_BUSY; extended codes keep it in their low byte. */
const SQLITE_BUSY = 5;

/** Extended result codes of SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY. */
const UNIQUE_ERROR_CODES = new Set([2067, 1555]);

const MEMORY_PATH = ":memory:";

/** Returns the file path of a `sqlite:` URL, or `:memory:`. */
export function sqlitePathOf(url: string): string {
  if (!url.toLowerCase().startsWith("sqlite:")) {
    throw new Error(`not a SQLite URL: expected sqlite:PATH or sqlite::memory:`);
  }
  const path = url.slice("sqlite:".length);
  if (path === "" || path.startsWith("//")) {
    throw new Error(
      `invalid SQLite URL "${url}"; write sqlite:./relative/path.db, sqlite:/absolute/path.db ` +
        "or sqlite::memory:",
    );
  }
  return path;
}

/** Opens a SQLite database in WAL mode with foreign keys on, creating its folder if needed. */
export async function openSqliteDatabase(
  url: string,
  options: OpenSqlOptions,
): Promise<SqlDatabase> {
  const path = sqlitePathOf(url);
  if (path !== MEMORY_PATH) mkdirSync(dirname(path), { recursive: true });
  const db = new DatabaseSync(path);
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    await execRetryingBusy(db, "PRAGMA journal_mode = WAL");
    db.exec("PRAGMA foreign_keys = ON");
  } catch (error) {
    db.close();
    throw error;
  }
  options.logger.info({ dialect: "sqlite", path }, "sql database opened");
  return new SqliteDatabase(db, options.logger);
}

function isBusyError(error: unknown): boolean {
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  return typeof errcode === "number" && (errcode & 0xff) === SQLITE_BUSY;
}

/**
 * Runs a statement again while it fails with SQLITE_BUSY, for up to BUSY_TIMEOUT_MS after the
 * first failure. Setting WAL mode failed this way when three processes opened one new database
 * at once, because SQLite does not always call its busy handler for that lock.
 */
async function execRetryingBusy(db: DatabaseSync, sql: string): Promise<void> {
  let deadline: number | undefined;
  for (let delayMs = 10; ; delayMs = Math.min(delayMs * 2, 250)) {
    try {
      db.exec(sql);
      return;
    } catch (error) {
      if (!isBusyError(error)) throw error;
      deadline ??= Date.now() + BUSY_TIMEOUT_MS;
      if (Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/** Serializes async sections, so that a transaction has the connection to itself. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();

  run<T>(section: () => T | Promise<T>): Promise<T> {
    const result = this.#tail.then(section);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

function toSqliteParams(params: readonly SqlValue[]): SQLInputValue[] {
  return params as SQLInputValue[];
}

/** Rethrows a duplicate-key error as `UniqueViolationError`, keeping the driver error as cause. */
function mapSqliteError(error: unknown): unknown {
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  if (typeof errcode === "number" && UNIQUE_ERROR_CODES.has(errcode)) {
    const detail = error instanceof Error ? error.message : String(error);
    return new UniqueViolationError(`unique constraint violated: ${detail}`, { cause: error });
  }
  return error;
}

/** Statements on the raw connection, without the mutex; used inside transactions. */
class SqliteExecutor implements SqlExecutor {
  readonly dialect = "sqlite" as const;
  protected readonly db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.db = db;
  }

  async query<Row = Record<string, unknown>>(
    sql: string,
    params: readonly SqlValue[] = [],
  ): Promise<Row[]> {
    return this.queryNow<Row>(sql, params);
  }

  async execute(sql: string, params: readonly SqlValue[] = []): Promise<ExecuteResult> {
    return this.executeNow(sql, params);
  }

  protected queryNow<Row>(sql: string, params: readonly SqlValue[]): Row[] {
    try {
      const rows = this.db.prepare(sql).all(...toSqliteParams(params));
      // node:sqlite returns rows without a prototype, so they are copied into plain objects.
      return rows.map((row) => ({ ...row }) as Row);
    } catch (error) {
      throw mapSqliteError(error);
    }
  }

  protected executeNow(sql: string, params: readonly SqlValue[]): ExecuteResult {
    try {
      const result = this.db.prepare(sql).run(...toSqliteParams(params));
      return { affectedRows: Number(result.changes) };
    } catch (error) {
      throw mapSqliteError(error);
    }
  }
}

class SqliteDatabase extends SqliteExecutor implements SqlDatabase {
  readonly #logger: Logger;
  readonly #mutex = new Mutex();
  readonly #executor: SqliteExecutor;

  constructor(db: DatabaseSync, logger: Logger) {
    super(db);
    this.#logger = logger;
    this.#executor = new SqliteExecutor(db);
  }

  override query<Row = Record<string, unknown>>(
    sql: string,
    params: readonly SqlValue[] = [],
  ): Promise<Row[]> {
    return this.#mutex.run(() => this.queryNow<Row>(sql, params));
  }

  override execute(sql: string, params: readonly SqlValue[] = []): Promise<ExecuteResult> {
    return this.#mutex.run(() => this.executeNow(sql, params));
  }

  /**
   * Runs `work` in an immediate transaction, which takes the write lock at once and so cannot
   * fail later on a lock upgrade.
   * NOTE: `work` must use `tx`. A call on the database object itself waits for the transaction
   * to end and so never returns.
   */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#mutex.run(async () => {
      this.db.exec("BEGIN IMMEDIATE");
      try {
        const result = await work(this.#executor);
        this.db.exec("COMMIT");
        return result;
      } catch (error) {
        this.#rollback();
        throw error;
      }
    });
  }

  /**
   * Applies pending migrations in one immediate transaction. The write lock makes a second
   * process wait and then find the migrations applied. SQLite DDL is transactional, so a failed
   * migration leaves nothing behind.
   */
  migrate(migrations: readonly Migration[]): Promise<void> {
    return this.#mutex.run(() => {
      this.db.exec("BEGIN IMMEDIATE");
      try {
        this.#applyPending(migrations);
        this.db.exec("COMMIT");
      } catch (error) {
        this.#rollback();
        throw error;
      }
    });
  }

  #applyPending(migrations: readonly Migration[]): void {
    this.db.exec(CREATE_MIGRATIONS_TABLE.sqlite);
    const applied = this.queryNow<{ id: string }>(SELECT_APPLIED_MIGRATIONS, []);
    const pending = pendingMigrations(migrations, new Set(applied.map((row) => row.id)));
    for (const migration of pending) {
      for (const statement of migration.statements.sqlite) this.db.exec(statement);
      this.executeNow(INSERT_APPLIED_MIGRATION, [migration.id, new Date().toISOString()]);
      this.#logger.info({ migration: migration.id, dialect: "sqlite" }, "migration applied");
    }
  }

  #rollback(): void {
    try {
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
    } catch (error) {
      this.#logger.error({ err: errorFields(error) }, "sqlite rollback failed");
    }
  }

  ping(): Promise<void> {
    return this.#mutex.run(() => {
      this.db.prepare("SELECT 1").get();
    });
  }

  close(): Promise<void> {
    return this.#mutex.run(() => {
      if (this.db.isOpen) this.db.close();
    });
  }
}
