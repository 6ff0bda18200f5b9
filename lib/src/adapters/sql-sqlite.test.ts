/** SQLite-specific behaviour of the SQL adapter: URLs, pragmas and migrations across processes. */
import { afterAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { createLogger } from "../log.ts";
import type { Migration } from "../ports/sql.ts";
import { openSqlDatabase } from "./sql.ts";
import { sqlitePathOf } from "./sqlite.ts";

const logger = createLogger({ service: "sqlite-test", level: "silent" });
const dir = mkdtempSync(join(tmpdir(), "mp3c-sqlite-"));

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `script` in a new runtime process and resolves with its exit code and stderr. */
function runScript(script: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stderr }));
  });
}

describe("sqlite adapter", () => {
  test("sqlitePathOf accepts paths and memory", () => {
    expect(sqlitePathOf("sqlite:./.data/auth.db")).toBe("./.data/auth.db");
    expect(sqlitePathOf("sqlite:/var/lib/app.db")).toBe("/var/lib/app.db");
    expect(sqlitePathOf("sqlite::memory:")).toBe(":memory:");
  });

  test("sqlitePathOf rejects an empty or host path", () => {
    expect(() => sqlitePathOf("sqlite:")).toThrow("invalid SQLite URL");
    expect(() => sqlitePathOf("sqlite://host/app.db")).toThrow("sqlite:/absolute/path.db");
  });

  test("memory database works", async () => {
    const db = await openSqlDatabase("sqlite::memory:", { logger });
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    await db.execute("INSERT INTO t (id) VALUES (?)", [7]);
    expect(await db.query("SELECT id FROM t")).toEqual([{ id: 7 }]);
    await db.close();
  });

  test("file database creates folders and uses WAL", async () => {
    const path = join(dir, "a", "b", "wal.db");
    const db = await openSqlDatabase(`sqlite:${path}`, { logger });
    expect(existsSync(path)).toBe(true);
    expect(await db.query("PRAGMA journal_mode")).toEqual([{ journal_mode: "wal" }]);
    expect(await db.query("PRAGMA foreign_keys")).toEqual([{ foreign_keys: 1 }]);
    const [timeout] = await db.query<Record<string, number>>("PRAGMA busy_timeout");
    expect(Object.values(timeout ?? {})[0]).toBeGreaterThan(0);
    await db.close();
  });

  test("foreign keys are enforced", async () => {
    const db = await openSqlDatabase("sqlite::memory:", { logger });
    await db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)");
    await db.execute(
      "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id))",
    );
    await expect(db.execute("INSERT INTO child (id, parent_id) VALUES (1, 99)")).rejects.toThrow(
      "FOREIGN KEY constraint failed",
    );
    await db.close();
  });

  test("failed migration leaves nothing behind", async () => {
    const db = await openSqlDatabase("sqlite::memory:", { logger });
    const broken: Migration = {
      id: "001-broken",
      statements: { sqlite: ["CREATE TABLE half (id INTEGER)", "NOT SQL"], mysql: [] },
    };
    await expect(db.migrate([broken])).rejects.toThrow();
    const tables = await db.query("SELECT name FROM sqlite_master WHERE name = 'half'");
    expect(tables).toEqual([]);
    await db.close();
  });

  test("open waits out a lock held past the busy timeout", async () => {
    const path = join(dir, "locked.db");
    const holder = new DatabaseSync(path);
    holder.exec("PRAGMA journal_mode = DELETE");
    holder.exec("BEGIN EXCLUSIVE");
    // The busy handler blocks the event loop, so this timer fires only after the first attempt
    // has failed. A later attempt then finds the lock free.
    const release = setTimeout(() => holder.exec("COMMIT"), 50);
    try {
      const db = await openSqlDatabase(`sqlite:${path}`, { logger });
      const [mode] = await db.query<{ journal_mode: string }>("PRAGMA journal_mode");
      expect(mode?.journal_mode).toBe("wal");
      await db.close();
    } finally {
      clearTimeout(release);
      if (holder.isTransaction) holder.exec("COMMIT");
      holder.close();
    }
  }, 20_000);

  test("processes migrating at once apply each migration once", async () => {
    const path = join(dir, "shared.db");
    const script = join(dir, "migrate.ts");
    const adapter = join(import.meta.dir, "sql.ts");
    const log = join(import.meta.dir, "..", "log.ts");
    writeFileSync(
      script,
      [
        `import { openSqlDatabase } from ${JSON.stringify(adapter)};`,
        `import { createLogger } from ${JSON.stringify(log)};`,
        `const logger = createLogger({ service: "migrate", level: "silent" });`,
        "const db = await openSqlDatabase(process.argv[2], { logger });",
        "await db.migrate(JSON.parse(process.argv[3]));",
        "await db.close();",
      ].join("\n"),
    );
    const migrations: Migration[] = [
      {
        id: "001-create",
        statements: {
          sqlite: ["CREATE TABLE runs (id TEXT)", "INSERT INTO runs (id) VALUES ('001')"],
          mysql: [],
        },
      },
      {
        id: "002-insert",
        statements: { sqlite: ["INSERT INTO runs (id) VALUES ('002')"], mysql: [] },
      },
    ];

    const args = [`sqlite:${path}`, JSON.stringify(migrations)];
    const results = await Promise.all([1, 2, 3].map(() => runScript(script, args)));

    for (const result of results) expect(result).toEqual({ code: 0, stderr: "" });
    const db = await openSqlDatabase(`sqlite:${path}`, { logger });
    const rows = await db.query("SELECT id FROM runs ORDER BY id");
    expect(rows).toEqual([{ id: "001" }, { id: "002" }]);
    const recorded = await db.query("SELECT id FROM schema_migrations ORDER BY id");
    expect(recorded).toEqual([{ id: "001-create" }, { id: "002-insert" }]);
    await db.close();
  });
});
