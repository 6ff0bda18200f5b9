/**
 * Builds the email for an `mp3` queue message: "your MP3 is ready" with the download link and a
 * curl command, or "your MP3 could not be made" with the reason and what to do. Pure functions,
 * so the text can be tested without a broker or a mail server.
 */
import type { Failure, Mp3Message } from "@mp3converter/lib/messages";
import type { MailMessage } from "@mp3converter/lib/ports/mail";

export interface EmailSettings {
  /** `From` header value. */
  from: string;
  /** Base URL of the gateway, without a trailing slash. */
  publicUrl: string;
}

export type EmailOutcome = "ready" | "failed";

/** The email for one job, with the link the embedded mode logs. */
export interface JobEmail {
  outcome: EmailOutcome;
  message: MailMessage;
  /** Download link of the MP3, absent for a failed job. */
  downloadUrl?: string;
}

/** Raised for a `username` that cannot be used as a recipient address. */
export class InvalidRecipientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidRecipientError";
  }
}

/** Raised for a message that has neither an MP3 nor a failure. */
export class IncompleteMessageError extends Error {
  constructor(jobId: string) {
    super(`message for job ${jobId} has mp3_fid null and no failure`);
    this.name = "IncompleteMessageError";
  }
}

/** Maximum length of a file name in a subject, in characters. Longer names keep their suffix. */
const MAX_SHOWN_FILENAME_LENGTH = 100;

/** Advice to the user for each failure code the converter reports. */
const FAILURE_ADVICE: Readonly<Record<string, string>> = {
  empty_file: "The uploaded file was empty. Upload the video again.",
  unsupported_format:
    "The file is not a video format the converter can read. Convert it to a common format " +
    "such as MP4, MKV, MOV or WebM and upload it again.",
  no_audio: "The video has no audio track. Upload a video that has sound.",
  no_decodable_audio:
    "The audio track of the video could not be decoded. Export the video again with a common " +
    "audio codec such as AAC or MP3 and upload it again.",
  truncated: "The file ends early, probably because it was cut off. Upload the complete file.",
  too_long: "The video is longer than the converter accepts. Split it into shorter parts.",
  timed_out:
    "The conversion took longer than the converter allows. Upload a shorter video, or try " +
    "again later.",
  resource_limit:
    "The conversion needed more resources than the converter allows. Upload a shorter or " +
    "smaller video.",
  conversion_failed: "Upload the video again. If it fails again, contact support with the job id.",
  processing_failed:
    "The converter failed repeatedly on this job. Try again later, and contact support with the " +
    "job id if it keeps failing.",
};

const DEFAULT_ADVICE =
  "Upload the video again. If it fails again, contact support with the job id.";

/**
 * Builds the ready or failed email for `message`. Throws `InvalidRecipientError` or
 * `IncompleteMessageError` for a message that no retry can turn into an email.
 */
export function buildJobEmail(message: Mp3Message, settings: EmailSettings): JobEmail {
  const to = checkRecipient(message.username);
  if (message.failure) return buildFailedEmail(message, message.failure, to, settings);
  if (message.mp3_fid === null) throw new IncompleteMessageError(message.job_id);
  return buildReadyEmail(message, message.mp3_fid, to, settings);
}

/** Returns the Message-ID of a job's email, which depends only on the job id and the outcome. */
export function jobMessageId(jobId: string, outcome: EmailOutcome): string {
  return `<${jobId}.${outcome}@mp3converter>`;
}

