import { and, asc, desc, eq, ne } from "drizzle-orm";
import type { Database } from "../../db/client";
import { invoiceLines, invoices, type invoiceStatus } from "../../db/schema";
import { AppError } from "../errors";
import { after, cursorTime, decodeCursor, page } from "../pagination";

export type Invoice = typeof invoices.$inferSelect;
export type InvoiceLine = typeof invoiceLines.$inferSelect;
export type InvoiceStatus = (typeof invoiceStatus.enumValues)[number];

/**
 * Invoice states move forward only. An open invoice is paid, voided, or given
 * up on (uncollectible); a customer may still pay an uncollectible one. Paid
 * and void are final: a refund is recorded on the invoice and its payment,
 * it does not reopen it.
 */
const INVOICE_TRANSITIONS: Record<InvoiceStatus, readonly InvoiceStatus[]> = {
  draft: ["open", "paid", "void"],
  open: ["paid", "void", "uncollectible"],
  uncollectible: ["paid", "void"],
  paid: [],
  void: [],
  // Settled by the invoice that brings its total in.
  carried_forward: [],
};

export function canMoveInvoice(from: InvoiceStatus, to: InvoiceStatus): boolean {
  return INVOICE_TRANSITIONS[from].includes(to);
}

/** Statuses a customer can pay from. */
export const PAYABLE: readonly InvoiceStatus[] = ["open", "uncollectible"];

/** The owner's invoice; drafts are the platform's business and do not exist for the customer. */
export async function findInvoice(db: Database, ownerId: string | null, invoiceId: string): Promise<Invoice> {
  const [invoice] = await db.select().from(invoices).where(eq(invoices.id, invoiceId));
  if (!invoice || (ownerId !== null && (invoice.userId !== ownerId || invoice.status === "draft"))) {
    throw new AppError("NOT_FOUND", "No such invoice", { details: { invoiceId } });
  }
  return invoice;
}

export async function invoiceWithLines(db: Database, ownerId: string | null, invoiceId: string) {
  const invoice = await findInvoice(db, ownerId, invoiceId);
  const lines = await db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, invoice.id)).orderBy(asc(invoiceLines.position));
  return { invoice, lines };
}

export async function getInvoice(db: Database, ownerId: string, invoiceId: string) {
  const { invoice, lines } = await invoiceWithLines(db, ownerId, invoiceId);
  return { ...invoiceView(invoice), lines: lines.map(lineView) };
}

/** The owner's invoices, newest first, a page at a time. */
export async function listInvoices(db: Database, ownerId: string, opts: { cursor?: string | undefined; limit?: number | undefined }) {
  const limit = opts.limit ?? 20;
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const rows = await db
    .select({ invoice: invoices, id: invoices.id, cursorAt: cursorTime(invoices.createdAt) })
    .from(invoices)
    .where(and(eq(invoices.userId, ownerId), ne(invoices.status, "draft"), cursor ? after(invoices.createdAt, invoices.id, cursor) : undefined))
    .orderBy(desc(invoices.createdAt), desc(invoices.id))
    .limit(limit + 1);
  return page(rows, limit, (row) => invoiceView(row.invoice));
}

export function invoiceView(invoice: Invoice) {
  return {
    id: invoice.id,
    number: invoice.number,
    period: invoice.period,
    periodStart: invoice.periodStart.toISOString(),
    periodEnd: invoice.periodEnd.toISOString(),
    status: invoice.status,
    currency: invoice.currency,
    subtotalMinor: invoice.subtotalMinor,
    discountMinor: invoice.discountMinor,
    creditMinor: invoice.creditMinor,
    taxRateBps: invoice.taxRateBps,
    taxMinor: invoice.taxMinor,
    /** Earlier carried-forward invoices brought into this total (docs/billing.md, "Minimum charge"). */
    carriedInMinor: invoice.carriedInMinor,
    totalMinor: invoice.totalMinor,
    amountPaidMinor: invoice.amountPaidMinor,
    amountRefundedMinor: invoice.amountRefundedMinor,
    amountDueMinor: PAYABLE.includes(invoice.status) ? invoice.totalMinor - invoice.amountPaidMinor : 0,
    createdAt: invoice.createdAt.toISOString(),
    finalizedAt: invoice.finalizedAt?.toISOString() ?? null,
    paidAt: invoice.paidAt?.toISOString() ?? null,
    voidedAt: invoice.voidedAt?.toISOString() ?? null,
    /** For a carried-forward invoice: the invoice its total went into, once there is one. */
    carriedIntoInvoiceId: invoice.carriedIntoInvoiceId,
  };
}

export function lineView(line: InvoiceLine) {
  return {
    kind: line.kind,
    instanceId: line.instanceId,
    description: line.description,
    quantity: line.quantity,
    unit: line.unit,
    unitPriceMinor: line.unitPriceMinor,
    amountMinor: line.amountMinor,
    details: line.details,
  };
}
