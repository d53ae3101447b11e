import { and, count, eq, gte, inArray, sql, type AnyColumn } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyHourly, hosts, instances, invoices, usagePeriodTotals, userRole, users, userStatus } from "../../db/schema";
import { GB } from "../billing/pricing";
import { periodOf, previousPeriod, type Period } from "../billing/periods";
import { INSTANCE_STATES, LIVE_STATES } from "../compute/states";
import type { Config } from "../config";
import { latestLevelChange } from "../energy/power";
import { latestSample } from "../energy/readings";

const total = (column: AnyColumn | ReturnType<typeof sql>) => sql<number>`coalesce(sum(${column}), 0)`.mapWith(Number);
const round3 = (n: number) => Math.round(n * 1000) / 1000;

/**
 * The platform at a glance. Every figure is an aggregate computed by the
 * database (counts and sums grouped by state, status, period); no list of
 * rows is loaded. The queries run concurrently.
 */
export async function statsOverview(deps: { db: Database; config: Config }, now = new Date()) {
  const { db, config } = deps;
  const current = periodOf(now);
  const previous = previousPeriod(now);
  const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  const currency = config.billing.currency;

  const [userRows, instanceRows, hostRows, invoiceRows, accruedRows, [solar], levelChange, reading] = await Promise.all([
    db.select({ status: users.status, role: users.role, n: count() }).from(users).groupBy(users.status, users.role),
    db
      .select({ state: instances.state, n: count(), cpuMillis: total(instances.cpuMillis), memoryMb: total(instances.memoryMb) })
      .from(instances)
      .groupBy(instances.state),
    db
      .select({ status: hosts.status, n: count(), cpuMillis: total(hosts.cpuCapacityMillis), memoryMb: total(hosts.memoryCapacityMb) })
      .from(hosts)
      .groupBy(hosts.status),
    invoiceTotals(db, [current, previous], currency),
    accruedAtListPrice(db, { current, previous, currency, egressPricePerGbMinor: config.billing.egressPricePerGbMinor }),
    db
      .select({ wh: total(energyHourly.pvWh) })
      .from(energyHourly)
      .where(gte(energyHourly.hour, today)),
    latestLevelChange(db),
    latestSample(db),
  ]);

  const usersByStatus = Object.fromEntries(userStatus.enumValues.map((s) => [s, sumWhere(userRows, (r) => r.status === s)]));
  const usersByRole = Object.fromEntries(userRole.enumValues.map((r) => [r, sumWhere(userRows, (row) => row.role === r)]));
  const byState = Object.fromEntries(INSTANCE_STATES.map((s) => [s, instanceRows.find((r) => r.state === s)?.n ?? 0]));
  const reserving = instanceRows.filter((r) => r.state !== "deleted");
  const live = instanceRows.filter((r) => LIVE_STATES.includes(r.state));
  const activeHosts = hostRows.find((r) => r.status === "active");
  const sum = (rows: Array<{ cpuMillis: number; memoryMb: number }>, key: "cpuMillis" | "memoryMb") => rows.reduce((acc, r) => acc + r[key], 0);

  const revenue = (period: Period, key: "current" | "previous") => {
    const invoiced = invoiceRows.find((r) => r.period === period.name);
    return {
      period: period.name,
      start: period.start.toISOString(),
      end: period.end.toISOString(),
      accruedMinor: accruedRows.find((r) => r.period === key)?.accruedMinor ?? 0,
      invoices: invoiced?.invoices ?? 0,
      invoicedMinor: invoiced?.invoicedMinor ?? 0,
      paidMinor: invoiced?.paidMinor ?? 0,
      refundedMinor: invoiced?.refundedMinor ?? 0,
      outstandingMinor: invoiced?.outstandingMinor ?? 0,
    };
  };

  return {
    generatedAt: now.toISOString(),
    users: { total: sumWhere(userRows, () => true), byStatus: usersByStatus, byRole: usersByRole },
    instances: { total: reserving.reduce((acc, r) => acc + r.n, 0), byState },
    resources: {
      hosts: { active: activeHosts?.n ?? 0, offline: hostRows.find((r) => r.status === "offline")?.n ?? 0 },
      vcpus: { capacity: (activeHosts?.cpuMillis ?? 0) / 1000, allocated: sum(reserving, "cpuMillis") / 1000, running: sum(live, "cpuMillis") / 1000 },
      memoryMb: { capacity: activeHosts?.memoryMb ?? 0, allocated: sum(reserving, "memoryMb"), running: sum(live, "memoryMb") },
    },
    revenue: { currency, thisPeriod: revenue(current, "current"), lastPeriod: revenue(previous, "previous") },
    energy: {
      level: levelChange?.toLevel ?? "normal",
      levelSince: levelChange?.at.toISOString() ?? null,
      soc: reading?.soc ?? null,
      lastReadingAt: reading?.at.toISOString() ?? null,
      solarToday: { since: today.toISOString(), kwh: round3((solar?.wh ?? 0) / 1000) },
    },
  };
}

