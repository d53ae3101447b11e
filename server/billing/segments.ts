import { and, asc, eq, gte, lt, sql, type AnyColumn, type SQL } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instancePlans, instances, usageMonthly, usageRecords, volumes, volumeUsage } from "../../db/schema";
import { pgArray } from "./arrays";
import type { Period } from "./periods";
import { chargeInstance, divideRoundHalfUp, instanceLines, storageCharge, storageLine, type InstanceCharge, type LineDraft, type PricingRules } from "./pricing";

/** A usage total; an instance with no records in the range sums to 0, not null. */
export const sum = (column: AnyColumn) => sql<number>`coalesce(sum(${column}), 0)`.mapWith(Number);

/** An instance's plan segment as invoices and estimates price it: the instance and the plan's prices in force. */
export const segmentColumns = {
  userId: instances.userId,
  instanceId: instances.id,
  name: instances.name,
  priority: instances.priority,
  planSeq: instancePlans.seq,
  planSlug: instancePlans.planSlug,
  fromAt: instancePlans.fromAt,
  priceHourlyMinor: instancePlans.priceHourlyMinor,
  priceMonthlyMinor: instancePlans.priceMonthlyMinor,
  currency: instancePlans.currency,
};

/**
 * Usage priced per plan segment: every (instance, plan) pair with usage in
 * the range, at the prices of that plan (`instance_plans`), so a resize is
 * billed from the moment it took effect.
 */
export async function segmentUsage(db: Database, opts: { from: Date; to: Date; where?: SQL | undefined }) {
  return db
    .select({
      ...segmentColumns,
      runningMs: sum(usageRecords.runningMs),
      pausedMs: sum(usageRecords.pausedMs),
      emergencyPausedMs: sum(usageRecords.emergencyPausedMs),
      txBytes: sum(usageRecords.txBytes),
    })
    .from(usageRecords)
    .innerJoin(instances, eq(instances.id, usageRecords.instanceId))
    .innerJoin(instancePlans, and(eq(instancePlans.instanceId, usageRecords.instanceId), eq(instancePlans.seq, usageRecords.planSeq)))
    .where(and(gte(usageRecords.hour, opts.from), lt(usageRecords.hour, opts.to), opts.where))
    .groupBy(instances.id, instancePlans.instanceId, instancePlans.seq)
    .having(sql`sum(${usageRecords.runningMs} + ${usageRecords.pausedMs} + ${usageRecords.emergencyPausedMs}) > 0 or sum(${usageRecords.txBytes}) > 0`)
    .orderBy(asc(instances.userId), asc(instances.createdAt), asc(instances.id), asc(instancePlans.seq));
}

export type SegmentRow = Awaited<ReturnType<typeof segmentUsage>>[number];

/**
 * The same rows as `segmentUsage` over a whole period, for the given
 * customers, read from the monthly aggregate (usage_monthly, kept by triggers
 * on usage_records: one row per instance, month and plan instead of one per
 * hour). Invoicing reads a page of customers at a time this way.
 */
export async function periodSegments(db: Database, opts: { period: Pick<Period, "start">; userIds: readonly string[] }): Promise<SegmentRow[]> {
  const m = usageMonthly;
  return db
    .select({
      ...segmentColumns,
      runningMs: m.runningMs,
      pausedMs: m.pausedMs,
      emergencyPausedMs: m.emergencyPausedMs,
      txBytes: m.txBytes,
    })
    .from(m)
    .innerJoin(instances, eq(instances.id, m.instanceId))
    .innerJoin(instancePlans, and(eq(instancePlans.instanceId, m.instanceId), eq(instancePlans.seq, m.planSeq)))
    .where(and(eq(m.periodStart, opts.period.start), sql`${m.userId} = any(${pgArray(opts.userIds)}::uuid[])`, sql`(${m.runningMs} + ${m.pausedMs} + ${m.emergencyPausedMs} > 0 or ${m.txBytes} > 0)`))
    .orderBy(asc(instances.userId), asc(instances.createdAt), asc(instances.id), asc(instancePlans.seq));
}

/**
 * Prices one customer's segments for a period. An instance with one segment
 * is capped at its monthly price; with several (it was resized), each
 * segment's cap is its monthly price times the share of the period from the
 * segment's start (the period's, for the first) to the next one's (the
 * period's end, for the last).
 */
export function priceSegments(rows: readonly SegmentRow[], period: Pick<Period, "start" | "end">, rules: PricingRules): { lines: LineDraft[]; charges: InstanceCharge[] } {
  const lines: LineDraft[] = [];
  const charges: InstanceCharge[] = [];
  const byInstance = new Map<string, SegmentRow[]>();
  for (const row of rows) {
    let list = byInstance.get(row.instanceId);
    if (!list) {
      list = [];
      byInstance.set(row.instanceId, list);
    }
    list.push(row);
  }
  const periodMs = period.end.getTime() - period.start.getTime();
  for (const segments of byInstance.values()) {
    segments.forEach((segment, i) => {
      const from = i === 0 ? period.start.getTime() : Math.max(segment.fromAt.getTime(), period.start.getTime());
      const to = i === segments.length - 1 ? period.end.getTime() : Math.max(segments[i + 1]!.fromAt.getTime(), from);
      const cap = segments.length === 1 ? segment.priceMonthlyMinor : divideRoundHalfUp(BigInt(segment.priceMonthlyMinor) * BigInt(to - from), periodMs);
      const charge = chargeInstance(segment, segment, rules, cap);
      charges.push(charge);
      lines.push(
        ...instanceLines(
          {
            id: segment.instanceId,
            name: segment.name,
            priority: segment.priority,
            priceHourlyMinor: segment.priceHourlyMinor,
            priceMonthlyMinor: segment.priceMonthlyMinor,
            ...(segments.length > 1 ? { plan: segment.planSlug } : {}),
          },
          segment,
          charge,
          rules,
        ),
      );
    });
  }
  return { lines, charges };
}

/** Volumes' storage in the range, per volume (MiB × ms), with their prices. */
export async function storageUsage(db: Database, opts: { from: Date; to: Date; where?: SQL | undefined }) {
  return db
    .select({
      userId: volumes.userId,
      volumeId: volumes.id,
      name: volumes.name,
      sizeMb: volumes.sizeMb,
      priceGbMonthMinor: volumes.priceGbMonthMinor,
      currency: volumes.currency,
      mbMs: sql<number>`coalesce(sum(${volumeUsage.mbMs}), 0)`.mapWith(Number),
    })
    .from(volumeUsage)
    .innerJoin(volumes, eq(volumes.id, volumeUsage.volumeId))
    .where(and(gte(volumeUsage.hour, opts.from), lt(volumeUsage.hour, opts.to), opts.where))
    .groupBy(volumes.id)
    .orderBy(asc(volumes.userId), asc(volumes.createdAt), asc(volumes.id));
}

export type StorageRow = Awaited<ReturnType<typeof storageUsage>>[number];

export function priceStorage(rows: readonly StorageRow[]): { lines: LineDraft[]; amounts: number[] } {
  const lines = rows.map((row) => storageLine({ id: row.volumeId, name: row.name, sizeMb: row.sizeMb, priceGbMonthMinor: row.priceGbMonthMinor }, row.mbMs));
  return { lines, amounts: rows.map((row) => storageCharge(row.mbMs, row.priceGbMonthMinor)) };
}
