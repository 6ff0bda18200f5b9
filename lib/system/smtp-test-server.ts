/**
 * A real SMTP server for tests: smtp-server on an ephemeral port of 127.0.0.1, STARTTLS with a
 * certificate made for the run (smtp-server's built-in certificate has expired), one account,
 * and every received message parsed with mailparser.
 */
import { type ParsedMail, simpleParser } from "mailparser";
import { generate } from "selfsigned";
import { SMTPServer } from "smtp-server";

/** One message with the SMTP session it arrived in. */
export interface TestSmtpDelivery {
  /** Whether the session was encrypted, by STARTTLS or implicit TLS. */
  secure: boolean;
  /** The authenticated user, as `onAuth` accepted it. */
  user: unknown;
  /** Envelope recipients (RCPT TO). */
  recipients: string[];
  mail: ParsedMail;
}

export interface TestSmtpServer {
  port: number;
  /** PEM certificate of the server, for the client's CA option. */
  certificate: string;
  username: string;
  password: string;
  received: ParsedMail[];
  /** The same messages as `received`, with their sessions. */
  deliveries: TestSmtpDelivery[];
  close(): Promise<void>;
}

/** Starts the server; the password is random per run. */
export async function startTestSmtpServer(): Promise<TestSmtpServer> {
  const pems = await generate([{ name: "commonName", value: "localhost" }], {
    keySize: 2048,
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: false },
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
        ],
      },
    ],
  });
  const username = "mailer";
  const password = `smtp-${crypto.randomUUID()}`;
  const received: ParsedMail[] = [];
  const deliveries: TestSmtpDelivery[] = [];
  const server = new SMTPServer({
    key: pems.private,
    cert: pems.cert,
    authMethods: ["PLAIN", "LOGIN"],
    disabledCommands: [],
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === username && auth.password === password) {
        callback(null, { user: username });
      } else {
        callback(new Error("Invalid username or password"));
      }
    },
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          received.push(mail);
          deliveries.push({
            secure: session.secure,
            user: session.user,
            recipients: session.envelope.rcptTo.map((recipient) => recipient.address),
            mail,
          });
          callback();
        })
        .catch((error: Error) => callback(error));
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.server.address();
      if (address && typeof address === "object") resolve(address.port);
      else reject(new Error("SMTP server has no port"));
    });
  });
  return {
    port,
    certificate: pems.cert,
    username,
    password,
    received,
    deliveries,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
