/**
 * The four services as separate processes, configured only by environment variables as
 * Kubernetes runs them: auth and gateway on MariaDB, every queue on RabbitMQ, notify on a real
 * SMTP server with STARTTLS, storage on GridFS when MONGODB_URL is set and on a file store
 * otherwise. Runs the end-to-end scenario, restarts RabbitMQ in the middle of a batch of uploads,
 * and checks that no log line contains a secret the run used.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import { generateSigningKey } from "../src/tokens.ts";
import { GatewayClient } from "./client.ts";
import { makeTestMedia, probeAudio, TEST_MEDIA_SECONDS, type TestMedia } from "./media.ts";
import { findFreePort } from "./ports.ts";
import { startTestSmtpServer, type TestSmtpServer } from "./smtp-test-server.ts";

const run = promisify(execFile);
const REPO_ROOT = resolve(import.meta.dir, "../..");
const MYSQL_ADMIN_URL = process.env.TEST_MYSQL_URL ?? "mysql://root@127.0.0.1:3306";
const AMQP_URL = process.env.TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const READY_TIMEOUT_MS = 60_000;
const JOB_TIMEOUT_MS = 180_000;
const PASSWORD = `pass-${crypto.randomUUID()}`;

interface RunningService {
  name: string;
  process: ChildProcess;
  logPath: string;
  readyUrl: string;
}

const suffix = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
const databases = { auth: `mp3c_e2e_${suffix}_auth`, gateway: `mp3c_e2e_${suffix}_gateway` };
const queues = {
  VIDEO_QUEUE: `e2e-${suffix}-video`,
  MP3_QUEUE: `e2e-${suffix}-mp3`,
  JOB_EVENTS_QUEUE: `e2e-${suffix}-job-events`,
};

let dir: string;
let media: TestMedia;
let smtp: TestSmtpServer;
let services: RunningService[] = [];
let gatewayUrl: string;
let secrets: string[] = [];
let client: GatewayClient;
let email: string;

function spawnService(name: string, env: Record<string, string>, readyUrl: string): RunningService {
  const logPath = join(dir, `${name}.log`);
  const log = createWriteStream(logPath);
  const child = spawn("bun", ["run", `svc-${name}/src/main.ts`], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  return { name, process: child, logPath, readyUrl };
}

async function waitUntilReady(service: RunningService): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (service.process.exitCode !== null) break;
    try {
      const response = await fetch(service.readyUrl);
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const log = await readFile(service.logPath, "utf8").catch(() => "");
  throw new Error(`${service.name} did not become ready; its log:\n${log.slice(-4000)}`);
}

async function stopService(service: RunningService): Promise<void> {
  if (service.process.exitCode !== null) return;
  const exited = new Promise((r) => service.process.once("exit", r));
  service.process.kill("SIGTERM");
  const timer = setTimeout(() => service.process.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Polls the gateway's `/readyz` until it reports the broker down, for up to 15 s, and returns
 * the last status and body.
 */
