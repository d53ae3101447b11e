import { and, asc, eq, inArray, isNull, lt, notExists, sql, type AnyColumn } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Database } from "../../db/client";
import { billingCounters, invoiceLines, invoices, usageRecords, volumeUsage } from "../../db/schema";
import { systemActor, type Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import { recordEvents } from "../events/outbox";
import type { RequestInfo } from "../trpc";
import { pgArray } from "./arrays";
import { METERING_SETTLE_MS, meterUsage, type MeteringDeps } from "./metering";
import { parsePeriod, type Period } from "./periods";
import { invoiceTotals, pricingRules, type LineDraft, type PricingRules } from "./pricing";
import { priceSegments, priceStorage, segmentUsage, storageUsage, type SegmentRow, type StorageRow } from "./segments";
import { energyByCustomer } from "../energy/accounting";
import { energyLine } from "./energy-line";

export type InvoicingDeps = MeteringDeps;

export type InvoicingResult = {
  period: string;
  /** Customers with billable usage in the period that had no invoice yet. */
  customers: number;
  created: number;
  /** Of those, invoices whose total was zero and that were closed as paid at once. */
  settledAtZero: number;
  /** Of those, invoices below the minimum charge, carried forward to the customer's next invoice. */
  carriedForward: number;
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
 * history), then aggregates the period's usage per instance and plan (a
 * resize splits it) and per volume, prices it, and writes invoices, their lines and their numbers a batch of
 * customers per transaction.
 *
 * Minimum charge: a total above zero but below BILLING_MINIMUM_CHARGE_MINOR
 * (the payment provider's smallest charge) cannot be paid, so such an invoice
 * is issued `carried_forward`, and the customer's next invoice brings its
 * total in as a line (after tax: it was taxed on its own invoice). A customer
 * with a balance waiting and no usage gets an invoice for the balance alone.
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
  const energy = await energyByCustomer(deps.db, { from: period.start, to: period.end });
  const byCustomer = new Map<string, { segments: SegmentRow[]; storage: StorageRow[] }>();
  const customer = (userId: string) => {
    let entry = byCustomer.get(userId);
    if (!entry) {
      entry = { segments: [], storage: [] };
      byCustomer.set(userId, entry);
    }
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

  for (const userId of await customersWithBalance(deps.db, period)) customer(userId);

  const customers = [...byCustomer.entries()];
  let created = 0;
  let settledAtZero = 0;
  let carriedForward = 0;
  const minimumChargeMinor = deps.config.billing.minimumChargeMinor;
  for (let i = 0; i < customers.length; i += BATCH) {
    const batch = customers.slice(i, i + BATCH).map(([userId, usage]) => {
      const draft = draftInvoice(userId, usage.segments, usage.storage, period, rules);
      const line = energyLine(energy.get(userId), deps.config.energy.gridCo2GramsPerKwh);
      if (line) draft.lines.push(line);
      return draft;
    });
    const written = await writeBatch(deps.db, period, batch, rules, minimumChargeMinor);
    created += written.created;
    settledAtZero += written.settledAtZero;
    carriedForward += written.carriedForward;
  }

  const result = {
    period: period.name,
    customers: customers.length,
    created,
    settledAtZero,
    carriedForward,
    skippedInstances,
    durationMs: Math.round(performance.now() - started),
  };
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

/** Customers with a carried-forward balance from an earlier period and no invoice for this one yet. */
async function customersWithBalance(db: Database, period: Period): Promise<string[]> {
  const thisPeriod = alias(invoices, "this_period");
  const rows = await db
    .selectDistinct({ userId: invoices.userId })
    .from(invoices)
    .where(
      and(
        eq(invoices.status, "carried_forward"),
        isNull(invoices.carriedIntoInvoiceId),
        lt(invoices.period, period.name),
        notExists(
          db
            .select({ one: sql`1` })
            .from(thisPeriod)
            .where(and(eq(thisPeriod.userId, invoices.userId), eq(thisPeriod.period, period.name))),
        ),
      ),
    );
  return rows.map((row) => row.userId);
}

type Draft = { userId: string; lines: LineDraft[]; totals: ReturnType<typeof invoiceTotals> & { carriedInMinor?: number } };

function draftInvoice(userId: string, segments: SegmentRow[], storage: StorageRow[], period: Period, rules: PricingRules): Draft {
  const compute = priceSegments(segments, period, rules);
  const stored = priceStorage(storage);
  return { userId, lines: [...compute.lines, ...stored.lines], totals: invoiceTotals(compute.charges, rules.taxRateBps, stored.amounts) };
}

/**
 * One transaction: bring in the customers' carried-forward balances (row
 * locks, so each is brought into exactly one invoice), insert the drafts (a
 * customer invoiced meanwhile is skipped by the unique index), their lines,
 * then number them and set their status. The counter row lock makes numbers
 * gap-free and ordered across concurrent runs.
 */
async function writeBatch(db: Database, period: Period, drafts: Draft[], rules: PricingRules, minimumChargeMinor: number) {
  return db.transaction(async (tx) => {
    const waiting = await tx
      .select({ id: invoices.id, userId: invoices.userId, number: invoices.number, period: invoices.period, totalMinor: invoices.totalMinor })
      .from(invoices)
      .where(
        and(
          inArray(
            invoices.userId,
            drafts.map((d) => d.userId),
          ),
          eq(invoices.status, "carried_forward"),
          isNull(invoices.carriedIntoInvoiceId),
          lt(invoices.period, period.name),
        ),
      )
      .orderBy(asc(invoices.period), asc(invoices.id))
      .for("update");
    const batch = drafts.map((d) => withBalance(d, waiting.filter((w) => w.userId === d.userId))).filter((d) => d.lines.length > 0);
    if (batch.length === 0) return { created: 0, settledAtZero: 0, carriedForward: 0 };

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
    if (inserted.length === 0) return { created: 0, settledAtZero: 0, carriedForward: 0 };

    const idOf = new Map(inserted.map((row) => [row.userId, row.id]));
    const kept = batch.filter((d) => idOf.has(d.userId));
    const lines = kept.flatMap((d) => d.lines.map((line, position) => ({ ...line, invoiceId: idOf.get(d.userId)!, position })));
    for (let i = 0; i < lines.length; i += LINE_CHUNK) await tx.insert(invoiceLines).values(lines.slice(i, i + LINE_CHUNK));
    for (const balance of waiting.filter((w) => idOf.has(w.userId))) {
      await tx.update(invoices).set({ carriedIntoInvoiceId: idOf.get(balance.userId)! }).where(eq(invoices.id, balance.id));
    }

    await tx.insert(billingCounters).values({ name: INVOICE_COUNTER, value: 0 }).onConflictDoNothing();
    const [counter] = await tx
      .update(billingCounters)
      .set({ value: sql`${billingCounters.value} + ${kept.length}` })
      .where(eq(billingCounters.name, INVOICE_COUNTER))
      .returning({ value: billingCounters.value });
    const first = counter!.value - kept.length + 1;
    const ids = kept.map((d) => idOf.get(d.userId)!);
    const numbers = kept.map((_, k) => invoiceNumber(first + k));
    const statuses = kept.map((d) => (d.totals.totalMinor === 0 ? "paid" : d.totals.totalMinor < minimumChargeMinor ? "carried_forward" : "open"));
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
    const issuedAt = new Date().toISOString();
    await recordEvents(
      tx,
      kept.map((d, k) => ({
        type: "invoice.issued" as const,
        userId: d.userId,
        data: { invoiceId: ids[k]!, invoiceNumber: numbers[k]!, currency: rules.currency, period: period.name, status: statuses[k]!, totalMinor: d.totals.totalMinor, amountDueMinor: statuses[k] === "open" ? d.totals.totalMinor : 0, issuedAt },
      })),
    );
    return {
      created: kept.length,
      settledAtZero: statuses.filter((s) => s === "paid").length,
      carriedForward: statuses.filter((s) => s === "carried_forward").length,
    };
  });
}

/** The draft with a line per carried-forward invoice it brings in, added to its total after tax. */
function withBalance(draft: Draft, waiting: Array<{ id: string; number: string | null; period: string; totalMinor: number }>): Draft {
  if (waiting.length === 0) return draft;
  const carriedInMinor = waiting.reduce((sum, w) => sum + w.totalMinor, 0);
  const lines: LineDraft[] = waiting.map((w) => ({
    instanceId: null,
    kind: "carried_forward",
    description: `Balance carried forward from ${w.number} (${w.period}), below the minimum charge`,
    quantity: 1,
    unit: "invoice",
    unitPriceMinor: w.totalMinor,
    amountMinor: w.totalMinor,
    details: { invoiceId: w.id, invoiceNumber: w.number, period: w.period },
  }));
  return { ...draft, lines: [...draft.lines, ...lines], totals: { ...draft.totals, carriedInMinor, totalMinor: draft.totals.totalMinor + carriedInMinor } };
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
