/** Runtime helpers: the parent watch and the HTTP server front. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHttpApp } from "./http.ts";
import { createLogger } from "./log.ts";
import { isProcessRunning, type Server, serve } from "./runtime.ts";

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes. */
async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

test("onParentExit runs when the parent is killed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mp3c-runtime-"));
  const pidFile = join(dir, "child.pid");
  const marker = join(dir, "parent-exited");
  const script = join(dir, "child.ts");
  writeFileSync(
    script,
    [
      'import { writeFileSync } from "node:fs";',
      `import { onParentExit } from ${JSON.stringify(join(import.meta.dir, "runtime.ts"))};`,
      `writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));`,
      "onParentExit(() => {",
      `  writeFileSync(${JSON.stringify(marker)}, "");`,
      "  process.exit(0);",
      "}, 50);",
      "setInterval(() => {}, 1_000);",
    ].join("\n"),
  );
  // The shell stays the child's parent, as the `bun run` wrapper does for `bun run dev`.
  const parent = spawn("sh", ["-c", `"${process.execPath}" "${script}" & wait`], {
    stdio: "ignore",
  });
  let childPid: number | undefined;
  try {
    expect(await waitUntil(() => existsSync(pidFile), 10_000)).toBe(true);
    childPid = Number(readFileSync(pidFile, "utf8"));
    expect(isProcessRunning(childPid)).toBe(true);

    parent.kill("SIGKILL");

    expect(await waitUntil(() => existsSync(marker), 5_000)).toBe(true);
    expect(await waitUntil(() => !isProcessRunning(childPid as number), 5_000)).toBe(true);
  } finally {
    if (parent.exitCode === null && parent.signalCode === null) parent.kill("SIGKILL");
    if (childPid !== undefined && isProcessRunning(childPid)) process.kill(childPid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

/** Sends `head` (request line and headers) and `body` over a raw socket; resolves with the reply. */
function rawRequest(port: number, head: string, body = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(`${head}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    });
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      reply += chunk;
    });
    socket.on("end", () => resolve(reply));
    socket.on("error", reject);
    socket.setTimeout(5_000, () => socket.destroy(new Error("no reply within 5 s")));
  });
}

describe("serve with odd Host headers", () => {
  const logger = createLogger({ service: "runtime-test", level: "silent" });
  const app = createHttpApp("runtime-test", logger)
    .get("/healthz", () => ({ status: "ok" }))
    .post("/echo", async ({ request }) => ({ bytes: (await request.arrayBuffer()).byteLength }));
  let server: Server;

  beforeAll(async () => {
    server = await serve(app.fetch, { port: 0, hostname: "127.0.0.1" });
  });

  afterAll(async () => {
    await server.stop({ closeActiveConnections: true });
  });

  test("invalid Host gets 400 and the server stays up", async () => {
    const reply = await rawRequest(
      server.port,
      "GET /healthz HTTP/1.1\r\nHost: a:b:c\r\nX-Request-Id: req-bad-host-1",
    );
    expect(reply).toStartWith("HTTP/1.1 400");
    expect(reply.toLowerCase()).toContain("x-request-id: req-bad-host-1");
    expect(reply).toContain('"request_id":"req-bad-host-1"');
    expect(reply).toContain('"code":"invalid_argument"');
    expect(reply).toContain("The Host header is invalid");

    const after = await fetch(`http://127.0.0.1:${server.port}/healthz`);
    expect(after.status).toBe(200);
  });

  test("two Host headers get 400", async () => {
    const reply = await rawRequest(
      server.port,
      "GET /healthz HTTP/1.1\r\nHost: aaaa\r\nHost: bbbb",
    );
    expect(reply).toStartWith("HTTP/1.1 400");
    expect(reply).toContain("The Host header is invalid");
  });

  test("short Host still reaches its route", async () => {
    const reply = await rawRequest(server.port, "GET /healthz HTTP/1.1\r\nHost: abc");
    expect(reply).toStartWith("HTTP/1.1 200");
    expect(reply).toContain('"status":"ok"');
  });

  test("short Host keeps method and body", async () => {
    const reply = await rawRequest(server.port, "POST /echo HTTP/1.1\r\nHost: a", "12345");
    expect(reply).toStartWith("HTTP/1.1 200");
    expect(reply).toContain('"bytes":5');
  });
});
