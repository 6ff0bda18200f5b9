import { describe, expect, test } from "bun:test";
import type { Mp3Message } from "@mp3converter/lib/messages";
import {
  buildJobEmail,
  displayFilenameOf,
  IncompleteMessageError,
  InvalidRecipientError,
  mp3FilenameOf,
  shellQuote,
} from "./email.ts";

const SETTINGS = {
  from: "mp3converter <no-reply@mp3converter.local>",
  publicUrl: "https://mp3.example.com",
};

function readyMessage(overrides: Partial<Mp3Message> = {}): Mp3Message {
  return {
    job_id: "job-1",
    video_fid: "video-1",
    mp3_fid: "mp3-1",
    username: "alice@example.com",
    filename: "talk.mp4",
    request_id: "req-1",
    ...overrides,
  };
}

function failedMessage(code: string, message: string): Mp3Message {
  return readyMessage({ mp3_fid: null, failure: { code, message } });
}

describe("ready email", () => {
  const email = buildJobEmail(readyMessage(), SETTINGS);
  const link = "https://mp3.example.com/download?fid=mp3-1";

  test("names the MP3 in the subject", () => {
    expect(email.outcome).toBe("ready");
    expect(email.message.subject).toBe("Your MP3 is ready: talk.mp3");
  });

  test("goes to the username from the configured sender", () => {
    expect(email.message.to).toBe("alice@example.com");
    expect(email.message.from).toBe(SETTINGS.from);
  });

  test("contains the download link and ids", () => {
    expect(email.downloadUrl).toBe(link);
    expect(email.message.text).toContain(`  ${link}\n`);
    expect(email.message.text).toContain("Job id: job-1");
    expect(email.message.text).toContain("MP3 id: mp3-1");
    expect(email.message.text).toContain("Job status: https://mp3.example.com/jobs/job-1");
  });

  test("contains a curl command with the token header", () => {
    expect(email.message.text).toContain(
      `  curl -H "Authorization: Bearer $TOKEN" -o talk.mp3 \\\n  "${link}"\n`,
    );
  });

  test("text lines fit the 7bit limit", () => {
    for (const line of (email.message.text ?? "").split("\n")) {
      expect(line.length).toBeLessThanOrEqual(76);
    }
  });

  test("default links with a job id fit the 7bit limit", () => {
    const jobId = "8d3baace-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
    const message = readyMessage({ job_id: jobId, mp3_fid: jobId });
    const local = buildJobEmail(message, { ...SETTINGS, publicUrl: "http://localhost:18090" });
    for (const line of (local.message.text ?? "").split("\n")) {
      expect(line.length).toBeLessThanOrEqual(76);
    }
  });

  test("long status URL moves to its own line", () => {
    const longUrl = `https://mp3.example.com/${"very-long-path/".repeat(5)}`;
    const long = buildJobEmail(readyMessage(), { ...SETTINGS, publicUrl: longUrl });
    expect(long.message.text).toContain(`Job status:\n  ${longUrl}/jobs/job-1\n`);
  });

  test("has an HTML part with the link", () => {
    expect(email.message.html).toContain(`<a href="${link}">${link}</a>`);
    expect(email.message.html).toContain("<strong>talk.mp3</strong>");
  });

  test("has a Message-ID derived from the job", () => {
    expect(email.message.messageId).toBe("<job-1.ready@mp3converter>");
    expect(buildJobEmail(readyMessage(), SETTINGS).message.messageId).toBe(email.message.messageId);
  });

  test("is marked as automatically sent", () => {
    expect(email.message.headers?.["Auto-Submitted"]).toBe("auto-generated");
  });

  test("keeps a path prefix of the public URL", () => {
    const prefixed = buildJobEmail(readyMessage(), {
      ...SETTINGS,
      publicUrl: "https://example.com/mp3",
    });
    expect(prefixed.downloadUrl).toBe("https://example.com/mp3/download?fid=mp3-1");
  });
});

describe("failed email", () => {
  const email = buildJobEmail(failedMessage("no_audio", "the video has no audio track"), SETTINGS);

  test("names the video in the subject", () => {
    expect(email.outcome).toBe("failed");
    expect(email.message.subject).toBe("Your MP3 could not be made: talk.mp4");
  });

  test("states the reason and what to do", () => {
    expect(email.message.text).toContain("Reason: the video has no audio track");
    expect(email.message.text).toContain(
      "What to do: The video has no audio track. Upload a video that has sound.",
    );
    expect(email.message.text).toContain("Failure code: no_audio");
    expect(email.message.text).toContain("Job status: https://mp3.example.com/jobs/job-1");
  });

  test("has no download link", () => {
    expect(email.downloadUrl).toBeUndefined();
    expect(email.message.text).not.toContain("/download");
    expect(email.message.text).not.toContain("curl");
  });

  test("has a Message-ID apart from the ready one", () => {
    expect(email.message.messageId).toBe("<job-1.failed@mp3converter>");
  });

  test("wraps a long reason at spaces", () => {
    const reason = `the audio stream could not be decoded: ${"corrupt frame ".repeat(12)}`.trim();
    const wrapped = buildJobEmail(failedMessage("conversion_failed", reason), SETTINGS);
    const lines = (wrapped.message.text ?? "").split("\n");
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(76);
    expect(lines.join(" ")).toContain(`Reason: ${reason}`);
  });

  test("gives general advice for an unknown code", () => {
    const unknown = buildJobEmail(failedMessage("disk_on_fire", "it broke"), SETTINGS);
    expect(unknown.message.text?.replaceAll("\n", " ")).toContain(
      "What to do: Upload the video again. If it fails again, contact support with the job id.",
    );
  });

  test("escapes the failure message in HTML", () => {
    const html = buildJobEmail(failedMessage("conversion_failed", "<b>bad</b> & worse"), SETTINGS)
      .message.html;
    expect(html).toContain("Reason: &lt;b&gt;bad&lt;/b&gt; &amp; worse");
    expect(html).not.toContain("<b>bad</b>");
  });
});

