/**
 * Opens the SQL database that a URL names: `mysql://user:password@host:port/database` through
 * mysql2, or `sqlite:PATH` and `sqlite::memory:` through node:sqlite. Also holds the migration
 * bookkeeping that both implementations share.
 */
import type { Logger } from "../log.ts";
import type { Migration, SqlDatabase, SqlDialect } from "../ports/sql.ts";

export interface OpenSqlOptions {
  logger: Logger;
  /**
   * Maximum time `migrate()` waits for another replica that is applying migrations, in seconds.
   * Defaults to 60.
   */
  migrationLockTimeoutSeconds?: number;
  /**
   * Maximum time opening a MySQL database retries while the server is not reachable yet, in
   * seconds. Defaults to 30. SQLite ignores it.
   */
  connectWaitSeconds?: number;
}

export const DEFAULT_MIGRATION_LOCK_TIMEOUT_SECONDS = 60;

/** Opens a database by URL scheme; the driver module is loaded only for the scheme in use. */
export async function openSqlDatabase(url: string, options: OpenSqlOptions): Promise<SqlDatabase> {
  const scheme = url.slice(0, url.indexOf(":") + 1).toLowerCase();
  if (scheme === "sqlite:") {
    const { openSqliteDatabase } = await import("./sqlite.ts");
    return openSqliteDatabase(url, options);
  }
  if (scheme === "mysql:") {
    const { openMysqlDatabase } = await import("./mysql.ts");
    return openMysqlDatabase(url, options);
  }
  throw new Error(
    `unsupported database URL scheme "${scheme || "(none)"}": ` +
      "use mysql://user:password@host:3306/database or sqlite:PATH",
  );
}

/** Table that records which migrations a database has applied. */
export const MIGRATIONS_TABLE = "schema_migrations";

export const CREATE_MIGRATIONS_TABLE: Record<SqlDialect, string> = {
  sqlite: `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
    id TEXT PRIMARY KEY NOT NULL,
    applied_at TEXT NOT NULL
  )`,
  mysql: `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
    id VARCHAR(191) PRIMARY KEY NOT NULL,
    applied_at VARCHAR(32) NOT NULL
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
};

export const SELECT_APPLIED_MIGRATIONS = `SELECT id FROM ${MIGRATIONS_TABLE}`;
export const INSERT_APPLIED_MIGRATION = `INSERT INTO ${MIGRATIONS_TABLE} (id, applied_at) VALUES (?, ?)`;

/**
 * Returns the migrations missing from `appliedIds`, sorted by id. Throws when two migrations
 * share an id, because the second one would never run.
 */
export function pendingMigrations(
  migrations: readonly Migration[],
  appliedIds: ReadonlySet<string>,
): Migration[] {
  const seen = new Set<string>();
  for (const migration of migrations) {
    if (seen.has(migration.id)) {
      throw new Error(
        `migration id "${migration.id}" is used twice; give each migration its own id`,
      );
    }
    seen.add(migration.id);
  }
  return [...migrations]
    .filter((migration) => !appliedIds.has(migration.id))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
