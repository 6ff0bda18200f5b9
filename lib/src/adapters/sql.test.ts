/**
 * Contract tests of the SQL port, run against SQLite (a file in a temporary folder) and against
 * the local MariaDB server (a database with a random name, dropped at the end).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { createLogger } from "../log.ts";
import { type Migration, type SqlDatabase, UniqueViolationError } from "../ports/sql.ts";
import { openSqlDatabase } from "./sql.ts";

const logger = createLogger({ service: "sql-test", level: "silent" });
const MYSQL_SERVER = { host: "127.0.0.1", port: 3306, user: "root", password: "" };

/** A database that one dialect's tests share, and how to remove it. */
interface Fixture {
  url: string;
  cleanup(): Promise<void>;
}

function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString("hex")}`;
}

async function createSqliteFixture(): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), "mp3c-sql-"));
  return {
    url: `sqlite:${join(dir, "nested", "folder", "test.db")}`,
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

async function createMysqlFixture(): Promise<Fixture> {
  const database = uniqueName("mp3c_test");
  const admin = await mysql.createConnection(MYSQL_SERVER);
  await admin.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
  await admin.end();
  return {
    url: `mysql://root:@127.0.0.1:3306/${database}`,
    cleanup: async () => {
      const connection = await mysql.createConnection(MYSQL_SERVER);
      await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
      await connection.end();
    },
  };
}

/** Two migrations whose statements fail or double-count if they ever run twice. */
function countingMigrations(table: string, dialect: "sqlite" | "mysql"): Migration[] {
  // The pause widens the window in which a second pool would run the migration too.
  const pause = dialect === "mysql" ? ["DO SLEEP(0.3)"] : [];
  const create = `CREATE TABLE ${table} (migration VARCHAR(64) NOT NULL)`;
  const insert = (id: string) => `INSERT INTO ${table} (migration) VALUES ('${id}')`;
  const statements = (list: string[]) => ({ sqlite: list, mysql: [...pause, ...list] });
  return [
    { id: `${table}-002`, statements: statements([insert("002")]) },
    { id: `${table}-001`, statements: statements([create, insert("001")]) },
  ];
}

