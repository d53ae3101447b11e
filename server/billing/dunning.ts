import { and, asc, gt, inArray, lte, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { dunningReminders, invoices } from "../../db/schema";
import type { Config } from "../config";
import { recordEvents, type NewEvent } from "../events/outbox";
import type { Logger } from "../log";

export type DunningDeps = { db: Database; config: Config; log: Logger };

const DAY_MS = 86_400_000;
// Invoices per transaction.
const BATCH = 500;

/**
 * Dunning: an invoice is due when it is issued; while it stays unpaid its
 * owner gets a reminder (`invoice.overdue`) as it passes each of
 * DUNNING_REMINDER_DAYS after issue. The check runs every
 * DUNNING_CHECK_INTERVAL_MS and is idempotent: each reminder is a row keyed
 * by (invoice, stage) written with its event, so a rerun, a second worker or
 * a late run sends nothing twice; a run that is days late sends only the
 * latest reminder due, not the ones it missed. The consequence after
 * DUNNING_BLOCK_AFTER_DAYS is enforced where instances are created
 * (compute/standing.ts).
 */
export async function runDunning(deps: DunningDeps, now = new Date()) {
  const { reminderDays, blockAfterDays } = deps.config.dunning;
  const first = reminderDays[0]!;
  const sent = sql<number>`coalesce((select max(${dunningReminders.stage}) from ${dunningReminders} where ${dunningReminders.invoiceId} = ${invoices.id}), 0)`.mapWith(Number);
  const unpaid = await deps.db
    .select({
      id: invoices.id,
      userId: invoices.userId,
      number: invoices.number,
      currency: invoices.currency,
      due: sql<number>`${invoices.totalMinor} - ${invoices.amountPaidMinor}`.mapWith(Number),
      finalizedAt: invoices.finalizedAt,
      sent,
    })
    .from(invoices)
    .where(and(inArray(invoices.status, ["open", "uncollectible"]), gt(invoices.totalMinor, invoices.amountPaidMinor), lte(invoices.finalizedAt, new Date(now.getTime() - first * DAY_MS))))
    .orderBy(asc(invoices.finalizedAt));

  const reminders = unpaid.flatMap((invoice) => {
    const days = Math.floor((now.getTime() - invoice.finalizedAt!.getTime()) / DAY_MS);
    const stage = reminderDays.filter((d) => d <= days).length;
    return stage > invoice.sent ? [{ invoice, days, stage }] : [];
  });

  let sentNow = 0;
  for (let i = 0; i < reminders.length; i += BATCH) {
    const batch = reminders.slice(i, i + BATCH);
    sentNow += await deps.db.transaction(async (tx) => {
      const written = await tx
        .insert(dunningReminders)
        .values(batch.map((r) => ({ invoiceId: r.invoice.id, stage: r.stage })))
        .onConflictDoNothing()
        .returning({ invoiceId: dunningReminders.invoiceId });
      const fresh = new Set(written.map((w) => w.invoiceId));
      const events: NewEvent[] = batch
        .filter((r) => fresh.has(r.invoice.id))
        .map(({ invoice, days, stage }) => ({
          type: "invoice.overdue",
          userId: invoice.userId,
          data: {
            invoiceId: invoice.id,
            invoiceNumber: invoice.number!,
            currency: invoice.currency,
            amountDueMinor: invoice.due,
            issuedAt: invoice.finalizedAt!.toISOString(),
            daysOverdue: days,
            reminder: stage,
            blocksNewInstancesAt: blockAfterDays > 0 ? new Date(invoice.finalizedAt!.getTime() + blockAfterDays * DAY_MS).toISOString() : null,
          },
        }));
      await recordEvents(tx, events);
      return events.length;
    });
  }
  if (sentNow) deps.log.info("dunning reminders recorded", { reminders: sentNow });
  return { unpaid: unpaid.length, reminded: sentNow };
}
