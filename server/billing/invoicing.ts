import { and, asc, eq, inArray, isNull, lt, sql, type SQL } from "drizzle-orm";
import type { Database } from "../../db/client";
import { billingCounters, invoiceLines, invoices, usageMonthly, volumeUsage } from "../../db/schema";
import { systemActor, type Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import { recordEvents } from "../events/outbox";
import type { RequestInfo } from "../trpc";
import { pgArray } from "./arrays";
import { METERING_SETTLE_MS, meterUsage, type MeteringDeps } from "./metering";
import { parsePeriod, type Period } from "./periods";
import { invoiceTotals, pricingRules, type LineDraft, type PricingRules } from "./pricing";
import { periodSegments, priceSegments, priceStorage, storageUsage, type SegmentRow, type StorageRow } from "./segments";
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

// Customers read, priced and written per transaction: bounds the memory a run holds and the time a page's locks are held.
// Statements take the page as array parameters (unnest), so their size does not grow with it.
const PAGE = 1000;
// Any fixed value: with the page's first customer, it keys the advisory lock that keeps concurrent runs off each other's pages.
const PAGE_LOCK = 40_421;
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
  const minimumChargeMinor = deps.config.billing.minimumChargeMinor;
  let customers = 0;
  let created = 0;
  let settledAtZero = 0;
  let carriedForward = 0;
  let skippedInstances = 0;
  // A page of customers at a time, in user id order: what is held in memory is bounded by PAGE, whatever the fleet.
  // The first pass skips pages another run holds (runs at once share the work). A run that skipped any makes a second
  // pass that skips nothing: the other run may have died holding its page (a worker killed or past its shutdown
  // timeout), and this run must not finish with customers left out. Customers invoiced meanwhile are no longer
  // listed; for one being invoiced right now, the unique (customer, period) index makes this run's insert wait and
  // then do nothing.
  const pass = async (shareWork: boolean) => {
    let skipped = 0;
    let after: string | null = null;
    for (;;) {
      const userIds = await customerPage(deps.db, period, after);
      if (userIds.length === 0) break;
      after = userIds.at(-1)!;
      const written = await deps.db.transaction(async (tx) => {
        if (shareWork) {
          const [claim] = await tx.select({ ok: sql<boolean>`pg_try_advisory_xact_lock(${PAGE_LOCK}, hashtext(${period.name} || ${userIds[0]!}))` }).from(sql`(values (1)) as one (x)`);
          if (!claim?.ok) return null;
        }
        const [segments, storage, energy] = await Promise.all([
          periodSegments(tx, { period, userIds }),
          storageUsage(tx, { from: period.start, to: period.end, where: sql`${volumeUsage.userId} = any(${pgArray(userIds)}::uuid[])` }),
          energyByCustomer(tx, { from: period.start, to: period.end, userIds }),
        ]);
        const byCustomer = new Map<string, { segments: SegmentRow[]; storage: StorageRow[] }>(userIds.map((userId) => [userId, { segments: [], storage: [] }]));
        for (const row of segments) {
          if (row.currency !== rules.currency) {
            skippedInstances += 1;
            deps.log.error("instance priced in another currency than BILLING_CURRENCY; not invoiced", { instanceId: row.instanceId, currency: row.currency, billingCurrency: rules.currency });
            continue;
          }
          byCustomer.get(row.userId)?.segments.push(row);
        }
        for (const row of storage) {
          if (row.mbMs <= 0) continue;
          if (row.currency !== rules.currency) {
            deps.log.error("volume priced in another currency than BILLING_CURRENCY; not invoiced", { volumeId: row.volumeId, currency: row.currency, billingCurrency: rules.currency });
            continue;
          }
          byCustomer.get(row.userId)?.storage.push(row);
        }
        const drafts = [...byCustomer.entries()].map(([userId, usage]) => {
          const draft = draftInvoice(userId, usage.segments, usage.storage, period, rules);
          const line = energyLine(energy.get(userId), deps.config.energy.gridCo2GramsPerKwh);
          if (line) draft.lines.push(line);
          return draft;
        });
        return writeBatch(tx, period, drafts, rules, minimumChargeMinor);
      });
      if (written) {
        customers += userIds.length;
        created += written.created;
        settledAtZero += written.settledAtZero;
        carriedForward += written.carriedForward;
      } else skipped += 1;
      if (userIds.length < PAGE) break;
    }
    return skipped;
  };
  if ((await pass(true)) > 0) await pass(false);

  const result = {
    period: period.name,
    customers,
    created,
    settledAtZero,
    carriedForward,
    skippedInstances,
    durationMs: Math.round(performance.now() - started),
  };
  await recordAudit(
    deps.db,
    { actor: input.actor ?? systemActor("invoicing"), request: input.request ?? null },
    { action: "billing.invoicing.run", targetType: "period", targetId: period.name, metadata: result },
  );
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

/**
 * The next `PAGE` customers after `after` (user id order) who have something
 * to invoice for the period — usage, stored volumes, or a carried-forward
 * balance from an earlier period — and no invoice for it yet (so a rerun
 * prices nobody twice). Each source is read in index order from `after` and
 * cut at PAGE before they are merged, so a page costs the same at the end of
 * the customer list as at its start.
 */
async function customerPage(db: Database, period: Period, after: string | null): Promise<string[]> {
  const from = after ?? "00000000-0000-0000-0000-000000000000";
  // A probe per candidate (the unique (customer, period) index), not an anti-join: the planner, going by statistics taken
  // before the run, would read all of the period's invoices for every page, and they grow as the run goes (quadratic).
  const notInvoiced = (userId: SQL) => sql`(select 1 from ${invoices} i where i.user_id = ${userId} and i.period = ${period.name} limit 1) is null`;
  const customers = sql`(
      (select distinct m.user_id from ${usageMonthly} m
        where m.period_start = ${period.start.toISOString()}::timestamptz and m.user_id > ${from}::uuid
          and (m.running_ms + m.paused_ms + m.emergency_paused_ms > 0 or m.tx_bytes > 0) and ${notInvoiced(sql`m.user_id`)}
        order by m.user_id limit ${PAGE})
      union
      (select distinct v.user_id from ${volumeUsage} v
        where v.hour >= ${period.start.toISOString()}::timestamptz and v.hour < ${period.end.toISOString()}::timestamptz and v.user_id > ${from}::uuid
          and v.mb_ms > 0 and ${notInvoiced(sql`v.user_id`)}
        order by v.user_id limit ${PAGE})
      union
      (select distinct b.user_id from ${invoices} b
        where b.status = 'carried_forward' and b.carried_into_invoice_id is null and b.period < ${period.name} and b.user_id > ${from}::uuid
          and ${notInvoiced(sql`b.user_id`)}
        order by b.user_id limit ${PAGE})
  ) customers`;
  const rows = await db.select({ userId: sql<string>`user_id` }).from(customers).orderBy(sql`user_id`).limit(PAGE);
  return rows.map((row) => row.userId);
}

type Draft = { userId: string; lines: LineDraft[]; totals: ReturnType<typeof invoiceTotals> & { carriedInMinor?: number } };

function draftInvoice(userId: string, segments: SegmentRow[], storage: StorageRow[], period: Period, rules: PricingRules): Draft {
  const compute = priceSegments(segments, period, rules);
  const stored = priceStorage(storage);
  return { userId, lines: [...compute.lines, ...stored.lines], totals: invoiceTotals(compute.charges, rules.taxRateBps, stored.amounts) };
}

/**
 * In the page's transaction: bring in the customers' carried-forward balances (row
 * locks, so each is brought into exactly one invoice), insert the drafts (a
 * customer invoiced meanwhile is skipped by the unique index), their lines,
 * then number them and set their status. The counter row lock makes numbers
 * gap-free and ordered across concurrent runs.
 */
async function writeBatch(tx: Database, period: Period, drafts: Draft[], rules: PricingRules, minimumChargeMinor: number) {
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
  const batch = drafts
    .map((d) =>
      withBalance(
        d,
        waiting.filter((w) => w.userId === d.userId),
      ),
    )
    .filter((d) => d.lines.length > 0);
  if (batch.length === 0) return { created: 0, settledAtZero: 0, carriedForward: 0 };

  // Set-based: each statement takes the batch as a few array parameters (unnest), whatever its size. The drafts this
  // transaction inserted are the batch's only drafts it can see: another run's are numbered before they commit.
  const userIds = batch.map((d) => d.userId);
  await tx.execute(sql`
    insert into ${invoices} (user_id, period, period_start, period_end, status, currency, subtotal_minor, discount_minor, credit_minor, tax_rate_bps, tax_minor, total_minor, carried_in_minor)
    select f.user_id, ${period.name}, ${period.start.toISOString()}::timestamptz, ${period.end.toISOString()}::timestamptz, 'draft', ${rules.currency},
           f.subtotal_minor, f.discount_minor, f.credit_minor, f.tax_rate_bps, f.tax_minor, f.total_minor, f.carried_in_minor
    from unnest(
      ${pgArray(userIds)}::uuid[], ${pgArray(batch.map((d) => d.totals.subtotalMinor))}::bigint[], ${pgArray(batch.map((d) => d.totals.discountMinor))}::bigint[],
      ${pgArray(batch.map((d) => d.totals.creditMinor))}::bigint[], ${pgArray(batch.map((d) => d.totals.taxRateBps))}::int[], ${pgArray(batch.map((d) => d.totals.taxMinor))}::bigint[],
      ${pgArray(batch.map((d) => d.totals.totalMinor))}::bigint[], ${pgArray(batch.map((d) => d.totals.carriedInMinor ?? 0))}::bigint[]
    ) as f(user_id, subtotal_minor, discount_minor, credit_minor, tax_rate_bps, tax_minor, total_minor, carried_in_minor)
    order by f.user_id
    on conflict (user_id, period) do nothing`);
  const inserted = await tx
    .select({ id: invoices.id, userId: invoices.userId })
    .from(invoices)
    .where(and(eq(invoices.period, period.name), inArray(invoices.userId, userIds), eq(invoices.status, "draft")));
  if (inserted.length === 0) return { created: 0, settledAtZero: 0, carriedForward: 0 };

  const idOf = new Map(inserted.map((row) => [row.userId, row.id]));
  const kept = batch.filter((d) => idOf.has(d.userId));
  const lines = kept.flatMap((d) => d.lines.map((line, position) => ({ ...line, invoiceId: idOf.get(d.userId)!, position })));
  const column = <K extends keyof (typeof lines)[number]>(key: K) => pgArray(lines.map((line) => (line[key] ?? null) as string | number | null));
  await tx.execute(sql`
    insert into ${invoiceLines} (invoice_id, position, instance_id, volume_id, kind, description, quantity, unit, unit_price_minor, amount_minor, details)
    select * from unnest(
      ${column("invoiceId")}::uuid[], ${column("position")}::int[], ${column("instanceId")}::uuid[], ${column("volumeId")}::uuid[],
      ${column("kind")}::invoice_line_kind[], ${column("description")}::text[], ${column("quantity")}::numeric[], ${column("unit")}::text[],
      ${column("unitPriceMinor")}::int[], ${column("amountMinor")}::bigint[], ${pgArray(lines.map((line) => JSON.stringify(line.details)))}::jsonb[]
    )`);
  for (const balance of waiting.filter((w) => idOf.has(w.userId))) {
    await tx
      .update(invoices)
      .set({ carriedIntoInvoiceId: idOf.get(balance.userId)! })
      .where(eq(invoices.id, balance.id));
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
      data: {
        invoiceId: ids[k]!,
        invoiceNumber: numbers[k]!,
        currency: rules.currency,
        period: period.name,
        status: statuses[k]!,
        totalMinor: d.totals.totalMinor,
        amountDueMinor: statuses[k] === "open" ? d.totals.totalMinor : 0,
        issuedAt,
      },
    })),
  );
  return {
    created: kept.length,
    settledAtZero: statuses.filter((s) => s === "paid").length,
    carriedForward: statuses.filter((s) => s === "carried_forward").length,
  };
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
