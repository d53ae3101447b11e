import type { Logger } from "../../server/log";
import type { AnyProcessor } from "../../workers/base";
import { startSmtpServer, type ReceivedMail } from "./smtp";
import { eventually, startTestServer, type TestServer } from "./server";

/**
 * Helpers for going through the real account flows (register, read the mail
 * the worker delivered over SMTP, verify, log in) rather than writing rows.
 */

let counter = 0;

/** A fresh, plausible address (unique per run). */
export function uniqueEmail(label = "user"): string {
  counter += 1;
  return `${label}${counter}-${crypto.randomUUID().slice(0, 8)}@example.test`;
}

/** A distinct client address per caller, for servers started with TRUST_PROXY=true. */
export function uniqueIp(): string {
  const n = Math.floor(Math.random() * 2 ** 24);
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

export const STRONG_PASSWORD = "sunlit-orchard-kettle-42";

/** The decoded text body of a single-part message (7bit, quoted-printable or base64). */
export function mailBody(mail: ReceivedMail): string {
  const split = mail.raw.search(/\r?\n\r?\n/);
  const head = mail.raw.slice(0, split);
  const body = mail.raw.slice(split).replace(/^\r?\n\r?\n/, "");
  const encoding = /^content-transfer-encoding:\s*(\S+)/im.exec(head)?.[1]?.toLowerCase();
  if (encoding === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  if (encoding === "quoted-printable") {
    return Buffer.from(
      body.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
      "latin1",
    ).toString("utf8");
  }
  return body;
}

export function mailSubject(mail: ReceivedMail): string {
  return /^subject:\s*(.*)$/im.exec(mail.raw)?.[1]?.trim() ?? "";
}

/** The token carried by a link `<page>#token=...` in the message. */
export function linkToken(mail: ReceivedMail, page: "verify-email" | "reset-password"): string {
  const match = new RegExp(`/${page}#token=([a-z2-7]+)`).exec(mailBody(mail));
  if (!match) throw new Error(`no ${page} link in message: ${mailBody(mail)}`);
  return match[1]!;
}

/** Waits until `count` messages have reached `address`; returns them in arrival order. */
export async function mailsTo(received: ReceivedMail[], address: string, count = 1): Promise<ReceivedMail[]> {
  return eventually(
    async () => received.filter((mail) => mail.to.includes(address)),
    (list) => list.length >= count,
    { what: `${count} message(s) to ${address}` },
  );
}

/** Waits until a message with `subject` has reached `address` (other mail may arrive around it); returns it. */
export async function mailWithSubject(received: ReceivedMail[], address: string, subject: string): Promise<ReceivedMail> {
  const list = await eventually(
    async () => received.filter((mail) => mail.to.includes(address) && mailSubject(mail) === subject),
    (found) => found.length > 0,
    { what: `a message "${subject}" to ${address}` },
  );
  return list[0]!;
}

/**
 * Waits until no mail job is waiting, so a test file leaves no work behind for
 * whatever process consumes the run's queues next. (Jobs already running are
 * finished by closing the workers.)
 */
export async function settleMail(app: TestServer): Promise<void> {
  await eventually(
    () => app.services.queues.queue("mail").getJobCounts("waiting", "prioritized"),
    (counts) => Object.values(counts).every((n) => n === 0),
    { what: "the mail queue to drain" },
  );
}

/** Registers through the API, verifies through the delivered link, logs in. */
export async function registerVerifiedUser(app: TestServer, received: ReceivedMail[], opts: { email?: string; password?: string; name?: string; ip?: string } = {}) {
  const email = opts.email ?? uniqueEmail();
  const password = opts.password ?? STRONG_PASSWORD;
  const anonymous = app.client({ headers: { "x-forwarded-for": opts.ip ?? uniqueIp() } });
  await anonymous.auth.register.mutate({ email, password, name: opts.name ?? "Ada Sun" });
  const [mail] = await mailsTo(received, email);
  await anonymous.auth.verifyEmail.mutate({ token: linkToken(mail!, "verify-email") });
  const session = await anonymous.auth.login.mutate({ email, password });
  return { email, password, token: session.token, user: session.user };
}

export type MailingServer = TestServer & { /** What the local SMTP server received. */ mail: ReceivedMail[] };

/**
 * The real app whose mail worker delivers to a real local SMTP server, with
 * TRUST_PROXY on so callers can come from distinct addresses (`uniqueIp`).
 * `close` lets queued mail go out first, then stops the app and the server.
 */
export async function startMailingServer(opts: { env?: Record<string, string>; workers?: boolean | AnyProcessor[]; log?: Logger } = {}): Promise<MailingServer> {
  const smtp = await startSmtpServer();
  const app = await startTestServer({ env: { SMTP_URL: smtp.url, TRUST_PROXY: "true", ...opts.env }, workers: opts.workers ?? true, log: opts.log });
  return {
    ...app,
    mail: smtp.received,
    async close() {
      await settleMail(app);
      await app.close();
      await smtp.close();
    },
  };
}
