import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AddressInfo } from "node:net";
import { simpleParser } from "mailparser";
import selfsigned from "selfsigned";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import { createLogger } from "../log.ts";
import { MailConfigurationError, type Mailer } from "../ports/mail.ts";
import { openMailer } from "./mail.ts";
import { parseSmtpUrl } from "./smtp-mailer.ts";

const USER = "mailer";
const PASSWORD = "p@ss:w/rd%25 ä";
const userInfo = `${USER}:${encodeURIComponent(PASSWORD)}`;

/** What a test server received. */
interface Received {
  raw: Buffer;
  secure: boolean;
  user: unknown;
}

interface TestServer {
  port: number;
  received: Received[];
  authAttempts: number;
  close(): Promise<void>;
}

/** Lines the mailer logged, to check that no password appears in them. */
const logLines: string[] = [];
const logger = createLogger({
  service: "mail-smtp-test",
  level: "debug",
  destination: { write: (line: string) => logLines.push(line) },
});

let certificate: string;
let privateKey: string;
let starttlsServer: TestServer;
let implicitTlsServer: TestServer;
let plainServer: TestServer;

/** Starts a real SMTP server on an ephemeral port of 127.0.0.1 with the test certificate. */
async function startServer(options: SMTPServerOptions): Promise<TestServer> {
  const state = { received: [] as Received[], authAttempts: 0 };
  const server = new SMTPServer({
    key: privateKey,
    cert: certificate,
    logger: false,
    authMethods: ["PLAIN", "LOGIN"],
    onAuth(auth, _session, callback) {
      state.authAttempts++;
      if (auth.username === USER && auth.password === PASSWORD) {
        callback(null, { user: USER });
      } else {
        callback(new Error("Invalid username or password"));
      }
    },
    onData(stream, session, callback) {
      const parts: Buffer[] = [];
      stream.on("data", (part: Buffer) => parts.push(part));
      stream.on("end", () => {
        state.received.push({
          raw: Buffer.concat(parts),
          secure: session.secure,
          user: session.user,
        });
        callback();
      });
    },
    ...options,
  });
  // Clients that drop the connection during a failed TLS handshake raise errors here.
  server.on("error", () => {});
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    get received() {
      return state.received;
    },
    get authAttempts() {
      return state.authAttempts;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

beforeAll(async () => {
  // smtp-server's built-in certificate has expired, so the tests make their own.
  const pems = await selfsigned.generate([{ name: "commonName", value: "localhost" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [
      {
        name: "subjectAltName",
        altNames: [
          { type: 7, ip: "127.0.0.1" },
          { type: 2, value: "localhost" },
        ],
      },
    ],
  });
  certificate = pems.cert;
  privateKey = pems.private;
  starttlsServer = await startServer({});
  implicitTlsServer = await startServer({ secure: true });
  plainServer = await startServer({ disabledCommands: ["STARTTLS"], allowInsecureAuth: true });
});

afterAll(async () => {
  await Promise.all([starttlsServer.close(), implicitTlsServer.close(), plainServer.close()]);
});

function message(id: string) {
  return {
    from: "mp3converter <no-reply@mp3converter.local>",
    to: "alice@example.com",
    subject: `Your MP3 ${id} is ready`,
    text: `Download it at http://localhost:8080/download?fid=${id}\n`,
    messageId: `<${id}@mp3converter>`,
  };
}

async function expectConfigurationError(
  promise: Promise<unknown>,
): Promise<MailConfigurationError> {
  const error = await promise.then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(MailConfigurationError);
  return error as MailConfigurationError;
}

/** Sends one message and checks what the server received, parsed back with mailparser. */
async function expectDelivery(mailer: Mailer, server: TestServer, id: string) {
  const before = server.received.length;
  const sent = await mailer.send(message(id));
  expect(sent.messageId).toBe(`<${id}@mp3converter>`);
  expect(sent.path).toBeUndefined();
  // The server stores the message before it replies 250, so it is there once send resolves.
  expect(server.received.length).toBe(before + 1);

  const received = server.received[before];
  expect(received?.secure).toBe(true);
  expect(received?.user).toBe(USER);
  const parsed = await simpleParser(received?.raw ?? Buffer.alloc(0));
  expect(parsed.messageId).toBe(`<${id}@mp3converter>`);
  expect(parsed.subject).toBe(`Your MP3 ${id} is ready`);
  expect(parsed.text).toBe(`Download it at http://localhost:8080/download?fid=${id}\n`);
  const to = Array.isArray(parsed.to) ? parsed.to[0] : parsed.to;
  expect(to?.value[0]?.address).toBe("alice@example.com");
}

describe("SMTP mailer", () => {
  test("delivers over STARTTLS", async () => {
    const url = `smtp://${userInfo}@127.0.0.1:${starttlsServer.port}`;
    const mailer = await openMailer(url, { logger, tls: { ca: certificate } });
    try {
      await mailer.verify();
      await expectDelivery(mailer, starttlsServer, "job-starttls");
      await expectDelivery(mailer, starttlsServer, "job-starttls-2");
    } finally {
      await mailer.close();
    }
  });

  test("delivers over implicit TLS", async () => {
    const url = `smtps://${userInfo}@127.0.0.1:${implicitTlsServer.port}`;
    const mailer = await openMailer(url, { logger, tls: { ca: certificate } });
    try {
      await mailer.verify();
      await expectDelivery(mailer, implicitTlsServer, "job-implicit");
    } finally {
      await mailer.close();
    }
  });

  test("wrong password is a configuration error", async () => {
    const url = `smtp://${USER}:wrong@127.0.0.1:${starttlsServer.port}`;
    const mailer = await openMailer(url, { logger, tls: { ca: certificate } });
    const before = starttlsServer.received.length;
    try {
      const error = await expectConfigurationError(mailer.verify());
      expect(error.code).toBe("EAUTH");
      expect(error.responseCode).toBe(535);
      expect(error.command).toStartWith("AUTH");
      expect(error.message).toContain("authentication failed");
      expect(error.message).not.toContain("wrong");

      const sendError = await expectConfigurationError(mailer.send(message("job-denied")));
      expect(sendError.code).toBe("EAUTH");
      expect(starttlsServer.received.length).toBe(before);
    } finally {
      await mailer.close();
    }
  });

  test("missing STARTTLS is a configuration error", async () => {
    const url = `smtp://${userInfo}@127.0.0.1:${plainServer.port}`;
    const mailer = await openMailer(url, { logger, tls: { ca: certificate } });
    try {
      const error = await expectConfigurationError(mailer.verify());
      expect(error.code).toBe("ETLS");
      expect(error.command).toBe("STARTTLS");
      expect(error.message).toContain("does not offer STARTTLS");
      // The password never went over the unencrypted connection.
      expect(plainServer.authAttempts).toBe(0);
    } finally {
      await mailer.close();
    }
  });

  test("untrusted certificate is a configuration error", async () => {
    const urls = [
      `smtp://${userInfo}@127.0.0.1:${starttlsServer.port}`,
      `smtps://${userInfo}@127.0.0.1:${implicitTlsServer.port}`,
    ];
    for (const url of urls) {
      // No `tls.ca`: the self-signed test certificate is not among the default roots.
      const mailer = await openMailer(url, { logger });
      try {
        const error = await expectConfigurationError(mailer.verify());
        expect(error.message).toContain("certificate failed verification");
      } finally {
        await mailer.close();
      }
    }
  });

  test("smtps: on a STARTTLS port is a configuration error", async () => {
    const url = `smtps://${userInfo}@127.0.0.1:${starttlsServer.port}`;
    const mailer = await openMailer(url, { logger, tls: { ca: certificate } });
    try {
      const error = await expectConfigurationError(mailer.verify());
      expect(error.message).toContain("did not start TLS");
    } finally {
      await mailer.close();
    }
  });

  test("refused connection stays transient", async () => {
    const closed = await startServer({});
    const port = closed.port;
    await closed.close();
    const mailer = await openMailer(`smtp://${userInfo}@127.0.0.1:${port}`, { logger });
    try {
      const error = await mailer.verify().then(
        () => null,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(Error);
      expect(error).not.toBeInstanceOf(MailConfigurationError);
      expect((error as { code?: string }).code).toBe("ESOCKET");
    } finally {
      await mailer.close();
    }
  });

  test("logs never contain the password", () => {
    // Runs after the tests above, which logged successes and failures.
    expect(logLines.length).toBeGreaterThan(0);
    const all = logLines.join("");
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain(encodeURIComponent(PASSWORD));
  });
});

describe("parseSmtpUrl", () => {
  test("smtp: defaults to port 587 with STARTTLS", () => {
    expect(parseSmtpUrl("smtp://u:p@mail.example.com")).toEqual({
      host: "mail.example.com",
      port: 587,
      secure: false,
      user: "u",
      password: "p",
    });
  });

  test("smtps: defaults to port 465 with implicit TLS", () => {
    const settings = parseSmtpUrl("smtps://u:p@mail.example.com");
    expect(settings.port).toBe(465);
    expect(settings.secure).toBe(true);
  });

  test("credentials are URL-decoded", () => {
    const settings = parseSmtpUrl(`smtp://${userInfo}@mail.example.com:2525`);
    expect(settings.user).toBe(USER);
    expect(settings.password).toBe(PASSWORD);
    expect(settings.port).toBe(2525);
  });

  test("no credentials means no authentication", () => {
    const settings = parseSmtpUrl("smtp://relay.internal:25");
    expect(settings.user).toBeUndefined();
    expect(settings.password).toBeUndefined();
  });

  test("IPv6 host loses its brackets", () => {
    expect(parseSmtpUrl("smtp://[::1]:587").host).toBe("::1");
  });

  test("invalid URL errors do not echo it", () => {
    expect(() => parseSmtpUrl("smtp://u:secret@")).toThrow("not a valid URL");
    expect(() => parseSmtpUrl("smtp://u:secret@")).not.toThrow("secret");
  });
});
