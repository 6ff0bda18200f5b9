/**
 * A small HTTP client for the public API, used by the end-to-end tests, the Deno smoke test and
 * the benchmark. It speaks to the gateway exactly as curl does in the README.
 */
import { openAsBlob } from "node:fs";
import { basename } from "node:path";

export interface JobView {
  job_id: string;
  state: string;
  filename?: string;
  mp3_fid?: string;
  download_url?: string;
  duration_s?: number;
  warnings?: string[];
  failure?: { code: string; message: string };
  created_at?: string;
  updated_at?: string;
}

const TERMINAL_STATES = new Set(["notified", "failed"]);

export class ApiError extends Error {
  readonly status: number;
  readonly body: string;

  constructor(what: string, status: number, body: string) {
    super(`${what} failed with HTTP ${status}: ${body.slice(0, 500)}`);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

/** Client for one user of the gateway at `baseUrl`. */
export class GatewayClient {
  readonly baseUrl: string;
  token: string | undefined;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
  }

  async #expect(what: string, response: Response, status: number): Promise<string> {
    const text = await response.text();
    if (response.status !== status) throw new ApiError(what, response.status, text);
    return text;
  }

  #auth(): Record<string, string> {
    if (!this.token) throw new Error("log in first");
    return { authorization: `Bearer ${this.token}` };
  }

  /** Creates the account; `POST /signup` with JSON. */
  async signup(email: string, password: string): Promise<void> {
    const response = await fetch(`${this.baseUrl}/signup`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
    await this.#expect("signup", response, 201);
  }

  /** Logs in with HTTP Basic and keeps the token for later calls. */
  async login(email: string, password: string): Promise<string> {
    const basic = Buffer.from(`${email}:${password}`).toString("base64");
    const response = await fetch(`${this.baseUrl}/login`, {
      method: "POST",
      headers: { authorization: `Basic ${basic}` },
    });
    const body = JSON.parse(await this.#expect("login", response, 200)) as { token: string };
    this.token = body.token;
    return body.token;
  }

  /** Uploads a local file as multipart field `file`, streamed from disk. */
  async upload(path: string, filename = basename(path)): Promise<JobView> {
    const form = new FormData();
    form.set("file", await openAsBlob(path), filename);
    const response = await fetch(`${this.baseUrl}/upload`, {
      method: "POST",
      headers: this.#auth(),
      body: form,
    });
    return JSON.parse(await this.#expect("upload", response, 202)) as JobView;
  }

  async job(jobId: string): Promise<JobView> {
    const response = await fetch(`${this.baseUrl}/jobs/${encodeURIComponent(jobId)}`, {
      headers: this.#auth(),
    });
    return JSON.parse(await this.#expect("job status", response, 200)) as JobView;
  }

  /** Deletes a finished job with its video and MP3 (`DELETE /jobs/:id`, which returns 204). */
  async deleteJob(jobId: string): Promise<void> {
    const response = await fetch(`${this.baseUrl}/jobs/${encodeURIComponent(jobId)}`, {
      method: "DELETE",
      headers: this.#auth(),
    });
    await this.#expect("job deletion", response, 204);
  }

  /** Polls the job until it is `notified` or `failed`, or throws after `timeoutMs`. */
  async waitForJob(jobId: string, timeoutMs = 120_000): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.job(jobId);
      if (TERMINAL_STATES.has(job.state)) return job;
      if (Date.now() > deadline) {
        throw new Error(`job ${jobId} still ${job.state} after ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Downloads an MP3; returns the bytes and the response headers. */
  async download(fid: string): Promise<{ bytes: Uint8Array; headers: Headers }> {
    const response = await fetch(`${this.baseUrl}/download?fid=${encodeURIComponent(fid)}`, {
      headers: this.#auth(),
    });
    if (response.status !== 200) {
      throw new ApiError("download", response.status, await response.text());
    }
    return { bytes: new Uint8Array(await response.arrayBuffer()), headers: response.headers };
  }
}