async function readinessWithBrokerDown(): Promise<{ status: number; body: ReadinessBody }> {
  const deadline = Date.now() + 15_000;
  let last = { status: 0, body: {} as ReadinessBody };
  while (Date.now() < deadline) {
    const response = await fetch(`${gatewayUrl}/readyz`);
    last = { status: response.status, body: (await response.json()) as ReadinessBody };
    if (last.body.details?.broker !== undefined) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  return last;
}

interface ReadinessBody {
  status?: string;
  details?: Record<string, string>;
}

async function waitForRabbitMq(): Promise<void> {
  await run("rabbitmqctl", ["await_startup", "--timeout", "120"]);
}

const mysqlReachable = await mysql
  .createConnection(MYSQL_ADMIN_URL)
  .then(async (c) => {
    await c.end();
    return true;
  })
  .catch(() => false);

describe.skipIf(!mysqlReachable)("services as separate processes (MariaDB, RabbitMQ, SMTP)", () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mp3c-multi-"));
    media = await makeTestMedia(dir);
    smtp = await startTestSmtpServer();
    const caFile = join(dir, "smtp-ca.pem");
    await writeFile(caFile, smtp.certificate);

    const admin = await mysql.createConnection(MYSQL_ADMIN_URL);
    for (const name of Object.values(databases)) await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();

    const signingKey = await generateSigningKey();
    const signingKeys = JSON.stringify({ keys: [signingKey] });
    secrets = [PASSWORD, smtp.password, String((signingKey as { d?: string }).d)];

    const storageUrl = process.env.MONGODB_URL ?? `file:${join(dir, "files")}`;
    const [authPort, gatewayPort, converterPort, notifyPort] = await Promise.all([
      findFreePort(),
      findFreePort(),
      findFreePort(),
      findFreePort(),
    ]);
    gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    const common = { LOG_LEVEL: "info", ...queues };

    const auth = spawnService(
      "auth",
      {
        ...common,
        HOST: "127.0.0.1",
        PORT: String(authPort),
        DATABASE_URL: `${MYSQL_ADMIN_URL}/${databases.auth}`,
        JWT_SIGNING_KEYS: signingKeys,
        TRUST_PROXY: "true",
      },
      `http://127.0.0.1:${authPort}/readyz`,
    );
    await waitUntilReady(auth);
    const gateway = spawnService(
      "gateway",
      {
        ...common,
        HOST: "127.0.0.1",
        PORT: String(gatewayPort),
        DATABASE_URL: `${MYSQL_ADMIN_URL}/${databases.gateway}`,
        STORAGE_URL: storageUrl,
        BROKER_URL: AMQP_URL,
        AUTH_URL: `http://127.0.0.1:${authPort}`,
        PUBLIC_URL: gatewayUrl,
        OUTBOX_INTERVAL_SECONDS: "1",
      },
      `${gatewayUrl}/readyz`,
    );
    const converter = spawnService(
      "converter",
      {
        ...common,
        BROKER_URL: AMQP_URL,
        STORAGE_URL: storageUrl,
        HEALTH_PORT: String(converterPort),
        WORK_DIR: join(dir, "work"),
      },
      `http://127.0.0.1:${converterPort}/readyz`,
    );
    const notify = spawnService(
      "notify",
      {
        ...common,
        BROKER_URL: AMQP_URL,
        MAIL_URL: `smtp://${smtp.username}:${encodeURIComponent(smtp.password)}@127.0.0.1:${smtp.port}`,
        MAIL_TLS_CA_FILE: caFile,
        PUBLIC_URL: gatewayUrl,
        HEALTH_PORT: String(notifyPort),
      },
      `http://127.0.0.1:${notifyPort}/readyz`,
    );
    services = [auth, gateway, converter, notify];
    await Promise.all([gateway, converter, notify].map(waitUntilReady));

    email = `multi-${suffix}@example.com`;
    client = new GatewayClient(gatewayUrl);
    await client.signup(email, PASSWORD);
    const token = await client.login(email, PASSWORD);
    secrets.push(token);
  }, 180_000);

  afterAll(async () => {
    await Promise.all(services.map(stopService));
    await smtp?.close();
    const admin = await mysql.createConnection(MYSQL_ADMIN_URL).catch(() => null);
    for (const name of Object.values(databases))
      await admin?.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin?.end();
    await deleteQueues();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  test("converts an upload and emails the user over SMTP", async () => {
    const accepted = await client.upload(media.mp4MoovEnd);
    const job = await client.waitForJob(accepted.job_id, JOB_TIMEOUT_MS);
    expect(job.state).toBe("notified");

    const { bytes } = await client.download(job.mp3_fid ?? "");
    await writeFile(join(dir, "multi.mp3"), bytes);
    const audio = await probeAudio(join(dir, "multi.mp3"));
    expect(audio.codec).toBe("mp3");
    expect(Math.abs(audio.durationS - TEST_MEDIA_SECONDS)).toBeLessThanOrEqual(0.5);

    const mail = smtp.received.find((m) => m.text?.includes(job.job_id));
    expect(mail).toBeDefined();
    expect(mail?.text).toContain(`/download?fid=${job.mp3_fid}`);
  });

  test("fails a video without audio and emails the reason", async () => {
    const accepted = await client.upload(media.noAudio);
    const job = await client.waitForJob(accepted.job_id, JOB_TIMEOUT_MS);
    expect(job.state).toBe("failed");
    expect(job.failure?.code).toBe("no_audio");
    const mail = smtp.received.find((m) => m.text?.includes(job.job_id));
    expect(mail).toBeDefined();
  });

  test("finishes every accepted upload across a RabbitMQ restart", async () => {
    const before = await Promise.all([1, 2, 3].map(() => client.upload(media.mp4MoovFront)));
    await run("rabbitmqctl", ["stop_app"]);
    let during: Awaited<ReturnType<GatewayClient["upload"]>>[] = [];
    try {
      // Uploads while the broker is down are accepted and wait in the gateway's outbox.
      during = await Promise.all([1, 2].map(() => client.upload(media.audioOnly)));
      // The gateway names the broker but stays in its Service, because the outbox covers it.
      const readiness = await readinessWithBrokerDown();
      expect(readiness.status).toBe(200);
      expect(readiness.body.status).toBe("degraded");
      expect(Object.keys(readiness.body.details ?? {})).toEqual(["broker"]);
    } finally {
      await run("rabbitmqctl", ["start_app"]);
      await waitForRabbitMq();
    }
    const jobs = await Promise.all(
      [...before, ...during].map((accepted) => client.waitForJob(accepted.job_id, JOB_TIMEOUT_MS)),
    );
    expect(jobs.map((job) => job.state)).toEqual(Array(jobs.length).fill("notified"));
    for (const job of jobs) {
      const mails = smtp.received.filter((m) => m.text?.includes(job.job_id));
      expect(mails.length).toBeGreaterThanOrEqual(1);
    }
  }, 300_000);

  test("writes no secret and no full email address to any log", async () => {
    const problems: string[] = [];
    for (const service of services) {
      const log = await readFile(service.logPath, "utf8");
      expect(log.length).toBeGreaterThan(0);
      for (const secret of secrets) {
        if (log.includes(secret)) problems.push(`${service.name} log contains a secret`);
      }
      if (log.includes(email)) problems.push(`${service.name} log contains the full email`);
    }
    expect(problems).toEqual([]);
  });
});

async function deleteQueues(): Promise<void> {
  for (const queue of Object.values(queues)) {
    for (const name of [queue, `${queue}.dlq`]) {
      await run("rabbitmqctl", ["delete_queue", name]).catch(() => undefined);
    }
  }
}
