/** Reads a password for a command-line tool: from piped stdin, or typed twice without echo. */

/** Exit code of a program stopped by Ctrl-C (128 + SIGINT). */
export const INTERRUPTED_EXIT_CODE = 130;

/** Raised when the two typed passwords differ or the input ends before a password. */
export class PasswordInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PasswordInputError";
  }
}

/** Returns the first line of piped stdin, without its line ending. */
async function readFirstLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Uint8Array));
  let text: string;
  try {
    // Strict for the same reason as the sign-up body: invalid bytes must not become U+FFFD.
    text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new PasswordInputError("the password on stdin is not valid UTF-8");
  }
  const line = text.split(/\r?\n/, 1)[0] ?? "";
  if (line === "")
    throw new PasswordInputError('no password on stdin; pipe it in, as in: echo "$PW" |');
  return line;
}

/** Prompts on stderr and reads one line in raw mode, so the typed characters are not shown. */
function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    let typed = "";
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding("utf8");

    const finish = (outcome: () => void) => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      outcome();
    };
    const onData = (data: string) => {
      for (const char of data) {
        if (char === "\r" || char === "\n") return finish(() => resolve(typed));
        if (char === "\u0003") return finish(() => process.exit(INTERRUPTED_EXIT_CODE));
        if (char === "\u0004" && typed === "") {
          return finish(() => reject(new PasswordInputError("input ended before a password")));
        }
        if (char === "\u007f" || char === "\b") typed = [...typed].slice(0, -1).join("");
        else if (char >= " ") typed += char;
      }
    };
    stdin.on("data", onData);
  });
}

/**
 * Reads the new password: the first line of stdin when stdin is not a terminal, else typed twice
 * at hidden prompts.
 */
export async function readNewPassword(): Promise<string> {
  if (!process.stdin.isTTY) return readFirstLine();
  const first = await promptHidden("Password: ");
  const second = await promptHidden("Repeat the password: ");
  if (first !== second)
    throw new PasswordInputError("the two passwords differ; run the command again");
  return first;
}
