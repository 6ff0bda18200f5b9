/**
 * Opens the blob store named by a storage URL: `file:` for a local directory, `mongodb:` or
 * `mongodb+srv:` for GridFS.
 */
import type { Logger } from "../log.ts";
import type { BlobStore } from "../ports/storage.ts";
import { fileStoreRoot, openFileBlobStore } from "./file-store.ts";

export interface BlobStoreOptions {
  logger: Logger;
}

/** Opens the blob store for `url`, picked by its scheme. */
export async function openBlobStore(url: string, options: BlobStoreOptions): Promise<BlobStore> {
  const scheme = url.slice(0, url.indexOf(":") + 1).toLowerCase();
  switch (scheme) {
    case "file:":
      return openFileBlobStore(fileStoreRoot(url), options);
    case "mongodb:":
    case "mongodb+srv:": {
      // Loaded on demand so that the embedded mode never loads the MongoDB driver.
      const { openGridFsBlobStore } = await import("./gridfs-store.ts");
      return openGridFsBlobStore(url, options);
    }
    default:
      throw new Error(
        `storage URL scheme ${scheme || "(none)"} is not supported; ` +
          "use file:, mongodb: or mongodb+srv:",
      );
  }
}
