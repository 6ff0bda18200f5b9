/**
 * MySQL-specific behaviour of the SQL adapter against the local MariaDB server: session
 * settings, the migration lock and recovery from a lost connection. Uses its own database with
 * a random name, dropped at the end.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import mysql from "mysql2/promise";
import { createLogger } from "../log.ts";
import type { SqlDatabase } from "../ports/sql.ts";
import { MigrationLockTimeoutError, parseMysqlUrl } from "./mysql.ts";
import { openSqlDatabase } from "./sql.ts";

const logger = createLogger({ service: "mysql-test", level: "silent" });
const SERVER = { host: "127.0.0.1", port: 3306, user: "root", password: "" };
const database = `mp3c_test_${randomBytes(4).toString("hex")}`;
const url = `mysql://root@127.0.0.1:3306/${database}`;
const opened: SqlDatabase[] = [];

async function open(options: { migrationLockTimeoutSeconds?: number } = {}) {
  const db = await openSqlDatabase(url, { logger, ...options });
  opened.push(db);
  return db;
}

/** Returns a loopback port that nothing listens on, by binding and closing a server. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts a TCP proxy from `port` to the MariaDB server. */
async function startProxy(port: number): Promise<{ server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = tcpConnect(SERVER.port, SERVER.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, sockets };
}

/** Polls `check` until it resolves true or the deadline passes. */
async function waitFor(check: () => Promise<boolean>, deadlineMs: number): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

beforeAll(async () => {
  const admin = await mysql.createConnection(SERVER);
  await admin.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
  await admin.end();
});

afterAll(async () => {
  for (const db of opened) await db.close().catch(() => {});
  const admin = await mysql.createConnection(SERVER);
  await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
  await admin.end();
});

describe("mysql adapter", () => {
  test("parseMysqlUrl reads every part", () => {
    expect(parseMysqlUrl("mysql://app:p%40ss@db.internal:3307/auth")).toEqual({
      host: "db.internal",
      port: 3307,
      user: "app",
      password: "p@ss",
      database: "auth",
    });
    expect(parseMysqlUrl("mysql://app@[::1]/auth").host).toBe("::1");
    expect(parseMysqlUrl("mysql://app@db/auth").port).toBe(3306);
  });

  test("parseMysqlUrl rejects a URL without database", () => {
    expect(() => parseMysqlUrl("mysql://app:secret@db:3306/")).toThrow(
      "needs a host and a database",
    );
    expect(() => parseMysqlUrl("mysql://app:secret@db:3306/")).not.toThrow("secret");
  });

  test("sessions use UTC and utf8mb4", async () => {
    const db = await open();
    const [session] = await db.query<{ zone: string; charset: string }>(
      "SELECT @@session.time_zone AS zone, @@character_set_connection AS charset",
    );
    expect(session?.zone).toBe("+00:00");
    expect(session?.charset).toBe("utf8mb4");
  });

  test("migrate times out while another session holds the lock", async () => {
    const db = await open({ migrationLockTimeoutSeconds: 1 });
    const holder = await mysql.createConnection({ ...SERVER, database });
    try {
      await holder.query("SELECT GET_LOCK(?, 10)", [`schema_migrations.${database}`]);
      const error = await db.migrate([]).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(MigrationLockTimeoutError);
      expect((error as Error).message).toContain("timed out after 1 s");
    } finally {
      await holder.end();
    }
    await db.migrate([]);
  });

  test("open waits for a server that starts late", async () => {
    const port = await closedPort();
    let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
    const starting = new Promise((resolve) => setTimeout(resolve, 800)).then(async () => {
      proxy = await startProxy(port);
    });
    try {
      const db = await openSqlDatabase(`mysql://root@127.0.0.1:${port}/${database}`, {
        logger,
        connectWaitSeconds: 20,
      });
      opened.push(db);
      const [row] = await db.query<{ one: number }>("SELECT 1 AS one");
      expect(row?.one).toBe(1);
      await db.close();
    } finally {
      await starting;
      for (const socket of proxy?.sockets ?? []) socket.destroy();
      proxy?.server.close();
    }
  });

  test("open names an unreachable server", async () => {
    const port = await closedPort();
    const error = await openSqlDatabase(`mysql://root:s3cret-pw@127.0.0.1:${port}/${database}`, {
      logger,
      connectWaitSeconds: 1,
    }).catch((caught: unknown) => caught as Error);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain(`MySQL at 127.0.0.1:${port}, database "${database}"`);
    expect(message).toContain("within 1 s");
    expect(message).toContain("DATABASE_URL");
    expect(message).not.toContain("s3cret-pw");
  });

  test("open rejects a wrong password at once", async () => {
    const started = Date.now();
    const error = await openSqlDatabase(
      `mysql://no_such_user:s3cret-pw@127.0.0.1:3306/${database}`,
      {
        logger,
        connectWaitSeconds: 20,
      },
    ).catch((caught: unknown) => caught as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain("rejected the login");
    expect((error as Error).message).not.toContain("s3cret-pw");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test("open names a missing database", async () => {
    const missing = `${database}_missing`;
    const error = await openSqlDatabase(`mysql://root@127.0.0.1:3306/${missing}`, {
      logger,
      connectWaitSeconds: 20,
    }).catch((caught: unknown) => caught as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`database "${missing}" does not exist`);
    expect((error as Error).message).toContain("CREATE DATABASE");
  });

  test("pool recovers after its connection is killed", async () => {
    const db = await open();
    const [before] = await db.query<{ id: number }>("SELECT CONNECTION_ID() AS id");
    const killer = await mysql.createConnection({ ...SERVER, database });
    try {
      await killer.query("KILL ?", [before?.id]);
    } finally {
      await killer.end();
    }
    const recovered = await waitFor(async () => {
      const [after] = await db.query<{ id: number }>("SELECT CONNECTION_ID() AS id");
      return after !== undefined && after.id !== before?.id;
    }, 5_000);
    expect(recovered).toBe(true);
  });
});
