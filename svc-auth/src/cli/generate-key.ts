/**
 * Prints a JWK set with a new private Ed25519 signing key, the value of `JWT_SIGNING_KEYS`:
 * `bun run jwt:generate-key [--kid KID] [--rotate]`.
 */
import { parseArgs } from "node:util";
import { generateSigningKey, parseSigningKeySet } from "@mp3converter/lib/tokens";

const USAGE = `Usage: bun run jwt:generate-key [--kid KID] [--rotate]

Prints a JWK set with one new private Ed25519 key for JWT_SIGNING_KEYS. Keep the
output secret: it contains the private key.

Options:
  --kid KID   key id of the new key (default: its RFC 7638 thumbprint)
  --rotate    read the current JWT_SIGNING_KEYS value from stdin and print it with
              the new key first, so the new key signs and the old keys still verify
  --help      print this help`;

function fail(message: string): never {
  console.error(`jwt:generate-key: ${message}`);
  process.exit(2);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks).toString("utf8");
}

async function main(): Promise<void> {
  let values: { kid?: string; rotate?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: { kid: { type: "string" }, rotate: { type: "boolean" }, help: { type: "boolean" } },
    }));
  } catch (error) {
    fail(`${(error as Error).message}\n\n${USAGE}`);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }

  let current: object[] = [];
  if (values.rotate) {
    try {
      current = parseSigningKeySet(await readStdin());
    } catch (error) {
      fail(`the key set on stdin is invalid: ${(error as Error).message}`);
    }
  }
  const key = await generateSigningKey(values.kid);
  if (current.some((existing) => (existing as { kid?: string }).kid === key.kid)) {
    fail(`the kid "${key.kid}" is in the current set already; choose another with --kid`);
  }
  console.log(JSON.stringify({ keys: [key, ...current] }));
}

await main();
