/**
 * Smoke test of a running system: signs up a fresh user, uploads a generated clip, waits for
 * the job, downloads the MP3, checks it with ffprobe and looks for the email in the outbox.
 * Usage: bun run lib/system/smoke.ts GATEWAY_URL OUTBOX_DIR. Exits 1 on any failure.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GatewayClient } from "./client.ts";
import { makeTestMedia, probeAudio, TEST_MEDIA_SECONDS } from "./media.ts";

async function runSmoke(gatewayUrl: string, outboxDir: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mp3c-smoke-"));
  try {
    const media = await makeTestMedia(dir);
    const client = new GatewayClient(gatewayUrl);
    const email = `smoke-${crypto.randomUUID()}@example.com`;
    await client.signup(email, "smoke test passphrase");
    await client.login(email, "smoke test passphrase");
    const accepted = await client.upload(media.mp4MoovEnd);
    const job = await client.waitForJob(accepted.job_id);
    if (job.state !== "notified" || !job.mp3_fid) {
      throw new Error(`job ended ${job.state}: ${JSON.stringify(job.failure)}`);
    }
    const { bytes } = await client.download(job.mp3_fid);
    await writeFile(join(dir, "out.mp3"), bytes);
    const audio = await probeAudio(join(dir, "out.mp3"));
    if (audio.codec !== "mp3" || Math.abs(audio.durationS - TEST_MEDIA_SECONDS) > 0.5) {
      throw new Error(`unexpected MP3: ${JSON.stringify(audio)}`);
    }
    const names = (await readdir(outboxDir)).filter((name) => name.endsWith(".eml"));
    const texts = await Promise.all(names.map((name) => readFile(join(outboxDir, name), "utf8")));
    if (!texts.some((text) => text.includes(job.job_id))) {
      throw new Error(`no email for job ${job.job_id} in ${outboxDir}`);
    }
    process.stdout.write(`smoke test passed: job ${job.job_id}, ${audio.durationS} s of MP3\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const [gatewayUrl, outboxDir] = process.argv.slice(2);
if (!gatewayUrl || !outboxDir) {
  process.stderr.write("usage: smoke.ts GATEWAY_URL OUTBOX_DIR\n");
  process.exit(2);
}
try {
  await runSmoke(gatewayUrl, outboxDir);
} catch (error) {
  process.stderr.write(`smoke test failed: ${error instanceof Error ? error.message : error}\n`);
  process.exit(1);
}
