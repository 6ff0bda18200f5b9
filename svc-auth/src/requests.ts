/** Reading the parts of a request that the auth routes need. */
import { AppError } from "@mp3converter/lib/errors";
import { clientAddressOf } from "@mp3converter/lib/runtime";

/** Largest JSON body the auth routes read; a sign-up body is well under 1 KiB. */
export const JSON_BODY_MAX_BYTES = 16 * 1024;

/** Key used for requests whose peer address is unknown, such as in-process test requests. */
export const UNKNOWN_ADDRESS = "unknown";

/**
 * Returns the client address: the first `X-Forwarded-For` hop when `trustProxy` is set and the
 * header is present, else the network peer.
 */
export function clientAddress(request: Request, trustProxy: boolean): string {
  if (trustProxy) {
    const first = request.headers.get("x-forwarded-for")?.split(",")[0]?.trim();
    if (first) return first;
  }
  return clientAddressOf(request) ?? UNKNOWN_ADDRESS;
}

/** Reads a JSON object body; rejects other media types, oversized bodies and invalid JSON. */
export async function readJsonObject(request: Request): Promise<Record<string, unknown>> {
  const mediaType = request.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  if (mediaType !== "application/json") {
    throw new AppError(
      "unsupported_media_type",
      "Send the body as JSON with Content-Type: application/json.",
    );
  }
  const bytes = await request.arrayBuffer();
  if (bytes.byteLength > JSON_BODY_MAX_BYTES) {
    throw new AppError(
      "payload_too_large",
      `The request body is larger than ${JSON_BODY_MAX_BYTES} bytes.`,
    );
  }
  let text: string;
  try {
    // Strict, because a lenient decoder turns invalid bytes into U+FFFD, and a password stored
    // that way would accept other bytes at login.
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new AppError("invalid_argument", "The request body is not valid UTF-8.");
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new AppError("invalid_argument", "The request body is not valid JSON.");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new AppError("invalid_argument", "The request body must be a JSON object.");
  }
  return body as Record<string, unknown>;
}

/** Returns the string field `name` of a body, or throws a 400 naming the field. */
export function requireStringField(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (value === undefined || value === null) {
    throw new AppError("invalid_argument", `The field "${name}" is missing.`, {
      details: { field: name },
    });
  }
  if (typeof value !== "string") {
    throw new AppError("invalid_argument", `The field "${name}" must be a string.`, {
      details: { field: name },
    });
  }
  return value;
}

interface MediaRange {
  type: string;
  quality: number;
  position: number;
}

function parseAccept(accept: string): MediaRange[] {
  return accept.split(",").map((part, position) => {
    const [type = "", ...parameters] = part.split(";").map((item) => item.trim().toLowerCase());
    const q = parameters.find((parameter) => parameter.startsWith("q="));
    const quality = q === undefined ? 1 : Number(q.slice(2));
    return { type, quality: Number.isFinite(quality) ? quality : 0, position };
  });
}

/** Returns the most specific range of `ranges` that matches `mediaType`. */
function matchOf(ranges: MediaRange[], mediaType: string): MediaRange | undefined {
  const [major] = mediaType.split("/");
  return (
    ranges.find((range) => range.type === mediaType) ??
    ranges.find((range) => range.type === `${major}/*`) ??
    ranges.find((range) => range.type === "*/*")
  );
}

/**
 * Returns whether an `Accept` header prefers `text/plain` to `application/json`: a higher
 * quality, or the same quality and an earlier position. JSON wins when the header is absent.
 */
export function prefersPlainText(accept: string | null): boolean {
  if (accept === null || accept.trim() === "") return false;
  const ranges = parseAccept(accept);
  const text = matchOf(ranges, "text/plain");
  const json = matchOf(ranges, "application/json");
  if (text === undefined || text.quality <= 0) return false;
  if (json === undefined || json.quality < text.quality) return true;
  return json.quality === text.quality && text.position < json.position;
}
