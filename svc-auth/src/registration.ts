/** Creating accounts, shared by `POST /signup` and the `user:add` command. */
import { AppError } from "@mp3converter/lib/errors";
import { UniqueViolationError } from "@mp3converter/lib/ports/sql";
import { emailProblem, normalizeEmail } from "./email.ts";
import { hashPassword, passwordProblem } from "./passwords.ts";
import type { User, UserStore } from "./users.ts";

export interface NewUser {
  email: string;
  password: string;
  admin: boolean;
}

/**
 * Checks the email and password policy, hashes the password and stores the user. Throws
 * `AppError` `invalid_argument` naming the field, or `conflict` when the email is taken.
 */
export async function registerUser(users: UserStore, input: NewUser): Promise<User> {
  const email = normalizeEmail(input.email);
  const emailIssue = emailProblem(email);
  if (emailIssue !== null) {
    throw new AppError("invalid_argument", emailIssue, { details: { field: "email" } });
  }
  const passwordIssue = passwordProblem(input.password);
  if (passwordIssue !== null) {
    throw new AppError("invalid_argument", passwordIssue, { details: { field: "password" } });
  }

  const passwordHash = await hashPassword(input.password);
  try {
    return await users.create({ email, passwordHash, admin: input.admin });
  } catch (error) {
    if (!(error instanceof UniqueViolationError)) throw error;
    throw new AppError(
      "conflict",
      "An account with this email exists already. Log in with it, or choose another email.",
      {
        cause: error,
      },
    );
  }
}
