/**
 * SQL port for users (auth) and jobs (gateway). Production: MySQL or MariaDB through mysql2
 * (`mysql://`). Embedded: SQLite through node:sqlite (`sqlite:` followed by a file path, or
 * `sqlite::memory:`). Both take `?` placeholders, so most statements are shared.
 */

export type SqlDialect = "sqlite" | "mysql";
export type SqlValue = string | number | bigint | null | Uint8Array;

/** A schema change, applied once per database in the order of `id`. */
export interface Migration {
  /** Sortable, unique id, for example `001-create-users`. */
  id: string;
  /** Statements per dialect, run in one go; DDL is not transactional on MySQL. */
  statements: Record<SqlDialect, readonly string[]>;
}

export interface ExecuteResult {
  affectedRows: number;
}

/** Raised for a duplicate key, whichever the database. */
export class UniqueViolationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UniqueViolationError";
  }
}

export interface SqlExecutor {
  readonly dialect: SqlDialect;
  query<Row = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<Row[]>;
  execute(sql: string, params?: readonly SqlValue[]): Promise<ExecuteResult>;
}

export interface SqlDatabase extends SqlExecutor {
  /** Runs `work` in a transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /**
   * Applies the migrations not yet applied. Safe when several replicas start at once: one
   * applies them while the others wait, then find nothing left to do.
   */
  migrate(migrations: readonly Migration[]): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
