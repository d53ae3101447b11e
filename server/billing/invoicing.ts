import { eq, sql, type AnyColumn } from "drizzle-orm";
import type { Database } from "../../db/client";
import { billingCounters, invoiceLines, invoices, usageRecords, volumeUsage } from "../../db/schema";
import { systemActor, type Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import type { RequestInfo } from "../trpc";
import { pgArray } from "./arrays";
import { METERING_SETTLE_MS, meterUsage, type MeteringDeps } from "./metering";
import { parsePeriod, type Period } from "./periods";
import { invoiceTotals, pricingRules, type LineDraft, type PricingRules } from "./pricing";
import { priceSegments, priceStorage, segmentUsage, storageUsage, type SegmentRow, type StorageRow } from "./segments";

export type InvoicingDeps = MeteringDeps;

export type InvoicingResult = {
  period: string;
  /** Customers with billable usage in the period that had no invoice yet. */
  customers: number;
  created: number;
  /** Of those, invoices whose total was zero and that were closed as paid at once. */
  settledAtZero: number;
  /** Instances whose plan is priced in another currency than BILLING_CURRENCY (left out, logged). */
  skippedInstances: number;
  durationMs: number;
};

// Customers per transaction: bounds the statement size (PostgreSQL takes at most 65,535 parameters) and lock time.
const BATCH = 500;
const LINE_CHUNK = 3000;
const INVOICE_COUNTER = "invoice";

/**
 * Invoices every customer who used anything in `period` (`YYYY-MM`, a month
 * that has ended). Safe to run any number of times, concurrently too: the
 * unique (customer, period) index makes a second invoice impossible, so a
 * rerun creates nothing and a run that stopped half-way completes the rest.
 *
 * First it closes metering at the period's end (time only, from the state
 * history), then aggregates the period's usage per instance in one query,
 * prices it, and writes invoices, their lines and their numbers a batch of
 * customers per transaction.
 */
export async function runInvoicing(deps: InvoicingDeps, input: { period: string; actor?: Actor; request?: RequestInfo | null }): Promise<InvoicingResult> {
  const started = performance.now();
  const period = parsePeriod(input.period);
  if (Date.now() < period.end.getTime() + METERING_SETTLE_MS) {
    throw new AppError("VALIDATION_FAILED", `The period ${period.name} has not ended yet`, { details: { period: period.name, endsAt: period.end.toISOString() } });
  }
  await closeMetering(deps, period);

  const rules = pricingRules(deps.config);
  const segments = await segmentUsage(deps.db, { from: period.start, to: period.end, where: notInvoiced(period, usageRecords.userId) });
  const storage = (await storageUsage(deps.db, { from: period.start, to: period.end, where: notInvoiced(period, volumeUsage.userId) })).filter((row) => row.mbMs > 0);
  const byCustomer = new Map<string, { segments: SegmentRow[]; storage: StorageRow[] }>();
  const customer = (userId: string) => {
    let entry = byCustomer.get(userId);
    if (!entry) byCustomer.set(userId, (entry = { segments: [], storage: [] }));
    return entry;
  };
  let skippedInstances = 0;
  for (const row of segments) {
    if (row.currency !== rules.currency) {
      skippedInstances += 1;
      deps.log.error("instance priced in another currency than BILLING_CURRENCY; not invoiced", { instanceId: row.instanceId, currency: row.currency, billingCurrency: rules.currency });
      continue;
    }
    customer(row.userId).segments.push(row);
  }
  for (const row of storage) {
    if (row.currency !== rules.currency) {
      deps.log.error("volume priced in another currency than BILLING_CURRENCY; not invoiced", { volumeId: row.volumeId, currency: row.currency, billingCurrency: rules.currency });
      continue;
    }
    customer(row.userId).storage.push(row);
  }

  const customers = [...byCustomer.entries()];
  let created = 0;
  let settledAtZero = 0;
  for (let i = 0; i < customers.length; i += BATCH) {
    const batch = customers.slice(i, i + BATCH).map(([userId, usage]) => draftInvoice(userId, usage.segments, usage.storage, period, rules));
    const written = await writeBatch(deps.db, period, batch, rules);
    created += written.created;
    settledAtZero += written.settledAtZero;
  }

  const result = { period: period.name, customers: customers.length, created, settledAtZero, skippedInstances, durationMs: Math.round(performance.now() - started) };
  await recordAudit(deps.db, { actor: input.actor ?? systemActor("invoicing"), request: input.request ?? null }, { action: "billing.invoicing.run", targetType: "period", targetId: period.name, metadata: result });
  deps.log.info("invoicing run", result);
  return result;
}

/**
 * Accounts every instance's time up to the period's end. A regular tick may
 * race it on an instance (one of them then skips it), so it goes round until
 * nothing is left behind.
 */
async function closeMetering(deps: InvoicingDeps, period: Period): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const pass = await meterUsage(deps, { until: period.end, sample: false });
    if (pass.windows === 0) return;
  }
}

