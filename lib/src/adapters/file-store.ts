/**
 * Blob store on a local directory, the embedded implementation of the storage port.
 *
 * Layout under the root: `<bucket>/<id>` contains the bytes and `<bucket>/<id>.json` the
 * metadata, and `.partial/` contains writes in progress. A put writes both files under
 * `.partial/` and syncs them. It then claims `<bucket>/<id>` with `link()`, which fails when the
 * name exists, so two puts of one id cannot both win. Last it renames the metadata into place.
 * The metadata file is what makes a blob visible, so a crash or an error never exposes a
 * half-written blob.
 *
 * A crash between the claim and the rename leaves an orphan: a data file without metadata, which
 * `stat` and `open` do not see. Invariant: while a put runs, it sets the modification time of its
 * files to the current time at least every `PARTIAL_TOUCH_INTERVAL_MS`, and the claimed data file
 * is the same inode as its partial file. So a file in `.partial/`, or a data file without
 * metadata, whose modification time is older than `STALE_FILE_AGE_MS` has no live put, and a put
 * or a sweep may remove it. A put that meets such an orphan takes the id over instead of raising
 * `BlobExistsError`. It raises that error for an orphan younger than the bound, because the orphan
 * may be a live claim that becomes visible one rename later.
 */
import { randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  utimes,
} from "node:fs/promises";
import path from "node:path";
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
import { openLazyFileBlob } from "../runtime.ts";

const PARTIAL_DIR = ".partial";
const METADATA_SUFFIX = ".json";

/** Interval in milliseconds at which a running put sets the modification time of its files. */
const PARTIAL_TOUCH_INTERVAL_MS = 5_000;

/**
 * Age in milliseconds, by modification time, after which a file in `.partial/` or a data file
 * without metadata counts as left behind by a crashed process. It is six touch intervals, so a
 * live put whose event loop stalls for less than about 25 s keeps its files.
 */
const STALE_FILE_AGE_MS = 30_000;

/** Interval in milliseconds between sweeps of stale files while the store is open. */
const SWEEP_INTERVAL_MS = 30_000;

/** Size of the chunks that `open` reads and enqueues. */
const READ_CHUNK_BYTES = 64 * 1024;

export interface FileBlobStoreOptions {
  logger: Logger;
}

/** Stored form of `BlobInfo`, with the date as an ISO 8601 string. */
interface StoredMetadata {
  id: string;
  bucket: Bucket;
  filename: string;
  contentType: string;
  size: number;
  createdAt: string;
}

/**
 * Parses the path part of a `file:` storage URL: `file:./relative/dir`, `file:/abs/dir` or
 * `file:///abs/dir`. A relative path is resolved against the working directory.
 */
export function fileStoreRoot(url: string): string {
  if (!url.startsWith("file:")) {
    throw new Error(
      "storage URL for the file store must start with file:, e.g. file:./.data/files",
    );
  }
  const rest = url.slice("file:".length);
  // WHATWG URL parsing would turn `file:./dir` into `/dir`, so only the `//` form goes through it.
  const dir = rest.startsWith("//") ? decodeURIComponent(new URL(url).pathname) : rest;
  if (dir === "") {
    throw new Error("storage URL file: names no directory; use for example file:./.data/files");
  }
  return path.resolve(dir);
}

/** Opens (and creates when missing) a file blob store at `root`, sweeping stale partial files. */
export async function openFileBlobStore(
  root: string,
  options: FileBlobStoreOptions,
): Promise<BlobStore> {
  const store = new FileBlobStore(path.resolve(root), options.logger);
  await store.init();
  return store;
}

class FileBlobStore implements BlobStore {
  readonly #root: string;
  readonly #partialDir: string;
  readonly #logger: Logger;
  #closed = false;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;

  constructor(root: string, logger: Logger) {
    this.#root = root;
    this.#partialDir = path.join(root, PARTIAL_DIR);
    this.#logger = logger;
  }

