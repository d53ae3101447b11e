import { boolean, index, integer, jsonb, pgEnum, pgTable, text } from "drizzle-orm/pg-core";
import { createdAt, id, timestamptz } from "./columns";

/** A file sent with a message. Small documents only (an invoice PDF is a few KiB), so they live in the row. */
export type MailAttachment = { filename: string; contentType: string; contentBase64: string };

export const mailStatus = pgEnum("mail_status", ["queued", "sent", "failed"]);

/**
 * The outbox: a message is written here (in the transaction that wants it sent)
 * before the mail job is enqueued, so a lost enqueue is retried, never lost.
 */
export const mailMessages = pgTable(
  "mail_messages",
  {
    id: id(),
    to: text("to").notNull(),
    subject: text("subject").notNull(),
    text: text("text").notNull(),
    /** The HTML alternative of `text`, self-contained (inline styles, no external assets). */
    html: text("html"),
    attachments: jsonb("attachments").$type<MailAttachment[]>(),
    kind: text("kind").notNull(),
    // Carries a live credential (verification or reset link): the body is
    // blanked once delivered, so the outbox does not undo hashing the token.
    sensitive: boolean("sensitive").notNull().default(false),
    status: mailStatus("status").notNull().default("queued"),
    attempts: integer("attempts").notNull().default(0),
    lastError: text("last_error"),
    createdAt: createdAt(),
    sentAt: timestamptz("sent_at"),
  },
  (t) => [index("mail_messages_status_idx").on(t.status, t.createdAt)],
);
