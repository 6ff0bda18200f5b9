/**
 * `GET /download?fid=<mp3_fid>`: streams an MP3 to the owner of the job that produced it, with
 * byte ranges so players can seek and downloads can resume.
 */
import { AppError } from "@mp3converter/lib/errors";
import {
  contentRangeHeader,
  parseRangeHeader,
  unsatisfiedContentRangeHeader,
} from "@mp3converter/lib/http-range";
import { type BlobStore, isValidBlobId } from "@mp3converter/lib/ports/storage";
import { attachmentDisposition } from "./content-disposition.ts";
import { toMp3Filename } from "./filename.ts";
import type { JobStore } from "./jobs-store.ts";

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

/** Returns the MP3 `fid` of `ownerId` as a full (200) or partial (206) response. */
export async function downloadMp3(
  request: Request,
  fid: string,
  ownerId: string,
  deps: DownloadDeps,
): Promise<Response> {
  const job = await deps.jobs.findByMp3(fid, ownerId);
  const info = job ? await deps.store.stat("mp3s", fid) : null;
  if (!job || !info) throw mp3NotFound();

  const headers = new Headers({
    "content-type": "audio/mpeg",
    "accept-ranges": "bytes",
    "content-disposition": attachmentDisposition(toMp3Filename(job.filename)),
    "cache-control": "private, no-store",
  });
  const decision = parseRangeHeader(request.headers.get("range"), info.size);
  if (decision.kind === "unsatisfiable") {
    throw new AppError(
      "range_not_satisfiable",
      `The requested range is outside the MP3 of ${info.size} bytes.`,
      { headers: { "content-range": unsatisfiedContentRangeHeader(info.size) } },
    );
  }
  const range = decision.kind === "partial" ? decision : undefined;
  const opened = await deps.store.open("mp3s", fid, range);
  if (!opened) throw mp3NotFound();

  // NOTE: Bun 1.4 drops this header on a streamed body and sends it chunked; Deno keeps it.
  headers.set("content-length", String(range ? range.end - range.start + 1 : info.size));
  if (!range) return new Response(opened.stream, { status: 200, headers });
  headers.set("content-range", contentRangeHeader(range, info.size));
  return new Response(opened.stream, { status: 206, headers });
}
