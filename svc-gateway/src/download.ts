/**
 * `GET /download?fid=<mp3_fid>`: streams an MP3 to the owner of the job that produced it, with
 * byte ranges so players can seek and downloads can resume, and with `ETag` and `Last-Modified`
 * so a client can resume with `If-Range` and revalidate with `If-None-Match`.
 */
import { createHash } from "node:crypto";
import { AppError } from "@mp3converter/lib/errors";
import {
  httpDate,
  ifRangeMatches,
  isNotModified,
  isPreconditionFailed,
  type Validators,
} from "@mp3converter/lib/http-conditional";
import {
  contentRangeHeader,
  parseRangeHeader,
  unsatisfiedContentRangeHeader,
} from "@mp3converter/lib/http-range";
import {
  type BlobInfo,
  type BlobStore,
  type ByteRange,
  isValidBlobId,
  type OpenedBlob,
} from "@mp3converter/lib/ports/storage";
import { attachmentDisposition } from "./content-disposition.ts";
import { toMp3Filename } from "./filename.ts";
import type { JobStore } from "./jobs-store.ts";

/** Length of the hash in an `ETag`: 27 base64url characters carry 162 bits. */
const ETAG_CHARS = 27;

export interface DownloadDeps {
  jobs: JobStore;
  store: BlobStore;
}

/** One 404 for an unknown id, another user's MP3 and an unfinished job, so none can be told apart. */
function mp3NotFound(): AppError {
  return new AppError(
    "not_found",
    "No MP3 with this fid belongs to you. Use the mp3_fid of a converted job from GET /jobs.",
  );
}

/** Reads and checks the `fid` query parameter. */
export function parseFid(url: URL): string {
  const fids = url.searchParams.getAll("fid");
  if (fids.length !== 1 || fids[0] === "") {
    throw new AppError(
      "invalid_argument",
      "The query parameter fid is missing or repeated. Send one, for example /download?fid=<mp3_fid>.",
    );
  }
  const fid = fids[0] as string;
  if (!isValidBlobId(fid)) throw mp3NotFound();
  return fid;
}

/** Returns the MP3 `fid` of `ownerId`: whole (200), a range (206) or unchanged (304). */
export async function downloadMp3(
  request: Request,
  fid: string,
  ownerId: string,
  deps: DownloadDeps,
): Promise<Response> {
  const job = await deps.jobs.findByMp3(fid, ownerId);
  const info = job ? await deps.store.stat("mp3s", fid) : null;
  if (!job || !info) throw mp3NotFound();

  const validators = blobValidators(info);
  const headers = new Headers({
    etag: validators.etag,
    "last-modified": httpDate(validators.lastModified),
    "cache-control": "private, no-store",
  });
  if (isPreconditionFailed(request.headers, validators)) {
    throw new AppError(
      "precondition_failed",
      "The MP3 does not match the If-Match or If-Unmodified-Since header. Download it without " +
        "those headers to get the current version.",
      { headers: Object.fromEntries(headers) },
    );
  }
  if (isNotModified(request.headers, validators)) {
    return new Response(null, { status: 304, headers });
  }

  headers.set("content-type", "audio/mpeg");
  headers.set("accept-ranges", "bytes");
  headers.set("content-disposition", attachmentDisposition(toMp3Filename(job.filename)));
  const range = requestedRange(request, info, validators);
  const opened = await deps.store.open("mp3s", fid, range);
  if (!opened) throw mp3NotFound();

  headers.set("content-length", String(range ? range.end - range.start + 1 : info.size));
  if (!range) return new Response(responseBody(opened, request, 200), { status: 200, headers });
  headers.set("content-range", contentRangeHeader(range, info.size));
  return new Response(responseBody(opened, request, 206), { status: 206, headers });
}

/**
 * Returns the validators of a stored blob. A blob is written once under its id and never
 * changed, so its id, size and creation time name one sequence of bytes, which makes a tag
 * derived from them strong. A blob deleted and stored again under the same id gets a new tag,
 * because its creation time differs.
 */
export function blobValidators(info: BlobInfo): Validators {
  const identity = `${info.bucket}/${info.id}/${info.size}/${info.createdAt.getTime()}`;
  const digest = createHash("sha256").update(identity).digest("base64url").slice(0, ETAG_CHARS);
  return { etag: `"${digest}"`, lastModified: info.createdAt };
}

/**
 * Returns the byte range to send, or undefined for the whole MP3. `Range` is ignored when
 * `If-Range` names another version, and a range outside the MP3 raises 416.
 */
function requestedRange(
  request: Request,
  info: BlobInfo,
  validators: Validators,
): ByteRange | undefined {
  if (!ifRangeMatches(request.headers, validators)) return undefined;
  const decision = parseRangeHeader(request.headers.get("range"), info.size);
  if (decision.kind === "unsatisfiable") {
    throw new AppError(
      "range_not_satisfiable",
      `The requested range is outside the MP3 of ${info.size} bytes.`,
      { headers: { "content-range": unsatisfiedContentRangeHeader(info.size) } },
    );
  }
  return decision.kind === "partial" ? { start: decision.start, end: decision.end } : undefined;
}

/**
 * Picks the body: the store's `Blob` when it offers one, because Bun 1.4 keeps `Content-Length`
 * on a `Blob` body. Bun 1.4 also serves the request's `Range` itself when a 200 has a whole-file
 * `Blob` body, checking `If-Range` against the response's `ETag` and `Last-Modified`. Its choice
 * matched this handler's in every case tried, but a 200 to a request with `Range` is sent from
 * the stream, so that the status chosen here is the one sent.
 */
function responseBody(
  opened: OpenedBlob,
  request: Request,
  status: 200 | 206,
): Blob | ReadableStream<Uint8Array> {
  if (opened.blob && (status === 206 || !request.headers.has("range"))) return opened.blob;
  // NOTE: Bun 1.4 sends a stream like this one chunked and drops the Content-Length set above;
  // Deno keeps it. Every download from the GridFS store takes this path, because GridFS offers
  // no Blob.
  return opened.stream;
}
