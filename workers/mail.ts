import { UnrecoverableError } from "bullmq";
import { and, eq, sql } from "drizzle-orm";
import { mailMessages } from "../db/schema";
import { dispatchMail, staleQueuedMail } from "../server/mail/outbox";
import { defineProcessor, isFinalAttempt } from "./base";

const SWEEP_EVERY_MS = 60_000;
const STALE_AFTER_MS = 2 * 60_000;
const REDACTED = "[body removed after delivery: it carried a credential]";

export const mailProcessor = defineProcessor({
  queue: "mail",
  schedules: [{ id: "mail-sweep", every: SWEEP_EVERY_MS, name: "sweep", data: {} }],
  handlers: {
    async send({ messageId }, ctx) {
      const [message] = await ctx.db.select().from(mailMessages).where(eq(mailMessages.id, messageId));
      if (!message) throw new UnrecoverableError(`mail message ${messageId} does not exist`);
      // Delivered already (a duplicate job or a sweep re-enqueue): nothing to do.
      if (message.status !== "queued") return { status: message.status };
      try {
        await ctx.mailer.send({ id: message.id, to: message.to, subject: message.subject, text: message.text, html: message.html, attachments: message.attachments });
      } catch (error) {
        const final = isFinalAttempt(ctx.job);
        await ctx.db
          .update(mailMessages)
          .set({
            attempts: sql`${mailMessages.attempts} + 1`,
            lastError: String((error as Error).message).slice(0, 500),
            status: final ? "failed" : "queued",
            ...(final && message.sensitive ? { text: REDACTED } : {}),
          })
          .where(eq(mailMessages.id, messageId));
        throw error;
      }
      await ctx.db
        .update(mailMessages)
        .set({ status: "sent", sentAt: new Date(), attempts: sql`${mailMessages.attempts} + 1`, lastError: null, ...(message.sensitive ? { text: REDACTED } : {}) })
        .where(and(eq(mailMessages.id, messageId), eq(mailMessages.status, "queued")));
      ctx.log.info("mail sent", { messageId, kind: message.kind, transport: ctx.mailer.kind });
      return { status: "sent" };
    },

    async sweep(_payload, ctx) {
      let requeued = 0;
      for (let after: string | null = null; ; ) {
        const ids = await staleQueuedMail(ctx.db, STALE_AFTER_MS, after);
        for (const id of ids) await dispatchMail(ctx.queues, id);
        requeued += ids.length;
        if (ids.length < 500) break;
        after = ids.at(-1)!;
      }
      return { requeued };
    },
  },
});
