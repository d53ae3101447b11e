import { and, asc, eq, gt, inArray, lt } from "drizzle-orm";
import type { Database } from "../../db/client";
import { invoices } from "../../db/schema";
import type { Config } from "../config";
import { AppError } from "../errors";

const DAY_MS = 86_400_000;

/**
 * Dunning's consequence, checked where instances are created: an invoice
 * still unpaid DUNNING_BLOCK_AFTER_DAYS after it was issued refuses new
 * instances (PAYMENT_OVERDUE, 402) until it is paid. Running instances are
 * left alone: cutting off a customer's service is an operator's decision
 * (suspension), not an automatic one. DUNNING_BLOCK_AFTER_DAYS=0 turns it off.
 */
export async function assertNoOverdueInvoices(db: Database, config: Config, userId: string, now = new Date()): Promise<void> {
  const days = config.dunning.blockAfterDays;
  if (days === 0) return;
  const [overdue] = await db
    .select({ id: invoices.id, number: invoices.number, finalizedAt: invoices.finalizedAt })
    .from(invoices)
    .where(
      and(
        eq(invoices.userId, userId),
        inArray(invoices.status, ["open", "uncollectible"]),
        gt(invoices.totalMinor, invoices.amountPaidMinor),
        lt(invoices.finalizedAt, new Date(now.getTime() - days * DAY_MS)),
      ),
    )
    .orderBy(asc(invoices.finalizedAt))
    .limit(1);
  if (!overdue) return;
  throw new AppError("PAYMENT_OVERDUE", `Invoice ${overdue.number} has been unpaid for more than ${days} days: pay it to create new instances`, {
    details: { invoiceId: overdue.id, invoiceNumber: overdue.number, refusedSince: new Date(overdue.finalizedAt!.getTime() + days * DAY_MS).toISOString() },
  });
}
