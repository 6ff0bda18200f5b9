/** The users table on the SQL port. The statements are the same for SQLite and MySQL. */
import type { Migration, SqlDatabase } from "@mp3converter/lib/ports/sql";

export const USER_MIGRATIONS: readonly Migration[] = [
  {
    id: "auth-001-create-users",
    statements: {
      sqlite: [
        `CREATE TABLE users (
          id TEXT PRIMARY KEY NOT NULL,
          email TEXT NOT NULL UNIQUE,
          password_hash TEXT NOT NULL,
          is_admin INTEGER NOT NULL DEFAULT 0,
          created_at TEXT NOT NULL
        )`,
      ],
      mysql: [
        `CREATE TABLE users (
          id CHAR(36) PRIMARY KEY NOT NULL,
          email VARCHAR(254) NOT NULL,
          password_hash VARCHAR(255) NOT NULL,
          is_admin TINYINT(1) NOT NULL DEFAULT 0,
          created_at VARCHAR(32) NOT NULL,
          UNIQUE KEY users_email (email)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
      ],
    },
  },
];

const INSERT_USER =
  "INSERT INTO users (id, email, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?, ?)";
const SELECT_USER_BY_EMAIL =
  "SELECT id, email, password_hash, is_admin, created_at FROM users WHERE email = ?";

export interface User {
  id: string;
  /** Trimmed and lowercased. */
  email: string;
  passwordHash: string;
  admin: boolean;
  /** ISO 8601 time in UTC. */
  createdAt: string;
}

interface UserRow {
  id: string;
  email: string;
  password_hash: string;
  is_admin: number;
  created_at: string;
}

export interface UserStore {
  /** Inserts a user; rejects with `UniqueViolationError` when the email is taken. */
  create(user: Omit<User, "id" | "createdAt">): Promise<User>;
  findByEmail(email: string): Promise<User | null>;
}

export function createUserStore(db: SqlDatabase): UserStore {
  return {
    async create(input) {
      const user: User = { ...input, id: crypto.randomUUID(), createdAt: new Date().toISOString() };
      await db.execute(INSERT_USER, [
        user.id,
        user.email,
        user.passwordHash,
        user.admin ? 1 : 0,
        user.createdAt,
      ]);
      return user;
    },
    async findByEmail(email) {
      const [row] = await db.query<UserRow>(SELECT_USER_BY_EMAIL, [email]);
      if (row === undefined) return null;
      return {
        id: row.id,
        email: row.email,
        passwordHash: row.password_hash,
        admin: Number(row.is_admin) === 1,
        createdAt: row.created_at,
      };
    },
  };
}
