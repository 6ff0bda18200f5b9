/**
 * Parses a Content-Type value by the grammar of RFC 9110 (section 8.3.1 for the media type,
 * section 5.6.6 for its parameters) and reads the multipart boundary from it by RFC 2046
 * (section 5.1.1).
 */

/** A media type with its parameters. */
export interface MediaType {
  /** The type, lowercased, such as `multipart`. */
  type: string;
  /** The subtype, lowercased, such as `form-data`. */
  subtype: string;
  /**
   * The parameters in the order they appear. Names are lowercased and values have their quotes
   * and backslash escapes removed. A name may appear more than once.
   */
  parameters: Array<{ name: string; value: string }>;
}

/** Result of reading the boundary: the boundary, or a sentence saying why there is none. */
export type BoundaryResult = { boundary: string } | { problem: string };

/** Maximum boundary length, from RFC 2046 section 5.1.1. */
export const BOUNDARY_MAX_LENGTH = 70;

/** The characters RFC 2046 allows in a boundary (`bchars`). */
const BOUNDARY_CHARACTERS = /^[0-9A-Za-z'()+_,\-./:=? ]*$/;

/** A token character (`tchar` in RFC 9110 section 5.6.2). */
const TOKEN_CHARACTER = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;

/**
 * Parses `value` as a media type with parameters, or returns undefined when it does not match
 * the grammar. Leading and trailing whitespace, whitespace around each `;` and empty parameters
 * (`;;`) are allowed, as RFC 9110 allows them. Whitespace around `=` is not.
 */
export function parseMediaType(value: string): MediaType | undefined {
  const reader = new Reader(value);
  reader.skipWhitespace();
  const type = reader.readToken();
  if (!type || !reader.consume("/")) return undefined;
  const subtype = reader.readToken();
  if (!subtype) return undefined;
  const parameters: MediaType["parameters"] = [];
  for (;;) {
    reader.skipWhitespace();
    if (reader.done) break;
    if (!reader.consume(";")) return undefined;
    reader.skipWhitespace();
    if (reader.done || reader.peek() === ";") continue;
    const name = reader.readToken();
    if (!name || !reader.consume("=")) return undefined;
    const quoted = reader.peek() === '"';
    const parameterValue = quoted ? reader.readQuotedString() : reader.readToken();
    // A token has at least one character, so only a quoted value may be empty.
    if (parameterValue === undefined || (!quoted && parameterValue === "")) return undefined;
    parameters.push({ name: name.toLowerCase(), value: parameterValue });
  }
  return { type: type.toLowerCase(), subtype: subtype.toLowerCase(), parameters };
}

/**
 * Reads the `boundary` parameter of a `multipart/form-data` Content-Type. Returns a problem when
 * the value does not parse, is another media type, has no boundary or more than one, or when the
 * boundary breaks RFC 2046: 1 to 70 characters from `bchars`, the last one not a space.
 */
export function readBoundary(contentType: string): BoundaryResult {
  const mediaType = parseMediaType(contentType);
  if (!mediaType) {
    return {
      problem:
        "The Content-Type header is malformed: it must be a media type followed by " +
        'parameters such as; boundary=value or; boundary="quoted value".',
    };
  }
  if (mediaType.type !== "multipart" || mediaType.subtype !== "form-data") {
    return { problem: "The Content-Type header is not multipart/form-data." };
  }
  // RFC 2231's extended form `boundary*` is not read, and next to `boundary` a client or proxy
  // that reads it could split the body on another boundary than the gateway does.
  if (mediaType.parameters.some((parameter) => parameter.name.startsWith("boundary*"))) {
    return {
      problem: "The Content-Type header has an extended boundary* parameter; use boundary=.",
    };
  }
  const boundaries = mediaType.parameters.filter((parameter) => parameter.name === "boundary");
  if (boundaries.length === 0) {
    return { problem: "The Content-Type header has no boundary parameter." };
  }
  if (boundaries.length > 1) {
    return { problem: "The Content-Type header has more than one boundary parameter." };
  }
  const boundary = boundaries[0]?.value ?? "";
  const problem = boundaryProblem(boundary);
  return problem === undefined ? { boundary } : { problem };
}

/** Returns why `boundary` breaks RFC 2046, or undefined when it is valid. */
function boundaryProblem(boundary: string): string | undefined {
  if (boundary.length === 0) return "The multipart/form-data boundary is empty.";
  if (boundary.length > BOUNDARY_MAX_LENGTH) {
    return (
      `The multipart/form-data boundary is ${boundary.length} characters long, over the ` +
      `maximum of ${BOUNDARY_MAX_LENGTH}.`
    );
  }
  if (!BOUNDARY_CHARACTERS.test(boundary)) {
    return (
      "The multipart/form-data boundary contains a character that RFC 2046 does not allow. " +
      "Use only letters, digits, space and '()+_,-./:=?"
    );
  }
  if (boundary.endsWith(" ")) {
    return "The multipart/form-data boundary ends with a space, which RFC 2046 does not allow.";
  }
  return undefined;
}

/** A cursor over a header value. */
class Reader {
  readonly #text: string;
  #index = 0;

  constructor(text: string) {
    this.#text = text;
  }

  get done(): boolean {
    return this.#index >= this.#text.length;
  }

  peek(): string | undefined {
    return this.#text[this.#index];
  }

  /** Advances past `character` when it comes next, and returns whether it did. */
  consume(character: string): boolean {
    if (this.#text[this.#index] !== character) return false;
    this.#index++;
    return true;
  }

  /** Skips optional whitespace (`OWS`: spaces and horizontal tabs). */
  skipWhitespace(): void {
    while (this.peek() === " " || this.peek() === "\t") this.#index++;
  }

  /** Reads a token, which is empty when no token character comes next. */
  readToken(): string {
    const start = this.#index;
    while (!this.done && TOKEN_CHARACTER.test(this.#text[this.#index] ?? "")) this.#index++;
    return this.#text.slice(start, this.#index);
  }

  /**
   * Reads a quoted string that starts at the cursor and returns its content with each
   * backslash escape (`quoted-pair`) replaced by the escaped character. Returns undefined when
   * the closing quote is missing or a character is not allowed.
   */
  readQuotedString(): string | undefined {
    if (!this.consume('"')) return undefined;
    let content = "";
    for (;;) {
      const character = this.peek();
      if (character === undefined) return undefined;
      this.#index++;
      if (character === '"') return content;
      if (character === "\\") {
        const escaped = this.peek();
        if (escaped === undefined || !isQuotedPairCharacter(escaped)) return undefined;
        this.#index++;
        content += escaped;
      } else if (isQuotedTextCharacter(character)) {
        content += character;
      } else {
        return undefined;
      }
    }
  }
}

/** Returns whether `character` is `qdtext`: tab, space, obs-text or visible but not `"` or `\`. */
function isQuotedTextCharacter(character: string): boolean {
  const code = character.charCodeAt(0);
  return isQuotedPairCharacter(character) && code !== 0x22 && code !== 0x5c;
}

/** Returns whether `character` may follow `\` in a `quoted-pair`: tab, space, visible or obs-text. */
function isQuotedPairCharacter(character: string): boolean {
  const code = character.charCodeAt(0);
  return code === 0x09 || (code >= 0x20 && code <= 0x7e) || (code >= 0x80 && code <= 0xff);
}
