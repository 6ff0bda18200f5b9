import { describe, expect, test } from "bun:test";
import { parseMediaType, readBoundary } from "./content-type.ts";

describe("parseMediaType", () => {
  test.each([
    ["text/plain", "text", "plain", []],
    ["Multipart/Form-Data", "multipart", "form-data", []],
    [
      'multipart/form-data; BOUNDARY="a b\\"c"',
      "multipart",
      "form-data",
      [{ name: "boundary", value: 'a b"c' }],
    ],
    [
      ' a/b ;x=1;; Y="2\\\\" ;\t',
      "a",
      "b",
      [
        { name: "x", value: "1" },
        { name: "y", value: "2\\" },
      ],
    ],
    [
      'a/b; x="; boundary=zzz"; boundary=real',
      "a",
      "b",
      [
        { name: "x", value: "; boundary=zzz" },
        { name: "boundary", value: "real" },
      ],
    ],
    ['a/b; x=""', "a", "b", [{ name: "x", value: "" }]],
    [
      "a/b; x=1; x=2",
      "a",
      "b",
      [
        { name: "x", value: "1" },
        { name: "x", value: "2" },
      ],
    ],
  ])("parses %j", (value, type, subtype, parameters) => {
    const mediaType = parseMediaType(value);

    expect(mediaType?.type).toBe(type);
    expect(mediaType?.subtype).toBe(subtype);
    expect(mediaType?.parameters).toEqual(parameters);
  });

  test.each([
    "",
    "text",
    "text/",
    "/plain",
    "text/plain x",
    "text/plain; x",
    "text/plain; x=",
    "text/plain; =1",
    "text/plain; x =1",
    "text/plain; x= 1",
    'text/plain; x="1',
    'text/plain; x="1\\',
    'text/plain; x="a\nb"',
    'text/plain; x="1"2',
    "text/plain; x=a@b",
    "text/plain, text/html",
  ])("rejects %j", (value) => {
    expect(parseMediaType(value)).toBeUndefined();
  });
});

describe("readBoundary", () => {
  test.each([
    ["multipart/form-data; boundary=abc", "abc"],
    ["multipart/form-data;boundary=abc; charset=utf-8", "abc"],
    ['multipart/form-data; boundary="a b:c"', "a b:c"],
    ['multipart/form-data; boundary="a\\bc"', "abc"],
  ])("reads %j", (contentType, boundary) => {
    expect(readBoundary(contentType)).toEqual({ boundary });
  });

  test.each([
    ["text/plain; boundary=abc", "not multipart/form-data"],
    ["multipart/mixed; boundary=abc", "not multipart/form-data"],
    ["multipart/form-data", "no boundary"],
    ["multipart/form-data; boundary=a; boundary=a", "more than one"],
    ['multipart/form-data; boundary=""', "empty"],
    [`multipart/form-data; boundary=${"b".repeat(71)}`, "over the maximum of 70"],
    ['multipart/form-data; boundary="a\\"b"', "does not allow"],
    ["multipart/form-data; boundary=a*b", "does not allow"],
    ['multipart/form-data; boundary=" "', "ends with a space"],
    ["multipart/form-data; boundary", "malformed"],
    ["multipart/form-data; boundary=abc; boundary*=def", "extended boundary*"],
    ["multipart/form-data; boundary*=abc", "extended boundary*"],
    ["multipart/form-data; boundary*0=abc", "extended boundary*"],
  ])("rejects %j", (contentType, problem) => {
    const result = readBoundary(contentType);

    expect("problem" in result ? result.problem : "").toContain(problem);
  });
});