function sumWhere<R extends { n: number }>(rows: R[], match: (row: R) => boolean): number {
  return rows.reduce((acc, row) => (match(row) ? acc + row.n : acc), 0);
}

/** Per period: issued invoices (not drafts, not void) and what has been paid, refunded and is still owed. */
function invoiceTotals(db: Database, periods: Period[], currency: string) {
  const owed = sql`greatest(${invoices.totalMinor} - ${invoices.amountPaidMinor}, 0)`;
  return db
    .select({
      period: invoices.period,
      invoices: count(),
      invoicedMinor: total(invoices.totalMinor),
      paidMinor: total(invoices.amountPaidMinor),
      refundedMinor: total(invoices.amountRefundedMinor),
      outstandingMinor: sql<number>`coalesce(sum(${owed}) filter (where ${invoices.status} in ('open', 'uncollectible')), 0)`.mapWith(Number),
    })
    .from(invoices)
    .where(
      and(
        inArray(
          invoices.period,
          periods.map((p) => p.name),
        ),
        inArray(invoices.status, ["open", "paid", "uncollectible"]),
        eq(invoices.currency, currency),
      ),
    )
    .groupBy(invoices.period);
}

/**
 * Usage metered in each period priced at list price: per instance and plan
 * segment, billable time × the segment's hourly price rounded half up and
 * capped at its monthly price, plus egress — the invoice subtotal before
 * discounts, credits and tax (server/billing/pricing.ts, `chargeInstance`),
 * with two simplifications an overview can afford: egress is rounded once per
 * period rather than per instance (within half a minor unit per instance),
 * and a resized instance's segments are each capped at their whole monthly
 * price rather than its share. For the current period it is what has accrued
 * so far; invoices exist only once a period has ended.
 *
 * It reads usage_period_totals, which triggers on usage_records keep in the
 * statement that writes the usage (migration 0010): one row per period, so
 * the cost does not grow with the fleet.
 */
function accruedAtListPrice(db: Database, opts: { current: Period; previous: Period; currency: string; egressPricePerGbMinor: number }) {
  const t = usagePeriodTotals;
  // divideRoundHalfUp(n, d) = (2n + d) div 2d, in exact numeric arithmetic.
  const egress = sql`div(${t.txBytes} * ${opts.egressPricePerGbMinor}::numeric * 2 + ${GB}, ${2 * GB})`;
  return db
    .select({
      period: sql<"current" | "previous">`case when ${t.periodStart} = ${opts.current.start.toISOString()}::timestamptz then 'current' else 'previous' end`,
      accruedMinor: sql<number>`${t.computeMinor} + ${egress}`.mapWith(Number),
    })
    .from(t)
    .where(and(inArray(t.periodStart, [opts.previous.start, opts.current.start]), eq(t.currency, opts.currency)));
}
