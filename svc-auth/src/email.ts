/** Email addresses as user names: normalized so that one mailbox maps to one account. */

/** RFC 5321 limit on the length of a forward path. */
export const EMAIL_MAX_LENGTH = 254;
const LOCAL_PART_MAX_LENGTH = 64;

const ATOM = "[a-z0-9!#$%&'*+/=?^_`{|}~-]+";
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
/** A dot-atom local part and a domain of at least two DNS labels, after lowercasing. */
const EMAIL_PATTERN = new RegExp(`^${ATOM}(?:\\.${ATOM})*@(?:${LABEL}\\.)+${LABEL}$`);

/**
 * Trims an address and lowercases its ASCII letters, the form in which emails are stored and
 * looked up. Only ASCII is lowercased because `toLowerCase` maps some non-ASCII letters to ASCII
 * (the Kelvin sign U+212A becomes "k"), which would accept one address as another.
 */
export function normalizeEmail(raw: string): string {
  return raw.trim().replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

/**
 * Returns why a normalized address is not acceptable for a new account, or null when it is.
 * Quoted local parts and non-ASCII addresses are not accepted.
 */
export function emailProblem(email: string): string | null {
  if (email === "") return "The email address is empty.";
  if (email.length > EMAIL_MAX_LENGTH) {
    return `The email address is longer than ${EMAIL_MAX_LENGTH} characters.`;
  }
  const at = email.lastIndexOf("@");
  if (at > LOCAL_PART_MAX_LENGTH) {
    return `The part before @ is longer than ${LOCAL_PART_MAX_LENGTH} characters.`;
  }
  if (!EMAIL_PATTERN.test(email)) {
    return "The email address is invalid; expected an address such as name@example.com.";
  }
  return null;
}
