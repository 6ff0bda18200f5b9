/**
 * End to end on the all-in-one system: a user signs up, logs in, uploads, waits for the job,
 * downloads the MP3 and finds the email in the outbox; bad inputs end `failed` with a reason.
 * Last, the log lines of the whole run are searched for the secrets it used.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { simpleParser } from "mailparser";
import { type AllInOne, startAllInOne } from "./all-in-one.ts";
import { GatewayClient, type JobView } from "./client.ts";
import { makeTestMedia, probeAudio, TEST_MEDIA_SECONDS, type TestMedia } from "./media.ts";

const PASSWORD = "correct horse battery staple";

let dir: string;
let system: AllInOne;
let media: TestMedia;
let alice: GatewayClient;
/** Log lines of every service, captured instead of printed. */
const logLines: string[] = [];
/** Values that no log line may contain, by name. The run adds each one as it creates it. */
const secrets: Record<string, string> = { password: PASSWORD };

/** Keeps every line for the secret scan and prints warnings and errors as before. */
const logDestination = {
  write(line: string) {
    logLines.push(line);
    if (/"level":"(warn|error|fatal)"/.test(line)) process.stdout.write(line);
  },
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mp3c-e2e-"));
  media = await makeTestMedia(dir);
  system = await startAllInOne({
    dataDir: join(dir, "data"),
    gatewayPort: 0,
    authPort: 0,
    host: "127.0.0.1",
    logLevel: "debug",
    logDestination,
    // The media corpus test uploads every corpus file at once as one user.
    extraEnv: { MAX_ACTIVE_JOBS_PER_USER: "0" },
  });
  alice = new GatewayClient(system.gatewayUrl);
  await alice.signup("alice@example.com", PASSWORD);
  secrets.aliceToken = await alice.login("alice@example.com", PASSWORD);
  secrets.basicCredentials = btoa(`alice@example.com:${PASSWORD}`);
  const keySet = await readFile(join(system.dataDir, "jwt-signing-keys.json"), "utf8");
  secrets.signingKey = (JSON.parse(keySet) as { keys: Array<{ d: string }> }).keys[0]?.d ?? "";
});

