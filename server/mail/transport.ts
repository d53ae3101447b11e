import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import type Mail from "nodemailer/lib/mailer";
import type { MailAttachment } from "../../db/schema";

export type OutgoingMail = { id: string; to: string; subject: string; text: string; html?: string | null; attachments?: MailAttachment[] | null };
export type MailTransport = {
  kind: "smtp" | "file";
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
};

/**
 * SMTP when `SMTP_URL` is set; otherwise each message is written as an .eml
 * file under the data folder, so development needs no mail server and a
 * developer can open what would have been sent.
 */
export function createMailTransport(opts: { smtpUrl?: string | undefined; from: string; dir: string }): MailTransport {
  if (opts.smtpUrl) {
    const transporter = nodemailer.createTransport(opts.smtpUrl);
    return {
      kind: "smtp",
      async send(mail) {
        await transporter.sendMail(message(opts.from, mail));
      },
      close: () => transporter.close(),
    };
  }
  const renderer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    kind: "file",
    async send(mail) {
      const info = await renderer.sendMail(message(opts.from, mail));
      await mkdir(opts.dir, { recursive: true });
      await writeFile(join(opts.dir, `${mail.id}.eml`), info.message as Buffer);
    },
    close: () => renderer.close(),
  };
}

function message(from: string, mail: OutgoingMail): Mail.Options {
  return {
    from,
    to: mail.to,
    subject: mail.subject,
    text: mail.text,
    ...(mail.html ? { html: mail.html } : {}),
    ...(mail.attachments?.length ? { attachments: mail.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: Buffer.from(a.contentBase64, "base64") })) } : {}),
    messageId: `<${mail.id}@sahary>`,
  };
}
