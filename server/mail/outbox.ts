import { and, asc, eq, gt, lt } from "drizzle-orm";
import type { Database } from "../../db/client";
import { mailMessages, type MailAttachment } from "../../db/schema";
import { jobId, type Queues } from "../../workers/queues";

/**
 * `sensitive`: the body carries a live credential and is blanked once delivered.
 * `html`: an alternative to `text` for clients that show HTML (self-contained).
 */
export type NewMail = { to: string; subject: string; text: string; html?: string; attachments?: MailAttachment[]; kind: string; sensitive?: boolean };

/**
 * Writes a message to the outbox. Call inside the transaction whose outcome
 * the message reports, then `dispatchMail` after it commits.
 */
export async function queueMail(db: Database, mail: NewMail): Promise<string> {
  const [row] = await db.insert(mailMessages).values(mail).returning({ id: mailMessages.id });
  return row!.id;
}

/** Enqueues delivery; the stable job id makes a second dispatch a no-op. */
export async function dispatchMail(queues: Queues, messageId: string): Promise<void> {
  await queues.enqueue("mail", "send", { messageId }, { jobId: jobId("mail", messageId) });
}

/**
 * Outbox messages still queued after `olderThanMs` (their enqueue may have
 * been lost), a page at a time in id order: pass the last id of a page to get
 * the next. Every one must be seen, however many wait (a mail relay that was
 * down leaves thousands).
 */
export async function staleQueuedMail(db: Database, olderThanMs: number, afterId: string | null = null, limit = 500): Promise<string[]> {
  const rows = await db
    .select({ id: mailMessages.id })
    .from(mailMessages)
    .where(and(eq(mailMessages.status, "queued"), lt(mailMessages.createdAt, new Date(Date.now() - olderThanMs)), afterId ? gt(mailMessages.id, afterId) : undefined))
    .orderBy(asc(mailMessages.id))
    .limit(limit);
  return rows.map((row) => row.id);
}
