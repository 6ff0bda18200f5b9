/**
 * Blob store on MongoDB GridFS, the production implementation of the storage port: one
 * GridFSBucket per storage bucket (`videos`, `mp3s`), blob ids as string `_id`s.
 *
 * NOTE: this adapter is type-checked but has not run against a MongoDB server yet. The contract
 * suite in storage.test.ts runs it when MONGODB_URL names a server.
 *
 * GridFS writes chunks before the file document and has no transaction around them, so a put
 * first claims its id with a document in `<bucket>.uploads`. Only the holder of the claim writes
 * or removes chunks of that id, which keeps a failed or duplicate put from deleting the chunks of
 * another put. A claim expires through a TTL index when its process dies.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  type Collection,
  type Db,
  GridFSBucket,
  type GridFSBucketWriteStream,
  type GridFSFile,
  MongoClient,
  MongoRuntimeError,
  MongoServerError,
  type ObjectId,
} from "mongodb";
import { errorFields, type Logger } from "../log.ts";
import {
  BlobExistsError,
  type BlobInfo,
  type BlobStore,
  BlobTooLargeError,
  BUCKETS,
  type Bucket,
  type ByteRange,
  InvalidBlobIdError,
  isValidBlobId,
  type OpenedBlob,
  type PutOptions,
} from "../ports/storage.ts";

const DEFAULT_DATABASE = "mp3converter";

/** MongoDB's error code for a duplicate key. */
const DUPLICATE_KEY = 11000;

/**
 * Seconds after its last refresh that MongoDB removes a claim. MongoDB's TTL monitor runs every
 * 60 seconds (MongoDB manual, TTL indexes), so the id of a crashed put is free again within 11
 * minutes.
 */
const CLAIM_TTL_SECONDS = 600;
const CLAIM_REFRESH_MS = 60_000;

/** Maximum wait for the chunk inserts in flight when a put fails, before its chunks are removed. */
const DRAIN_TIMEOUT_MS = 10_000;

export interface GridFsBlobStoreOptions {
  logger: Logger;
}

/** Claim on a blob id, held by one put at a time. */
interface UploadClaim {
  _id: string;
  owner: string;
  refreshedAt: Date;
}

interface BucketHandles {
  gridfs: GridFSBucket;
  files: Collection<GridFSFile>;
  chunks: Collection<{ files_id: unknown }>;
  claims: Collection<UploadClaim>;
}

/** Returns the database named in the path of a MongoDB connection string, or the default. */
export function databaseFromUrl(url: string): string {
  // The host list may contain several `host:port` pairs, which WHATWG URL parsing rejects.
  const afterScheme = url.slice(url.indexOf("://") + 3);
  const slash = afterScheme.indexOf("/");
  if (slash < 0) return DEFAULT_DATABASE;
  const name = decodeURIComponent(afterScheme.slice(slash + 1).split("?")[0] ?? "");
  return name === "" ? DEFAULT_DATABASE : name;
}

/** Connects to MongoDB, prepares the claim indexes and returns the GridFS blob store. */
export async function openGridFsBlobStore(
  url: string,
  options: GridFsBlobStoreOptions,
): Promise<BlobStore> {
  const client = new MongoClient(url, { writeConcern: { w: "majority" } });
  await client.connect();
  try {
    const database = databaseFromUrl(url);
    const store = new GridFsBlobStore(client, client.db(database), options.logger);
    await store.init();
    options.logger.info({ database }, "connected to the GridFS blob store");
    return store;
  } catch (error) {
    await client.close();
    throw error;
  }
}

class GridFsBlobStore implements BlobStore {
  readonly #client: MongoClient;
  readonly #db: Db;
  readonly #logger: Logger;
  readonly #buckets: Record<Bucket, BucketHandles>;