function buildReadyEmail(
  message: Mp3Message,
  mp3Fid: string,
  to: string,
  settings: EmailSettings,
): JobEmail {
  const mp3Name = mp3FilenameOf(message.filename);
  const downloadUrl = `${settings.publicUrl}/download?fid=${encodeURIComponent(mp3Fid)}`;
  const statusUrl = jobStatusUrl(settings.publicUrl, message.job_id);
  const quotedName = shellQuote(mp3Name);
  const curl = `curl -H "Authorization: Bearer $TOKEN" -o ${quotedName} ${shellQuote(downloadUrl)}`;

  const text = [
    "Hello,",
    "",
    ...wrapLine(`your MP3 ${mp3Name} is ready.`),
    "",
    "Download it from this link, sending your login token as a Bearer token:",
    `  ${downloadUrl}`,
    "",
    "With curl, where TOKEN is the token that POST /login returned:",
    `  curl -H "Authorization: Bearer $TOKEN" -o ${quotedName} \\`,
    // Indented like the command, so that the default link with a job id fits in 76 characters.
    `  ${shellQuote(downloadUrl)}`,
    "",
    ...labelledLine("Job status:", statusUrl),
    `Job id: ${message.job_id}`,
    `MP3 id: ${mp3Fid}`,
    "",
    "-- ",
    "mp3converter",
    "",
  ].join("\n");

  const html = htmlDocument([
    "<p>Hello,</p>",
    `<p>your MP3 <strong>${escapeHtml(mp3Name)}</strong> is ready.</p>`,
    "<p>Download it from this link, sending your login token as a Bearer token:<br>",
    `<a href="${escapeHtml(downloadUrl)}">${escapeHtml(downloadUrl)}</a></p>`,
    "<p>With curl, where TOKEN is the token that POST /login returned:</p>",
    `<pre><code>${escapeHtml(curl)}</code></pre>`,
    `<p>Job status: <a href="${escapeHtml(statusUrl)}">${escapeHtml(statusUrl)}</a><br>`,
    `Job id: ${escapeHtml(message.job_id)}<br>`,
    `MP3 id: ${escapeHtml(mp3Fid)}</p>`,
  ]);

  return {
    outcome: "ready",
    downloadUrl,
    message: {
      from: settings.from,
      to,
      subject: `Your MP3 is ready: ${mp3Name}`,
      text,
      html,
      messageId: jobMessageId(message.job_id, "ready"),
      headers: AUTOMATIC_MAIL_HEADERS,
    },
  };
}

function buildFailedEmail(
  message: Mp3Message,
  failure: Failure,
  to: string,
  settings: EmailSettings,
): JobEmail {
  const videoName = displayFilenameOf(message.filename);
  const advice = FAILURE_ADVICE[failure.code] ?? DEFAULT_ADVICE;
  const statusUrl = jobStatusUrl(settings.publicUrl, message.job_id);

  const text = [
    "Hello,",
    "",
    ...wrapLine(`your video ${videoName} could not be converted to an MP3.`),
    "",
    ...wrapLine(`Reason: ${failure.message}`),
    "",
    ...wrapLine(`What to do: ${advice}`),
    "",
    ...labelledLine("Job status:", statusUrl),
    `Job id: ${message.job_id}`,
    `Failure code: ${failure.code}`,
    "",
    "-- ",
    "mp3converter",
    "",
  ].join("\n");

  const html = htmlDocument([
    "<p>Hello,</p>",
    `<p>your video <strong>${escapeHtml(videoName)}</strong> could not be converted to an MP3.</p>`,
    `<p>Reason: ${escapeHtml(failure.message)}</p>`,
    `<p>What to do: ${escapeHtml(advice)}</p>`,
    `<p>Job status: <a href="${escapeHtml(statusUrl)}">${escapeHtml(statusUrl)}</a><br>`,
    `Job id: ${escapeHtml(message.job_id)}<br>`,
    `Failure code: ${escapeHtml(failure.code)}</p>`,
  ]);

  return {
    outcome: "failed",
    message: {
      from: settings.from,
      to,
      subject: `Your MP3 could not be made: ${videoName}`,
      text,
      html,
      messageId: jobMessageId(message.job_id, "failed"),
      headers: AUTOMATIC_MAIL_HEADERS,
    },
  };
}

/**
 * Maximum line length of the text part. nodemailer sends an ASCII text part whose lines all fit
 * as 7bit, which reads as is in an outbox file, and switches to quoted-printable otherwise.
 */