/** Customers not yet invoiced for the period (so a rerun prices nobody twice). */
const notInvoiced = (period: Period, userId: AnyColumn) => sql`not exists (select 1 from ${invoices} where ${invoices.userId} = ${userId} and ${invoices.period} = ${period.name})`;

type Draft = { userId: string; lines: LineDraft[]; totals: ReturnType<typeof invoiceTotals> };

function draftInvoice(userId: string, segments: SegmentRow[], storage: StorageRow[], period: Period, rules: PricingRules): Draft {
  const compute = priceSegments(segments, period, rules);
  const stored = priceStorage(storage);
  return { userId, lines: [...compute.lines, ...stored.lines], totals: invoiceTotals(compute.charges, rules.taxRateBps, stored.amounts) };
}

/**
 * One transaction: insert the drafts (a customer invoiced meanwhile is
 * skipped by the unique index), their lines, then number and open them. The
 * counter row lock makes numbers gap-free and ordered across concurrent runs.
 */
async function writeBatch(db: Database, period: Period, batch: Draft[], rules: PricingRules): Promise<{ created: number; settledAtZero: number }> {
  return db.transaction(async (tx) => {
    const inserted = await tx
      .insert(invoices)
      .values(
        batch.map((d) => ({
          userId: d.userId,
          period: period.name,
          periodStart: period.start,
          periodEnd: period.end,
          status: "draft" as const,
          currency: rules.currency,
          ...d.totals,
        })),
      )
      .onConflictDoNothing({ target: [invoices.userId, invoices.period] })
      .returning({ id: invoices.id, userId: invoices.userId });
    if (inserted.length === 0) return { created: 0, settledAtZero: 0 };

    const idOf = new Map(inserted.map((row) => [row.userId, row.id]));
    const kept = batch.filter((d) => idOf.has(d.userId));
    const lines = kept.flatMap((d) => d.lines.map((line, position) => ({ ...line, invoiceId: idOf.get(d.userId)!, position })));
    for (let i = 0; i < lines.length; i += LINE_CHUNK) await tx.insert(invoiceLines).values(lines.slice(i, i + LINE_CHUNK));

    await tx.insert(billingCounters).values({ name: INVOICE_COUNTER, value: 0 }).onConflictDoNothing();
    const [counter] = await tx
      .update(billingCounters)
      .set({ value: sql`${billingCounters.value} + ${kept.length}` })
      .where(eq(billingCounters.name, INVOICE_COUNTER))
      .returning({ value: billingCounters.value });
    const first = counter!.value - kept.length + 1;
    const ids = kept.map((d) => idOf.get(d.userId)!);
    const numbers = kept.map((_, k) => invoiceNumber(first + k));
    const statuses = kept.map((d) => (d.totals.totalMinor === 0 ? "paid" : "open"));
    await tx.execute(sql`
      update ${invoices} set
        number = f.number,
        status = f.status,
        finalized_at = now(),
        paid_at = case when f.status = 'paid' then now() end,
        updated_at = now()
      from unnest(${pgArray(ids)}::uuid[], ${pgArray(numbers)}::text[], ${pgArray(statuses)}::invoice_status[]) as f(id, number, status)
      where ${invoices.id} = f.id and ${invoices.status} = 'draft'
    `);
    const settled = statuses.filter((s) => s === "paid").length;
    return { created: kept.length, settledAtZero: settled };
  });
}

export function invoiceNumber(n: number): string {
  return `INV-${String(n).padStart(6, "0")}`;
}

/** Invoices of a period by status, for operators and the benchmark. */
export async function periodInvoiceCounts(db: Database, period: string) {
  return db
    .select({ status: invoices.status, count: sql<number>`count(*)`.mapWith(Number) })
    .from(invoices)
    .where(eq(invoices.period, period))
    .groupBy(invoices.status);
}
