/**
 * Adds a user to the auth database: `bun run user:add EMAIL [--admin]`. The password comes from
 * stdin when it is piped in, or is typed twice at hidden prompts.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openSqlDatabase } from "@mp3converter/lib/adapters/sql";
import { AppError } from "@mp3converter/lib/errors";
import { createLogger } from "@mp3converter/lib/log";
import { processEnv } from "@mp3converter/lib/runtime";
import { registerUser } from "../registration.ts";
import { createUserStore, USER_MIGRATIONS } from "../users.ts";
import { PasswordInputError, readNewPassword } from "./password-input.ts";

/** The all-in-one dev mode's data directory when DATA_DIR is not set, as `bun run dev` uses. */
const DEFAULT_DATA_DIR = "./.data";

/** Returns the users database of the all-in-one dev mode that runs on the same DATA_DIR. */
function devDatabaseUrl(env: Record<string, string | undefined>): string {
  return `sqlite:${join(env.DATA_DIR?.trim() || DEFAULT_DATA_DIR, "auth.db")}`;
}

export const EXIT_CODES = { added: 0, failed: 1, invalidInput: 2, emailTaken: 3 } as const;

const USAGE = `Usage: bun run user:add EMAIL [--admin]

Adds a user to the auth database. The password is read from stdin when stdin is
not a terminal (first line only); otherwise it is typed twice without echo.
Passwords must be 10 to 256 characters long.

Options:
  --admin    give the user the admin right (needed for SIGNUP_MODE=admin sign-ups)
  --help     print this help

Environment:
  DATABASE_URL   mysql://user:password@host:3306/database or sqlite:PATH
                 (default sqlite:$DATA_DIR/auth.db, the users of bun run dev)
  DATA_DIR       data directory of bun run dev (default ${DEFAULT_DATA_DIR})

Exit codes: 0 added, 1 failed, 2 invalid usage or input, 3 email already registered.`;

function fail(code: number, message: string): never {
  console.error(`user:add: ${message}`);
  process.exit(code);
}

function parseCommandLine(): { email: string; admin: boolean } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: { admin: { type: "boolean" }, help: { type: "boolean" } },
      allowPositionals: true,
    });
  } catch (error) {
    fail(EXIT_CODES.invalidInput, `${(error as Error).message}\n\n${USAGE}`);
  }
  if (parsed.values.help) {
    console.log(USAGE);
    process.exit(EXIT_CODES.added);
  }
  const [email, ...extra] = parsed.positionals;
  if (email === undefined || extra.length > 0)
    fail(EXIT_CODES.invalidInput, `expected one EMAIL\n\n${USAGE}`);
  return { email, admin: parsed.values.admin === true };
}

async function main(): Promise<void> {
  const { email, admin } = parseCommandLine();
  const env = processEnv();
  const databaseUrl = env.DATABASE_URL?.trim() || devDatabaseUrl(env);
  const password = await readNewPassword().catch((error: unknown) => {
    if (error instanceof PasswordInputError) fail(EXIT_CODES.invalidInput, error.message);
    throw error;
  });

  // Only errors are logged, to stderr, so that stdout carries the result alone.
  const logger = createLogger({ service: "user-add", level: "error", destination: process.stderr });
  const db = await openSqlDatabase(databaseUrl, { logger });
  try {
    await db.migrate(USER_MIGRATIONS);
    const user = await registerUser(createUserStore(db), { email, password, admin });
    console.log(`added ${user.admin ? "admin " : ""}user ${user.email} with id ${user.id}`);
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    const code = error.code === "conflict" ? EXIT_CODES.emailTaken : EXIT_CODES.invalidInput;
    fail(code, error.message);
  } finally {
    await db.close();
  }
}

// Only when run as a program, so that tests can import EXIT_CODES.
if (import.meta.main) {
  main().catch((error: unknown) => {
    fail(EXIT_CODES.failed, `failed: ${error instanceof Error ? error.message : String(error)}`);
  });
}
