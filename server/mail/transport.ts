import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";

export type OutgoingMail = { id: string; to: string; subject: string; text: string };
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
        await transporter.sendMail({ from: opts.from, to: mail.to, subject: mail.subject, text: mail.text, messageId: `<${mail.id}@sahary>` });
      },
      close: () => transporter.close(),
    };
  }
  const renderer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    kind: "file",
    async send(mail) {
      const info = await renderer.sendMail({ from: opts.from, to: mail.to, subject: mail.subject, text: mail.text, messageId: `<${mail.id}@sahary>` });
      await mkdir(opts.dir, { recursive: true });
      await writeFile(join(opts.dir, `${mail.id}.eml`), info.message as Buffer);
    },
    close: () => renderer.close(),
  };
}
