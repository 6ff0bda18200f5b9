/** Header that carries the request id from the client through every service. */
export const REQUEST_ID_HEADER = "x-request-id";

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Returns the inbound request id when it is safe to log and echo, else a new random one. */
export function acceptRequestId(inbound: string | null | undefined): string {
  return inbound && SAFE_REQUEST_ID.test(inbound) ? inbound : crypto.randomUUID();
}