  constructor(client: MongoClient, db: Db, logger: Logger) {
    this.#client = client;
    this.#db = db;
    this.#logger = logger;
    const handles = (name: Bucket): BucketHandles => ({
      gridfs: new GridFSBucket(db, { bucketName: name, writeConcern: { w: "majority" } }),
      files: db.collection<GridFSFile>(`${name}.files`),
      chunks: db.collection<{ files_id: unknown }>(`${name}.chunks`),
      claims: db.collection<UploadClaim>(`${name}.uploads`),
    });
    this.#buckets = { videos: handles("videos"), mp3s: handles("mp3s") };
  }

  async init(): Promise<void> {
    for (const bucket of BUCKETS) {
      await this.#buckets[bucket].claims.createIndex(
        { refreshedAt: 1 },
        { expireAfterSeconds: CLAIM_TTL_SECONDS },
      );
    }
  }

  async put(
    bucket: Bucket,
    source: AsyncIterable<Uint8Array>,
    options: PutOptions,
  ): Promise<BlobInfo> {
    const handles = this.#handles(bucket);
    const id = options.id ?? randomBytes(16).toString("base64url");
    checkId(id);
    // Fails fast before reading a large source.
    if (await this.#exists(handles, id)) throw new BlobExistsError(bucket, id);

    const owner = randomBytes(12).toString("hex");
    await this.#claim(handles, bucket, id, owner);
    const refresher = setInterval(() => this.#refreshClaim(handles, id, owner), CLAIM_REFRESH_MS);
    refresher.unref?.();
    try {
      // Checked again under the claim: a put that completed just before the claim has its file.
      if (await this.#exists(handles, id)) throw new BlobExistsError(bucket, id);
      // Chunks of this id without a file document are the remains of a put that crashed.
      await handles.chunks.deleteMany({ files_id: { $eq: id } });
      return await this.#upload(handles, bucket, id, source, options);
    } finally {
      clearInterval(refresher);
      await handles.claims.deleteOne({ _id: id, owner }).catch((error: unknown) => {
        this.#logger.warn(
          { err: errorFields(error), bucket, id },
          "failed to release upload claim",
        );
      });
    }
  }

  async stat(bucket: Bucket, id: string): Promise<BlobInfo | null> {
    const handles = this.#handles(bucket);
    checkId(id);
    const file = await handles.files.findOne({ _id: fileId(id) });
    return file ? toBlobInfo(bucket, id, file) : null;
  }

  async open(bucket: Bucket, id: string, range?: ByteRange): Promise<OpenedBlob | null> {
    const handles = this.#handles(bucket);
    checkId(id);
    const file = await handles.files.findOne({ _id: fileId(id) });
    if (!file) return null;
    const info = toBlobInfo(bucket, id, file);
    if (range) checkRange(range, info.size);

    // GridFS takes an exclusive end; the port's ranges are inclusive.
    const download = handles.gridfs.openDownloadStream(
      fileId(id),
      range ? { start: range.start, end: range.end + 1 } : {},
    );
    const stream = Readable.toWeb(download) as unknown as ReadableStream<Uint8Array>;
    return { info, stream };
  }

  async delete(bucket: Bucket, id: string): Promise<boolean> {
    const handles = this.#handles(bucket);
    checkId(id);
    if (!(await this.#exists(handles, id))) return false;
    try {
      await handles.gridfs.delete(fileId(id));
      return true;
    } catch (error) {
      // The driver raises a runtime error when the file document is gone, here because a
      // concurrent delete removed it first.
      if (error instanceof MongoRuntimeError && !(await this.#exists(handles, id))) return false;
      throw error;
    }
  }

  async ping(): Promise<void> {
    await this.#db.command({ ping: 1 });
  }

  async close(): Promise<void> {
    await this.#client.close();
  }

  #handles(bucket: string): BucketHandles {
    if (!(BUCKETS as readonly string[]).includes(bucket)) {
      throw new Error(
        `unknown blob bucket ${JSON.stringify(bucket)}; expected ${BUCKETS.join(" or ")}`,
      );
    }
    return this.#buckets[bucket as Bucket];
  }

  async #exists(handles: BucketHandles, id: string): Promise<boolean> {
    return (await handles.files.countDocuments({ _id: fileId(id) }, { limit: 1 })) > 0;
  }

  async #claim(handles: BucketHandles, bucket: Bucket, id: string, owner: string): Promise<void> {
    try {
      await handles.claims.insertOne({ _id: id, owner, refreshedAt: new Date() });
    } catch (error) {
      // Another put of this id is in progress.
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) {
        throw new BlobExistsError(bucket, id);
      }
      throw error;
    }
  }

  #refreshClaim(handles: BucketHandles, id: string, owner: string): void {
    handles.claims
      .updateOne({ _id: id, owner }, { $set: { refreshedAt: new Date() } })
      .catch((error: unknown) => {
        this.#logger.warn({ err: errorFields(error), id }, "failed to refresh upload claim");
      });
  }

  /** Streams `source` into GridFS under `id`; on failure removes every chunk written. */
  async #upload(
    handles: BucketHandles,
    bucket: Bucket,
    id: string,
    source: AsyncIterable<Uint8Array>,
    options: PutOptions,
  ): Promise<BlobInfo> {
    const upload = handles.gridfs.openUploadStreamWithId(fileId(id), options.filename, {
      metadata: { filename: options.filename, contentType: options.contentType },
    });
    try {
      await pipeline(limitSize(source, options.maxBytes), upload);
    } catch (error) {
      await this.#discard(handles, bucket, id, upload);
      throw error;
    }
    const file = upload.gridFSFile;
    if (!file) throw new Error(`GridFS upload of ${bucket}/${id} finished without a file document`);
    return toBlobInfo(bucket, id, file);
  }

  async #discard(
    handles: BucketHandles,
    bucket: Bucket,
    id: string,
    upload: GridFSBucketWriteStream,
  ): Promise<void> {
    try {
      // A chunk insert still in flight would land after abort() and stay behind. A failed insert
      // never lowers the count, so an errored stream is not waited for.
      if (!upload.state.errored) {
        await waitFor(() => upload.state.outstandingRequests === 0, DRAIN_TIMEOUT_MS);
      }
      if (!upload.state.aborted && !upload.state.streamEnd) await upload.abort();
      // abort() skips the chunks of a stream that had ended, so they are removed here too.
      await handles.chunks.deleteMany({ files_id: { $eq: id } });
    } catch (error) {
      this.#logger.warn(
        { err: errorFields(error), bucket, id },
        "failed to remove the chunks of a failed upload",
      );
    }
  }
}

