/** HTTP Basic credentials (RFC 7617) as sent to `POST /login`. */
import { AppError } from "@mp3converter/lib/errors";

export const BASIC_CHALLENGE = 'Basic realm="mp3converter", charset="UTF-8"';

export interface BasicCredentials {
  email: string;
  password: string;
}

/** Decodes an `Authorization: Basic` header, or throws the matching 401. */
export function parseBasicCredentials(header: string | null): BasicCredentials {
  if (header === null || header.trim() === "") {
    throw new AppError("unauthenticated", "Send your email and password with HTTP Basic auth.", {
      headers: { "www-authenticate": BASIC_CHALLENGE },
    });
  }
  const encoded = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header)?.[1];
  const decoded = encoded === undefined ? undefined : decodeBase64Utf8(encoded);
  const colon = decoded?.indexOf(":") ?? -1;
  if (decoded === undefined || colon < 0) {
    throw new AppError(
      "invalid_request",
      "The Authorization header is malformed; expected Basic base64(email:password).",
      { headers: { "www-authenticate": BASIC_CHALLENGE } },
    );
  }
  return { email: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function decodeBase64Utf8(encoded: string): string | undefined {
  try {
    const bytes = Uint8Array.from(atob(encoded), (char) => char.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