function describeSqlContract(dialect: "sqlite" | "mysql", createFixture: () => Promise<Fixture>) {
  describe(`sql contract on ${dialect}`, () => {
    let fixture: Fixture;
    const opened: SqlDatabase[] = [];

    async function open(): Promise<SqlDatabase> {
      const db = await openSqlDatabase(fixture.url, { logger });
      opened.push(db);
      return db;
    }

    beforeAll(async () => {
      fixture = await createFixture();
    });

    afterAll(async () => {
      for (const db of opened) await db.close().catch(() => {});
      await fixture.cleanup();
    });

    test("reports its dialect", async () => {
      const db = await open();
      expect(db.dialect).toBe(dialect);
    });

    test("inserts and queries every value type", async () => {
      const db = await open();
      const table = uniqueName("values");
      const blobType = dialect === "mysql" ? "VARBINARY(16)" : "BLOB";
      await db.execute(
        `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, name VARCHAR(64), size BIGINT, ` +
          `note VARCHAR(64), data ${blobType})`,
      );
      const inserted = await db.execute(
        `INSERT INTO ${table} (id, name, size, note, data) VALUES (?, ?, ?, ?, ?)`,
        [1, "Zoë 🎵", 9_007_199_254_740_000n, null, new Uint8Array([0, 1, 255])],
      );
      expect(inserted.affectedRows).toBe(1);

      const rows = await db.query<{
        id: number;
        name: string;
        size: number | string;
        note: null;
        data: Uint8Array;
      }>(`SELECT id, name, size, note, data FROM ${table} WHERE id = ?`, [1]);
      expect(rows).toHaveLength(1);
      const row = rows[0];
      expect(row?.id).toBe(1);
      expect(row?.name).toBe("Zoë 🎵");
      expect(Number(row?.size)).toBe(9_007_199_254_740_000);
      expect(row?.note).toBeNull();
      expect([...new Uint8Array(row?.data ?? [])]).toEqual([0, 1, 255]);
    });

    test("execute returns the affected row count", async () => {
      const db = await open();
      const table = uniqueName("counts");
      await db.execute(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, state VARCHAR(16))`);
      for (const id of [1, 2, 3]) {
        await db.execute(`INSERT INTO ${table} (id, state) VALUES (?, 'queued')`, [id]);
      }
      const updated = await db.execute(`UPDATE ${table} SET state = 'done' WHERE id < ?`, [3]);
      expect(updated.affectedRows).toBe(2);
      const none = await db.execute(`UPDATE ${table} SET state = 'done' WHERE id > ?`, [10]);
      expect(none.affectedRows).toBe(0);
    });

    test("duplicate key raises UniqueViolationError", async () => {
      const db = await open();
      const table = uniqueName("users");
      await db.execute(
        `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, email VARCHAR(254) NOT NULL UNIQUE)`,
      );
      await db.execute(`INSERT INTO ${table} (id, email) VALUES (?, ?)`, [1, "a@example.com"]);

      const error = await db
        .execute(`INSERT INTO ${table} (id, email) VALUES (?, ?)`, [2, "a@example.com"])
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(UniqueViolationError);
      expect((error as Error).message).not.toContain("a@example.com");
      const cause = (error as Error).cause as Record<string, unknown>;
      expect(cause).toBeInstanceOf(Error);
      if (dialect === "mysql") {
        expect(cause.code).toBe("ER_DUP_ENTRY");
        expect(cause.errno).toBe(1062);
        expect(cause.sqlState).toBe("23000");
      }

      const primary = await db
        .execute(`INSERT INTO ${table} (id, email) VALUES (?, ?)`, [1, "b@example.com"])
        .catch((caught: unknown) => caught);
      expect(primary).toBeInstanceOf(UniqueViolationError);
    });

    test("transaction commits when work resolves", async () => {
      const db = await open();
      const table = uniqueName("commit");
      await db.execute(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY)`);
      const result = await db.transaction(async (tx) => {
        await tx.execute(`INSERT INTO ${table} (id) VALUES (?)`, [1]);
        await tx.execute(`INSERT INTO ${table} (id) VALUES (?)`, [2]);
        return "done";
      });
      expect(result).toBe("done");
      const rows = await db.query(`SELECT id FROM ${table} ORDER BY id`);
      expect(rows).toEqual([{ id: 1 }, { id: 2 }]);
    });

    test("transaction rolls back when work throws", async () => {
      const db = await open();
      const table = uniqueName("rollback");
      await db.execute(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY)`);
      const failure = new Error("work failed");
      const error = await db
        .transaction(async (tx) => {
          await tx.execute(`INSERT INTO ${table} (id) VALUES (?)`, [1]);
          throw failure;
        })
        .catch((caught: unknown) => caught);
      expect(error).toBe(failure);
      expect(await db.query(`SELECT id FROM ${table}`)).toEqual([]);
    });

    test("transaction maps a duplicate key and rolls back", async () => {
      const db = await open();
      const table = uniqueName("txdup");
      await db.execute(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY)`);
      await db.execute(`INSERT INTO ${table} (id) VALUES (?)`, [1]);
      const error = await db
        .transaction(async (tx) => {
          await tx.execute(`INSERT INTO ${table} (id) VALUES (?)`, [2]);
          await tx.execute(`INSERT INTO ${table} (id) VALUES (?)`, [1]);
        })
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(UniqueViolationError);
      expect(await db.query(`SELECT id FROM ${table}`)).toEqual([{ id: 1 }]);
    });

    test("rollback keeps statements made outside", async () => {
      const db = await open();
      const table = uniqueName("isolation");
      await db.execute(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY)`);
      let releaseWork = () => {};
      const workBlocked = new Promise<void>((resolve) => {
        releaseWork = resolve;
      });
      const transaction = db.transaction(async (tx) => {
        await tx.execute(`INSERT INTO ${table} (id) VALUES (?)`, [1]);
        await workBlocked;
        throw new Error("roll back");
      });
      const outside = db.execute(`INSERT INTO ${table} (id) VALUES (?)`, [2]);
      releaseWork();
      await expect(transaction).rejects.toThrow("roll back");
      await outside;
      expect(await db.query(`SELECT id FROM ${table}`)).toEqual([{ id: 2 }]);
    });

    test("concurrent migrate applies each migration once", async () => {
      const table = uniqueName("migrated");
      const migrations = countingMigrations(table, dialect);
      const [first, second] = [await open(), await open()];

      await Promise.all([first.migrate(migrations), second.migrate(migrations)]);
      await first.migrate(migrations);

      const rows = await first.query<{ migration: string }>(
        `SELECT migration FROM ${table} ORDER BY migration`,
      );
      expect(rows.map((row) => row.migration)).toEqual(["001", "002"]);
      const recorded = await first.query<{ id: string; applied_at: string }>(
        "SELECT id, applied_at FROM schema_migrations WHERE id LIKE ? ORDER BY id",
        [`${table}-%`],
      );
      expect(recorded.map((row) => row.id)).toEqual([`${table}-001`, `${table}-002`]);
      expect(Number.isNaN(Date.parse(recorded[0]?.applied_at ?? ""))).toBe(false);
    });

    test("migrate applies only new migrations", async () => {
      const db = await open();
      const table = uniqueName("later");
      const [second, first] = countingMigrations(table, dialect) as [Migration, Migration];
      await db.migrate([first]);
      expect(await db.query(`SELECT migration FROM ${table}`)).toEqual([{ migration: "001" }]);
      await db.migrate([first, second]);
      const rows = await db.query(`SELECT migration FROM ${table} ORDER BY migration`);
      expect(rows).toEqual([{ migration: "001" }, { migration: "002" }]);
    });

    test("migrate rejects a duplicate migration id", async () => {
      const db = await open();
      const migration: Migration = { id: "dup-1", statements: { sqlite: [], mysql: [] } };
      await expect(db.migrate([migration, migration])).rejects.toThrow('"dup-1" is used twice');
    });

    test("ping resolves and close ends the connection", async () => {
      const db = await openSqlDatabase(fixture.url, { logger });
      await db.ping();
      await db.close();
      await expect(db.ping()).rejects.toThrow();
    });
  });
}

describeSqlContract("sqlite", createSqliteFixture);
describeSqlContract("mysql", createMysqlFixture);

describe("openSqlDatabase", () => {
  test("rejects an unsupported scheme", async () => {
    await expect(openSqlDatabase("postgres://db/app", { logger })).rejects.toThrow(
      'unsupported database URL scheme "postgres:"',
    );
  });
});