/** Yields `source` until more than `maxBytes` have passed, then throws `BlobTooLargeError`. */
async function* limitSize(
  source: AsyncIterable<Uint8Array>,
  maxBytes: number | undefined,
): AsyncGenerator<Uint8Array> {
  let size = 0;
  for await (const chunk of source) {
    size += chunk.byteLength;
    if (maxBytes !== undefined && size > maxBytes) throw new BlobTooLargeError(maxBytes);
    yield chunk;
  }
}

/** Polls `condition` until it is true or `timeoutMs` passes; false on timeout. */
async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

/**
 * Types a string id for the driver. The driver stores any BSON value as `_id`, but its GridFS
 * types declare ObjectId.
 */
function fileId(id: string): ObjectId {
  return id as unknown as ObjectId;
}

function toBlobInfo(bucket: Bucket, id: string, file: GridFSFile): BlobInfo {
  const metadata = file.metadata ?? {};
  return {
    id,
    bucket,
    filename: typeof metadata.filename === "string" ? metadata.filename : file.filename,
    contentType:
      typeof metadata.contentType === "string" ? metadata.contentType : "application/octet-stream",
    size: file.length,
    createdAt: file.uploadDate,
  };
}

function checkId(id: string): void {
  if (!isValidBlobId(id)) throw new InvalidBlobIdError(id);
}

function checkRange(range: ByteRange, size: number): void {
  const valid =
    Number.isSafeInteger(range.start) &&
    Number.isSafeInteger(range.end) &&
    range.start >= 0 &&
    range.start <= range.end &&
    range.end < size;
  if (!valid) {
    throw new RangeError(
      `byte range ${range.start}-${range.end} is outside the blob of ${size} bytes`,
    );
  }
}
