import { describe, expect, test } from "bun:test";
import {
  attachmentDisposition,
  encodeExtendedValue,
  toAsciiFilename,
} from "./content-disposition.ts";
import {
  DEFAULT_UPLOAD_FILENAME,
  FILENAME_MAX_CHARS,
  toDisplayFilename,
  toMp3Filename,
} from "./filename.ts";

describe("toDisplayFilename", () => {
  test.each([
    ["talk.mp4", "talk.mp4"],
    ["/home/user/talk.mp4", "talk.mp4"],
    ["C:\\Users\\me\\talk.mp4", "talk.mp4"],
    ["bad\u0000na\u001fme\u007f.mp4", "badname.mp4"],
    ["line\r\nbreak.mp4", "linebreak.mp4"],
    ["evil\u202egpj.mp4", "evilgpj.mp4"],
    ["  spaced.mp4  ", "spaced.mp4"],
  ])("cleans %j", (raw, expected) => {
    expect(toDisplayFilename(raw)).toBe(expected);
  });

  test("applies NFC", () => {
    const decomposed = "Cafe\u0301.mp4";
    expect(toDisplayFilename(decomposed)).toBe("Caf\u00e9.mp4");
  });

  test.each([[undefined], [""], ["dir/"], [".."], ["\u0000\u0001"]])("defaults %j", (raw) => {
    expect(toDisplayFilename(raw)).toBe(DEFAULT_UPLOAD_FILENAME);
  });

  test("caps length in code points", () => {
    const name = `${"\u{1F3B5}".repeat(300)}.mp4`;
    const cleaned = toDisplayFilename(name);
    expect(cleaned).toBe("\u{1F3B5}".repeat(FILENAME_MAX_CHARS));
  });
});

describe("toMp3Filename", () => {
  test.each([
    ["talk.mp4", "talk.mp3"],
    ["archive.tar.gz", "archive.tar.mp3"],
    ["noext", "noext.mp3"],
    [".hidden", ".hidden.mp3"],
    ["song.MP3", "song.mp3"],
  ])("maps %j", (input, expected) => {
    expect(toMp3Filename(input)).toBe(expected);
  });
});

describe("Content-Disposition", () => {
  test("keeps a plain ASCII name", () => {
    expect(attachmentDisposition("talk.mp3")).toBe(
      "attachment; filename=\"talk.mp3\"; filename*=UTF-8''talk.mp3",
    );
  });

  test("replaces quotes and backslashes in the ASCII name", () => {
    const value = attachmentDisposition('say "hi"\\.mp3');
    expect(value).toContain('filename="say _hi__.mp3"');
    expect(value).toContain("filename*=UTF-8''say%20%22hi%22%5C.mp3");
  });

  test("replaces newlines and control characters", () => {
    const value = attachmentDisposition("a\r\nb\u0007.mp3");
    expect(value).toContain('filename="a__b_.mp3"');
    expect(Array.from(value).some((char) => char.charCodeAt(0) < 0x20)).toBe(false);
    expect(value).toContain("filename*=UTF-8''a%0D%0Ab%07.mp3");
  });

  test("encodes non-ASCII names in filename*", () => {
    const value = attachmentDisposition("Café 🎵.mp3");
    expect(value).toContain('filename="Caf_ _.mp3"');
    expect(value).toContain("filename*=UTF-8''Caf%C3%A9%20%F0%9F%8E%B5.mp3");
  });

  test("encodes characters outside attr-char", () => {
    expect(encodeExtendedValue("it's (1)*.mp3")).toBe("it%27s%20%281%29%2A.mp3");
  });

  test("ASCII fallback has only printable ASCII", () => {
    const ascii = toAsciiFilename('ü\u0000"\\x\u{1F600}');
    expect(ascii).toBe("____x_");
  });
});