afterAll(async () => {
  await system?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function emailsFor(jobId: string) {
  const names = await readdir(system.outboxDir);
  const parsed = await Promise.all(
    names
      .filter((name) => name.endsWith(".eml"))
      .map(async (name) => simpleParser(await readFile(join(system.outboxDir, name)))),
  );
  return parsed.filter((mail) => mail.text?.includes(jobId));
}

/** Reads the video blob id of a job from the gateway's database. The API does not return it. */
function storedVideoFid(jobId: string): string {
  const db = new Database(join(system.dataDir, "gateway.db"), { readonly: true });
  try {
    const row = db.query("SELECT video_fid FROM jobs WHERE id = ?").get(jobId) as {
      video_fid: string;
    } | null;
    if (!row) throw new Error(`job ${jobId} is not in gateway.db`);
    return row.video_fid;
  } finally {
    db.close();
  }
}

async function convert(path: string): Promise<JobView> {
  const accepted = await alice.upload(path);
  expect(accepted.state).toBe("queued");
  return alice.waitForJob(accepted.job_id);
}

describe("all-in-one pipeline", () => {
  test("converts an MP4 with the index at the end", async () => {
    const job = await convert(media.mp4MoovEnd);
    expect(job.state).toBe("notified");
    expect(job.mp3_fid).toBeString();

    const { bytes, headers } = await alice.download(job.mp3_fid ?? "");
    expect(headers.get("content-type")).toBe("audio/mpeg");
    expect(headers.get("content-disposition")).toContain('filename="moov-end.mp3"');
    const output = join(dir, "moov-end.mp3");
    await writeFile(output, bytes);
    const audio = await probeAudio(output);
    expect(audio.codec).toBe("mp3");
    expect(Math.abs(audio.durationS - TEST_MEDIA_SECONDS)).toBeLessThanOrEqual(0.5);

    const mails = await emailsFor(job.job_id);
    expect(mails).toHaveLength(1);
    expect(mails[0]?.to).toBeDefined();
    expect(mails[0]?.text).toContain(job.mp3_fid ?? "");
    expect(mails[0]?.text).toContain(`/download?fid=${job.mp3_fid}`);

    // The owner deletes the finished job, and its video and MP3 leave the data directory.
    const videoFid = storedVideoFid(job.job_id);
    const filesOf = async (bucket: string, id: string) =>
      (await readdir(join(system.dataDir, "files", bucket))).filter((name) => name.startsWith(id));
    expect(await filesOf("videos", videoFid)).not.toEqual([]);
    expect(await filesOf("mp3s", job.mp3_fid ?? "")).not.toEqual([]);
    await alice.deleteJob(job.job_id);
    await expect(alice.job(job.job_id)).rejects.toMatchObject({ status: 404 });
    await expect(alice.download(job.mp3_fid ?? "")).rejects.toMatchObject({ status: 404 });
    expect(await filesOf("videos", videoFid)).toEqual([]);
    expect(await filesOf("mp3s", job.mp3_fid ?? "")).toEqual([]);
  });

  test.each([
    ["MP4 with the index at the front", () => media.mp4MoovFront],
    ["MKV", () => media.mkv],
    ["WebM with Opus", () => media.webm],
    ["audio-only M4A", () => media.audioOnly],
  ])("converts %s", async (_name, file) => {
    const job = await convert(file());
    expect(job.state).toBe("notified");
    const { bytes } = await alice.download(job.mp3_fid ?? "");
    const output = join(dir, `${job.job_id}.mp3`);
    await writeFile(output, bytes);
    const audio = await probeAudio(output);
    expect(audio.codec).toBe("mp3");
    expect(Math.abs(audio.durationS - TEST_MEDIA_SECONDS)).toBeLessThanOrEqual(0.5);
  });

  test.each([
    ["a video without audio", () => media.noAudio, "no_audio"],
    ["an empty file", () => media.empty, "empty_file"],
    ["a text file", () => media.text, "unsupported_format"],
  ])("fails %s with a reason", async (_name, file, code) => {
    const job = await convert(file());
    expect(job.state).toBe("failed");
    expect(job.failure?.code).toBe(code);
    expect(job.failure?.message.length).toBeGreaterThan(10);
    expect(job.mp3_fid).toBeUndefined();
    const mails = await emailsFor(job.job_id);
    expect(mails).toHaveLength(1);
    // The email's text part wraps long lines at spaces.
    expect(mails[0]?.text?.replaceAll("\n", " ")).toContain(job.failure?.message ?? "");
  });

  test("fails a truncated MP4 with a reason", async () => {
    const job = await convert(media.truncatedMp4);
    expect(job.state).toBe("failed");
    expect(job.failure?.code).toBeString();
    expect(job.failure?.message).toBeString();
  });

  test("hides a job and its MP3 from another user", async () => {
    const job = await convert(media.mp4MoovFront);
    const mallory = new GatewayClient(system.gatewayUrl);
    await mallory.signup("mallory@example.com", PASSWORD);
    secrets.malloryToken = await mallory.login("mallory@example.com", PASSWORD);
    await expect(mallory.job(job.job_id)).rejects.toMatchObject({ status: 404 });
    await expect(mallory.download(job.mp3_fid ?? "")).rejects.toMatchObject({ status: 404 });
  });
});

describe("logs of the whole run", () => {
  test("contain no secret and no full email address", async () => {
    // A failed login and a forged token take the paths where a careless log line would leak.
    secrets.wrongPassword = `wrong-${crypto.randomUUID()}`;
    const basic = btoa(`alice@example.com:${secrets.wrongPassword}`);
    const failed = await fetch(`${system.gatewayUrl}/login`, {
      method: "POST",
      headers: { authorization: `Basic ${basic}` },
    });
    expect(failed.status).toBe(401);
    const forged = await fetch(`${system.gatewayUrl}/jobs`, {
      headers: { authorization: `Bearer ${secrets.aliceToken}x` },
    });
    expect(forged.status).toBe(401);

    const log = logLines.join("");
    // The scan proves something only if the lines where a leak would show were written.
    expect(log).toContain('"msg":"login failed"');
    expect(log).toContain('"msg":"upload accepted"');
    expect(log).toContain("a***@example.com");
    const leaked = Object.entries(secrets)
      .filter(([, value]) => value !== "" && log.includes(value))
      .map(([name]) => name);
    expect(leaked).toEqual([]);
    expect(log).not.toContain("alice@example.com");
    expect(log).not.toContain("mallory@example.com");
  });
});

interface CorpusExpectation {
  expect: "convert" | "reject" | "reject_or_convert";
  duration_s?: number;
  tolerance_s?: number;
  channels?: number;
  channels_max?: number;
  reason?: string;
}

const corpusDir = process.env.MEDIA_CORPUS_DIR;

/** Bound on the whole corpus run: about 30 files, each converted and probed on two cores. */
const CORPUS_TIMEOUT_MS = 600_000;

describe.skipIf(!corpusDir)("media corpus through the running system (MEDIA_CORPUS_DIR)", () => {
  test(
    "every corpus file converts or fails as its expectation says",
    async () => {
      const dirPath = corpusDir ?? "";
      const { files } = JSON.parse(await readFile(join(dirPath, "expectations.json"), "utf8")) as {
        files: Record<string, CorpusExpectation>;
      };
      const accepted = await Promise.all(
        Object.keys(files).map(async (name) => ({
          name,
          job: await alice.upload(join(dirPath, name), name),
        })),
      );
      const problems: string[] = [];
      for (const { name, job: acceptedJob } of accepted) {
        const expectation = files[name] as CorpusExpectation;
        const job = await alice.waitForJob(acceptedJob.job_id, 300_000);
        problems.push(...(await checkCorpusJob(name, expectation, job)));
      }
      expect(problems).toEqual([]);
    },
    CORPUS_TIMEOUT_MS,
  );
});

async function checkCorpusJob(
  name: string,
  expectation: CorpusExpectation,
  job: JobView,
): Promise<string[]> {
  if (job.state === "failed") {
    if (expectation.expect === "convert") {
      return [`${name}: expected an MP3, job failed: ${job.failure?.code} ${job.failure?.message}`];
    }
    if (job.failure?.code !== expectation.reason) {
      return [`${name}: expected failure ${expectation.reason}, got ${job.failure?.code}`];
    }
    return [];
  }
  if (expectation.expect === "reject") return [`${name}: expected a failure, job ${job.state}`];
  const { bytes } = await alice.download(job.mp3_fid ?? "");
  const output = join(dir, `corpus-${job.job_id}.mp3`);
  await writeFile(output, bytes);
  const audio = await probeAudio(output);
  const problems: string[] = [];
  if (audio.codec !== "mp3") problems.push(`${name}: codec ${audio.codec}`);
  const want = expectation.duration_s ?? 0;
  const tolerance = expectation.tolerance_s ?? 0.5;
  if (!(Math.abs(audio.durationS - want) <= tolerance)) {
    problems.push(`${name}: duration ${audio.durationS} s, expected ${want} ± ${tolerance} s`);
  }
  if (expectation.channels !== undefined && audio.channels !== expectation.channels) {
    problems.push(`${name}: ${audio.channels} channels, expected ${expectation.channels}`);
  }
  if (expectation.channels_max !== undefined && audio.channels > expectation.channels_max) {
    problems.push(
      `${name}: ${audio.channels} channels, expected at most ${expectation.channels_max}`,
    );
  }
  return problems;
}