describe("header injection", () => {
  test("strips CR and LF from the filename in the subject", () => {
    const email = buildJobEmail(
      readyMessage({ filename: "talk\r\nBcc: victim@example.com\r\n.mp4" }),
      SETTINGS,
    );
    expect(email.message.subject).toBe("Your MP3 is ready: talk Bcc: victim@example.com .mp3");
    expect(email.message.subject).not.toMatch(/[\r\n]/);
  });

  test("strips CR and LF from the failed subject", () => {
    const message = readyMessage({
      mp3_fid: null,
      filename: "a\nb\r.mov",
      failure: { code: "no_audio", message: "none" },
    });
    expect(buildJobEmail(message, SETTINGS).message.subject).toBe(
      "Your MP3 could not be made: a b .mov",
    );
  });

  test("rejects a username with a line break", () => {
    const message = readyMessage({ username: "alice@example.com\r\nBcc: victim@example.com" });
    expect(() => buildJobEmail(message, SETTINGS)).toThrow(InvalidRecipientError);
  });

  test("rejects a username with several addresses", () => {
    const message = readyMessage({ username: "alice@example.com,bob@example.com" });
    expect(() => buildJobEmail(message, SETTINGS)).toThrow(InvalidRecipientError);
  });

  test("rejects a username without a domain", () => {
    expect(() => buildJobEmail(readyMessage({ username: "alice@" }), SETTINGS)).toThrow(
      InvalidRecipientError,
    );
    expect(() => buildJobEmail(readyMessage({ username: "alice" }), SETTINGS)).toThrow(
      InvalidRecipientError,
    );
  });

  test("escapes the filename in HTML", () => {
    const html = buildJobEmail(readyMessage({ filename: "<img src=x>.mp4" }), SETTINGS).message
      .html;
    expect(html).toContain("&lt;img src=x&gt;.mp3");
    expect(html).not.toContain("<img");
  });

  test("quotes a filename with shell syntax in the curl command", () => {
    const text = buildJobEmail(readyMessage({ filename: "$(rm -rf ~).mp4" }), SETTINGS).message
      .text;
    expect(text).toContain("-o '$(rm -rf ~).mp3' ");
  });
});

describe("message without outcome", () => {
  test("throws for a null mp3_fid and no failure", () => {
    expect(() => buildJobEmail(readyMessage({ mp3_fid: null }), SETTINGS)).toThrow(
      IncompleteMessageError,
    );
  });
});

describe("filenames", () => {
  test.each([
    ["talk.mp4", "talk.mp4", "talk.mp3"],
    ["talk.MP3", "talk.MP3", "talk.mp3"],
    ["recording", "recording", "recording.mp3"],
    ["C:\\Users\\alice\\talk.mov", "talk.mov", "talk.mp3"],
    ["../../etc/passwd", "passwd", "passwd.mp3"],
    ["", "video", "video.mp3"],
    ["..", "video", "video.mp3"],
    [".hidden", ".hidden", ".hidden.mp3"],
    ["my   talk\t.mp4", "my talk .mp4", "my talk .mp3"],
    ["evil\u202Egpj.exe", "evilgpj.exe", "evilgpj.mp3"],
    ["nul\u0000byte.mp4", "nulbyte.mp4", "nulbyte.mp3"],
  ])("%j shows as %j and converts to %j", (input, shown, mp3) => {
    expect(displayFilenameOf(input)).toBe(shown);
    expect(mp3FilenameOf(input)).toBe(mp3);
  });

  test("shortens long names and keeps the suffix", () => {
    const shown = displayFilenameOf(`${"a".repeat(300)}.mp4`);
    expect(Array.from(shown)).toHaveLength(100);
    expect(shown.endsWith("….mp4")).toBe(true);
  });
});

describe("shellQuote", () => {
  test.each([
    ["talk.mp3", "talk.mp3"],
    ["my talk.mp3", '"my talk.mp3"'],
    ["it's.mp3", `"it's.mp3"`],
    ["$HOME.mp3", "'$HOME.mp3'"],
    ["`id`.mp3", "'`id`.mp3'"],
    ["it's $x", `'it'\\''s $x'`],
    ["https://x.test/download?fid=1&a=b", '"https://x.test/download?fid=1&a=b"'],
  ])("%j becomes %j", (input, quoted) => {
    expect(shellQuote(input)).toBe(quoted);
  });
});