  async init(): Promise<void> {
    await mkdir(this.#partialDir, { recursive: true });
    for (const bucket of BUCKETS) await mkdir(path.join(this.#root, bucket), { recursive: true });
    await this.#sweep();
    // Several processes may share the root, so each keeps sweeping what crashed ones left.
    this.#sweepTimer = setInterval(() => {
      this.#sweep().catch((error: unknown) => {
        this.#logger.warn({ err: errorFields(error), root: this.#root }, "blob store sweep failed");
      });
    }, SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref?.();
  }

  async put(
    bucket: Bucket,
    source: AsyncIterable<Uint8Array>,
    options: PutOptions,
  ): Promise<BlobInfo> {
    this.#checkOpen();
    checkBucket(bucket);
    const id = options.id ?? newBlobId();
    checkId(id);
    const dataPath = this.#dataPath(bucket, id);
    // Fails fast before reading a large source; the claim below is the authoritative check.
    if (await exists(this.#metadataPath(bucket, id))) throw new BlobExistsError(bucket, id);

    const partialData = this.#newPartialPath();
    const partialMetadata = `${partialData}${METADATA_SUFFIX}`;
    const touchTimer = setInterval(() => {
      void touchQuietly(partialData);
      void touchQuietly(partialMetadata);
    }, PARTIAL_TOUCH_INTERVAL_MS);
    touchTimer.unref?.();
    let claimed = false;
    try {
      const size = await writeSource(partialData, source, options.maxBytes);
      const info: BlobInfo = {
        id,
        bucket,
        filename: options.filename,
        contentType: options.contentType,
        size,
        createdAt: new Date(),
      };
      await writeDurably(partialMetadata, JSON.stringify(toStored(info)));
      await this.#claim(partialData, bucket, id);
      claimed = true;
      await rename(partialMetadata, this.#metadataPath(bucket, id));
      await syncDirectory(path.join(this.#root, bucket));
      return info;
    } catch (error) {
      if (claimed) await this.#removeQuietly(dataPath);
      await this.#removeQuietly(partialMetadata);
      throw error;
    } finally {
      clearInterval(touchTimer);
      await this.#removeQuietly(partialData);
    }
  }

  /**
   * Links `partialData` to `<bucket>/<id>`. When the name is taken by a stale orphan, removes the
   * orphan and links once more. Raises `BlobExistsError` when the name is taken by a blob or by a
   * data file that may belong to a live put.
   */
  async #claim(partialData: string, bucket: Bucket, id: string): Promise<void> {
    const dataPath = this.#dataPath(bucket, id);
    for (let attempt = 0; ; attempt++) {
      try {
        await link(partialData, dataPath);
        return;
      } catch (error) {
        if (errorCode(error) !== "EEXIST") throw error;
      }
      if (attempt > 0 || (await exists(this.#metadataPath(bucket, id)))) {
        throw new BlobExistsError(bucket, id);
      }
      const orphan = await stat(dataPath).catch(() => null);
      if (orphan && !isStale(orphan, Date.now())) throw new BlobExistsError(bucket, id);
      if (orphan && !(await this.#removeOrphan(dataPath, orphan))) {
        throw new BlobExistsError(bucket, id);
      }
      this.#logger.info({ bucket, id }, "took over a blob id left without metadata by a crash");
    }
  }

  /**
   * Removes the data file at `dataPath` if it is still the file described by `orphan`, and
   * returns false if another put claimed the name in the meantime. A plain unlink could remove
   * that put's fresh claim, so the file is first renamed away (atomic, so only one of several
   * removers gets it) and put back when it turns out to be another file.
   */
  async #removeOrphan(dataPath: string, orphan: Stats): Promise<boolean> {
    const moved = this.#newPartialPath();
    try {
      await rename(dataPath, moved);
    } catch (error) {
      if (errorCode(error) === "ENOENT") return true;
      throw error;
    }
    try {
      const current = await stat(moved);
      // Rename and link keep the modification time, and a new put's file has a later one.
      const same =
        current.ino === orphan.ino &&
        current.dev === orphan.dev &&
        current.mtimeMs === orphan.mtimeMs;
      if (same) return true;
      try {
        await link(moved, dataPath);
      } catch (error) {
        // NOTE: only a third put that claims the id within this instant gets here, and then the
        // put whose file was moved may report success for data that is gone.
        this.#logger.error(
          { err: errorFields(error), file: dataPath },
          "failed to restore a claimed blob file moved by an orphan sweep",
        );
      }
      return false;
    } finally {
      await this.#removeQuietly(moved);
    }
  }

  async stat(bucket: Bucket, id: string): Promise<BlobInfo | null> {
    this.#checkOpen();
    checkBucket(bucket);
    checkId(id);
    return this.#readMetadata(bucket, id);
  }

  async open(bucket: Bucket, id: string, range?: ByteRange): Promise<OpenedBlob | null> {
    this.#checkOpen();
    checkBucket(bucket);
    checkId(id);
    const info = await this.#readMetadata(bucket, id);
    if (!info) return null;
    if (range) checkRange(range, info.size);

    const file = this.#dataPath(bucket, id);
    // A delete removes the metadata first, so this only happens while a delete is under way.
    if (!(await exists(file))) return null;
    const start = range?.start ?? 0;
    const end = range ? range.end + 1 : info.size;
    const opened: OpenedBlob = { info, stream: readRange(file, start, end) };
    const whole = await openLazyFileBlob(file);
    if (whole) opened.blob = whole.slice(start, end);
    return opened;
  }

  async delete(bucket: Bucket, id: string): Promise<boolean> {
    this.#checkOpen();
    checkBucket(bucket);
    checkId(id);
    // Metadata goes first so that the blob disappears at once for `stat` and `open`.
    const existed = await removeIfExists(this.#metadataPath(bucket, id));
    await removeIfExists(this.#dataPath(bucket, id));
    return existed;
  }

  async ping(): Promise<void> {
    this.#checkOpen();
    const handle = await open(this.#root, "r");
    await handle.close();
    const probe = this.#newPartialPath();
    await writeDurably(probe, "");
    await unlink(probe);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweepTimer);
  }

  #dataPath(bucket: Bucket, id: string): string {
    return path.join(this.#root, bucket, id);
  }

  #metadataPath(bucket: Bucket, id: string): string {
    return path.join(this.#root, bucket, `${id}${METADATA_SUFFIX}`);
  }

  #newPartialPath(): string {
    return path.join(this.#partialDir, randomBytes(16).toString("hex"));
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error(`file blob store at ${this.#root} is closed`);
  }

  async #readMetadata(bucket: Bucket, id: string): Promise<BlobInfo | null> {
    const file = this.#metadataPath(bucket, id);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if (errorCode(error) === "ENOENT") return null;
      throw error;
    }
    return parseMetadata(text, file);
  }

  async #removeQuietly(file: string): Promise<void> {
    try {
      await removeIfExists(file);
    } catch (error) {
      this.#logger.warn({ err: errorFields(error), file }, "failed to remove a partial blob file");
    }
  }

  /**
   * Removes what crashed processes left: data files without metadata and files in `.partial/`,
   * once their modification time is older than `STALE_FILE_AGE_MS`.
   */
  async #sweep(): Promise<void> {
    const now = Date.now();
    let removed = 0;
    for (const bucket of BUCKETS) {
      const dir = path.join(this.#root, bucket);
      const names = new Set(await readdir(dir));
      for (const name of names) {
        if (name.endsWith(METADATA_SUFFIX) || names.has(`${name}${METADATA_SUFFIX}`)) continue;
        const file = path.join(dir, name);
        const info = await stat(file).catch(() => null);
        if (info && isStale(info, now) && (await this.#removeOrphan(file, info))) removed++;
      }
    }
    for (const name of await readdir(this.#partialDir)) {
      const file = path.join(this.#partialDir, name);
      const info = await stat(file).catch(() => null);
      if (info && isStale(info, now) && (await removeIfExists(file))) removed++;
    }
    if (removed > 0) this.#logger.info({ root: this.#root, removed }, "removed stale blob files");
  }
}

/** Tells whether no live put has touched the file for `STALE_FILE_AGE_MS`. */
function isStale(info: Stats, now: number): boolean {
  return now - info.mtimeMs > STALE_FILE_AGE_MS;
}

/** Sets the access and modification times of `file` to now, ignoring a file that is gone. */
async function touchQuietly(file: string): Promise<void> {
  const now = new Date();
  await utimes(file, now, now).catch(() => {});
}

/** Returns a random 128-bit id, base64url-encoded (22 characters). */
function newBlobId(): string {
  return randomBytes(16).toString("base64url");
}

function checkBucket(bucket: string): asserts bucket is Bucket {
  if (!(BUCKETS as readonly string[]).includes(bucket)) {
    throw new Error(
      `unknown blob bucket ${JSON.stringify(bucket)}; expected ${BUCKETS.join(" or ")}`,
    );
  }
}

function checkId(id: string): void {
  if (!isValidBlobId(id)) throw new InvalidBlobIdError(id);
  // NOTE: the file store rejects ids ending in `.json` because `<id>.json` names the metadata of
  // `<id>`; the GridFS store accepts them.
  if (id.endsWith(METADATA_SUFFIX)) {
    throw new InvalidBlobIdError(id, `ids ending in ${METADATA_SUFFIX} are reserved for metadata`);
  }
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

/** Streams `source` into a new file at `file`, syncs it, and returns the byte count. */
async function writeSource(
  file: string,
  source: AsyncIterable<Uint8Array>,
  maxBytes: number | undefined,
): Promise<number> {
  const handle = await open(file, "wx");
  try {
    let size = 0;
    for await (const chunk of source) {
      size += chunk.byteLength;
      if (maxBytes !== undefined && size > maxBytes) throw new BlobTooLargeError(maxBytes);
      await writeAll(handle, chunk);
    }
    await handle.sync();
    return size;
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

async function writeDurably(file: string, text: string): Promise<void> {
  const handle = await open(file, "wx");
  try {
    await writeAll(handle, new TextEncoder().encode(text));
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Syncs a directory so that a rename into it survives a power loss. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Reads bytes `[start, end)` of `file` as a stream. The file is opened at the first read, so an
 * unread stream keeps no file open. From then on the reads go on even if the blob is deleted.
 * The handle is closed at the end, on an error and on cancel.
 */
function readRange(file: string, start: number, end: number): ReadableStream<Uint8Array> {
  let handle: FileHandle | undefined;
  let position = start;
  // With a high-water mark of 0 the stream pulls only when it is read, never ahead.
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const length = Math.min(READ_CHUNK_BYTES, end - position);
          if (length <= 0) {
            await handle?.close();
            controller.close();
            return;
          }
          handle ??= await open(file, "r");
          const buffer = new Uint8Array(length);
          const { bytesRead } = await handle.read(buffer, 0, length, position);
          if (bytesRead === 0) {
            throw new Error(`blob file ended at byte ${position}, before the expected ${end}`);
          }
          position += bytesRead;
          controller.enqueue(buffer.subarray(0, bytesRead));
        } catch (error) {
          await handle?.close().catch(() => {});
          controller.error(error);
        }
      },
      async cancel() {
        await handle?.close();
      },
    },
    { highWaterMark: 0 },
  );
}

function toStored(info: BlobInfo): StoredMetadata {
  return { ...info, createdAt: info.createdAt.toISOString() };
}

function parseMetadata(text: string, file: string): BlobInfo {
  let stored: StoredMetadata;
  try {
    stored = JSON.parse(text) as StoredMetadata;
  } catch {
    throw new Error(`blob metadata file ${file} is not valid JSON; restore or delete it`);
  }
  const createdAt = new Date(stored.createdAt);
  const valid =
    typeof stored.id === "string" &&
    typeof stored.filename === "string" &&
    typeof stored.contentType === "string" &&
    Number.isSafeInteger(stored.size) &&
    !Number.isNaN(createdAt.getTime());
  if (!valid) throw new Error(`blob metadata file ${file} is invalid; restore or delete it`);
  return { ...stored, createdAt };
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if (errorCode(error) === "ENOENT") return false;
    throw error;
  }
}

/** Unlinks `file`; false when it did not exist. */
async function removeIfExists(file: string): Promise<boolean> {
  try {
    await unlink(file);
    return true;
  } catch (error) {
    if (errorCode(error) === "ENOENT") return false;
    throw error;
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}