const TEXT_LINE_MAX = 76;

/** Splits `line` at spaces into lines of at most TEXT_LINE_MAX characters; a longer word stays whole. */
function wrapLine(line: string): string[] {
  const lines: string[] = [];
  let current = "";
  for (const word of line.split(" ")) {
    if (current !== "" && current.length + 1 + word.length > TEXT_LINE_MAX) {
      lines.push(current);
      current = word;
    } else {
      current = current === "" ? word : `${current} ${word}`;
    }
  }
  lines.push(current);
  return lines;
}

/** Returns `label value` as one line when it fits, else the value indented on the next line. */
function labelledLine(label: string, value: string): string[] {
  const line = `${label} ${value}`;
  return line.length <= TEXT_LINE_MAX ? [line] : [label, `  ${value}`];
}

/** Marks the email as machine-sent (RFC 3834), so auto-responders do not reply to it. */
const AUTOMATIC_MAIL_HEADERS: Readonly<Record<string, string>> = {
  "Auto-Submitted": "auto-generated",
};

function jobStatusUrl(publicUrl: string, jobId: string): string {
  return `${publicUrl}/jobs/${encodeURIComponent(jobId)}`;
}

/** Accepts one address on one line, because a line break would let the value inject headers. */
function checkRecipient(username: string): string {
  const address = username.trim();
  const at = address.lastIndexOf("@");
  if (/[\s\p{Cc}\p{Cf}<>,;"]/u.test(address) || at <= 0 || at === address.length - 1) {
    throw new InvalidRecipientError(
      "message field /username is not a single email address; the gateway must send the " +
        "user's email address",
    );
  }
  return address;
}

/**
 * Returns the name to show for an uploaded file: its last path segment, shortened when long.
 * Each run of white space (CR and LF included) becomes one space, and control and invisible
 * formatting characters are dropped. So no line break reaches a header, and no bidi override
 * can disguise the suffix.
 */
export function displayFilenameOf(filename: string): string {
  const lastSegment = filename.split(/[/\\]/).pop() ?? "";
  const cleaned = lastSegment
    .replace(/\s+/g, " ")
    .replace(/[\p{Cc}\p{Cf}]/gu, "")
    .trim();
  if (cleaned === "" || cleaned === "." || cleaned === "..") return "video";
  return shorten(cleaned, MAX_SHOWN_FILENAME_LENGTH);
}

/** Returns the MP3 name for an uploaded file: its display name with the suffix `.mp3`. */
export function mp3FilenameOf(filename: string): string {
  const shown = displayFilenameOf(filename);
  const dot = shown.lastIndexOf(".");
  const stem = dot > 0 ? shown.slice(0, dot) : shown;
  return `${stem}.mp3`;
}

function shorten(name: string, maxLength: number): string {
  const characters = Array.from(name);
  if (characters.length <= maxLength) return name;
  const dot = name.lastIndexOf(".");
  const suffix = dot > 0 && name.length - dot <= 10 ? name.slice(dot) : "";
  const keep = maxLength - Array.from(suffix).length - 1;
  return `${characters.slice(0, keep).join("")}…${suffix}`;
}

/**
 * Quotes `value` as one POSIX shell word: plain when it holds only safe characters, in double
 * quotes when nothing in it expands there, else in single quotes.
 */
export function shellQuote(value: string): string {
  if (/^[A-Za-z0-9_./-]+$/.test(value)) return value;
  if (!/["$`\\!\p{Cc}]/u.test(value)) return `"${value}"`;
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function escapeHtml(value: string): string {
  return value
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

function htmlDocument(paragraphs: readonly string[]): string {
  return [
    "<!doctype html>",
    '<html><head><meta charset="utf-8"></head><body>',
    ...paragraphs,
    "<p>-- <br>mp3converter</p>",
    "</body></html>",
    "",
  ].join("\n");
}
