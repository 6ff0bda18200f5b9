/** Runs `user:add` as a process, the way an operator does, against a SQLite database. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { createLogger } from "@mp3converter/lib/log";
import { verify } from "@node-rs/argon2";
import { createUserStore, USER_MIGRATIONS } from "../users.ts";
import { EXIT_CODES } from "./user-add.ts";

const SCRIPT = resolve(import.meta.dir, "user-add.ts");
const PASSWORD = "a long passphrase";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "user-add-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the command with `stdin` piped in and returns its exit code and output. */
function userAdd(args: string[], stdin: string | Buffer, env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(process.execPath, [SCRIPT, ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("close", (code) => done({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

async function findUser(databasePath: string, email: string) {
  const logger = createLogger({ service: "user-add-test", level: "silent" });
  const db = await openSqlDatabase(`sqlite:${databasePath}`, { logger });
  try {
    await db.migrate(USER_MIGRATIONS);
    return await createUserStore(db).findByEmail(email);
  } finally {
    await db.close();
  }
}

test("user:add stores a hashed password in DATA_DIR", async () => {
  const dataDir = join(dir, "data");
  const run = await userAdd(["Alice@Example.com"], `${PASSWORD}\n`, { DATA_DIR: dataDir });

  expect(run.stderr).toBe("");
  expect(run.code).toBe(EXIT_CODES.added);
  expect(run.stdout).toContain("added user alice@example.com");
  const user = await findUser(join(dataDir, "auth.db"), "alice@example.com");
  expect(user?.admin).toBe(false);
  expect(user?.passwordHash.startsWith("$argon2id$")).toBe(true);
  expect(await verify(user?.passwordHash ?? "", PASSWORD)).toBe(true);
});

test("user:add --admin makes an admin", async () => {
  const databasePath = join(dir, "admins.db");
  const run = await userAdd(["--admin", "root@example.com"], PASSWORD, {
    DATABASE_URL: `sqlite:${databasePath}`,
  });

  expect(run.code).toBe(EXIT_CODES.added);
  expect((await findUser(databasePath, "root@example.com"))?.admin).toBe(true);
});

test("user:add of a taken email exits 3", async () => {
  const env = { DATABASE_URL: `sqlite:${join(dir, "taken.db")}` };
  expect((await userAdd(["bob@example.com"], PASSWORD, env)).code).toBe(EXIT_CODES.added);

  const again = await userAdd(["BOB@example.com"], PASSWORD, env);
  expect(again.code).toBe(EXIT_CODES.emailTaken);
  expect(again.stderr).toContain("user:add:");
});

test.each([
  ["a short password", ["carol@example.com"], "short\n"],
  ["an empty password", ["carol@example.com"], ""],
  [
    "a password that is not UTF-8",
    ["carol@example.com"],
    Buffer.from("a long \xff passphrase", "latin1"),
  ],
  ["an invalid email", ["not-an-email"], PASSWORD],
  ["no email", [], PASSWORD],
  ["two emails", ["a@example.com", "b@example.com"], PASSWORD],
  ["an unknown option", ["--owner", "a@example.com"], PASSWORD],
])("user:add with %s exits 2", async (_case, args, stdin) => {
  const databasePath = join(dir, "invalid.db");
  const run = await userAdd(args, stdin, { DATABASE_URL: `sqlite:${databasePath}` });

  expect(run.code).toBe(EXIT_CODES.invalidInput);
  expect(run.stdout).toBe("");
  expect(run.stderr.length).toBeGreaterThan(0);
});
