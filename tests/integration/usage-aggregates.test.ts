import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, inArray, sql } from "drizzle-orm";
import { instancePlans, usageMonthly, usagePeriodTotals, usageRecords } from "../../db/schema";
import type { Services } from "../../server/services";
import { seedInstance, seedUsage } from "../harness/billing";
import { startTestServices } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// The monthly aggregate and the per-period totals that triggers on usage_records keep, against sums
// recomputed from the hourly rows, after inserts, metering-style upserts, updates and deletes.
let services: Services;
beforeAll(async () => {
  services = await startTestServices();
});
afterAll(() => services.close());

const HOUR = 3_600_000;
// A month of the past no other test writes usage for, so its totals are this file's alone.
const month = new Date(Date.UTC(2019, 4, 1));
const at = (h: number) => new Date(month.getTime() + h * HOUR);

/** usage_records summed per (instance, month, plan) the slow way, for the given instances. */
async function recomputed(instanceIds: string[]) {
  return services.db
    .select({
      instanceId: usageRecords.instanceId,
      planSeq: usageRecords.planSeq,
      runningMs: sql<number>`sum(${usageRecords.runningMs})`.mapWith(Number),
      pausedMs: sql<number>`sum(${usageRecords.pausedMs})`.mapWith(Number),
      emergencyPausedMs: sql<number>`sum(${usageRecords.emergencyPausedMs})`.mapWith(Number),
      txBytes: sql<number>`sum(${usageRecords.txBytes})`.mapWith(Number),
    })
    .from(usageRecords)
    .where(and(inArray(usageRecords.instanceId, instanceIds), sql`${usageRecords.hour} >= ${month.toISOString()}::timestamptz and ${usageRecords.hour} < ${at(31 * 24).toISOString()}::timestamptz`))
    .groupBy(usageRecords.instanceId, usageRecords.planSeq)
    .orderBy(usageRecords.instanceId, usageRecords.planSeq);
}

async function aggregated(instanceIds: string[]) {
  return services.db
    .select({
      instanceId: usageMonthly.instanceId,
      planSeq: usageMonthly.planSeq,
      runningMs: usageMonthly.runningMs,
      pausedMs: usageMonthly.pausedMs,
      emergencyPausedMs: usageMonthly.emergencyPausedMs,
      txBytes: usageMonthly.txBytes,
    })
    .from(usageMonthly)
    .where(and(inArray(usageMonthly.instanceId, instanceIds), eq(usageMonthly.periodStart, month)))
    .orderBy(usageMonthly.instanceId, usageMonthly.planSeq);
}

async function totals() {
  const [row] = await services.db
    .select()
    .from(usagePeriodTotals)
    .where(and(eq(usagePeriodTotals.periodStart, month), eq(usagePeriodTotals.currency, "USD")));
  return { computeMinor: row?.computeMinor ?? 0, txBytes: Number(row?.txBytes ?? 0) };
}

describe("usage aggregates kept by triggers", () => {
  test("follow inserts, upserts, updates and deletes of hourly rows, with each row's capped charge in the period totals", async () => {
    const { user } = await createUserWithSession(services);
    // 60¢/h capped at 100¢ a month, and 7¢/h uncapped; the second is resized (plan seq 1 at 9¢/h) mid-month.
    const capped = await seedInstance(services, user.id, { priceHourlyMinor: 60, priceMonthlyMinor: 100, currency: "USD" });
    const resized = await seedInstance(services, user.id, { priceHourlyMinor: 7, priceMonthlyMinor: 100_000, currency: "USD" });
    const [seq0] = await services.db.select().from(instancePlans).where(eq(instancePlans.instanceId, resized.id));
    await services.db.insert(instancePlans).values({ ...seq0!, seq: 1, priceHourlyMinor: 9, fromAt: at(100) });
    const ids = [capped.id, resized.id];
    const before = await totals();

    await seedUsage(services, capped, [
      { hour: at(0), runningMs: HOUR, txBytes: 1_500_000_000 },
      { hour: at(1), runningMs: HOUR / 2, pausedMs: HOUR / 4 },
    ]);
    await seedUsage(services, resized, [{ hour: at(3), runningMs: HOUR / 3, emergencyPausedMs: 1000 }]);
    // Metering's upsert: adds to an existing hour (an UPDATE through ON CONFLICT) and writes a new one, in one statement.
    await services.db.execute(sql`
      insert into usage_records (instance_id, hour, plan_seq, user_id, running_ms, tx_bytes)
      values (${resized.id}, ${at(3).toISOString()}::timestamptz, 0, ${user.id}, ${HOUR / 3}, 10),
             (${resized.id}, ${at(200).toISOString()}::timestamptz, 1, ${user.id}, ${HOUR}, 20)
      on conflict (instance_id, hour, plan_seq) do update set running_ms = usage_records.running_ms + excluded.running_ms, tx_bytes = usage_records.tx_bytes + excluded.tx_bytes`);
    await services.db
      .update(usageRecords)
      .set({ pausedMs: 0 })
      .where(and(eq(usageRecords.instanceId, capped.id), eq(usageRecords.hour, at(1))));
    expect(await aggregated(ids)).toEqual(await recomputed(ids));

    // capped: 1.5 h × 60 = 90 (under the 100 cap); resized: (2/3 h + 1 s) × 7 = 4.668 → 5, and 1 h × 9 = 9.
    const after = await totals();
    expect(after.computeMinor - before.computeMinor).toBe(90 + 5 + 9);
    expect(after.txBytes - before.txBytes).toBe(1_500_000_030);

    // Over the cap: the charge stops at the monthly price.
    await seedUsage(services, capped, [{ hour: at(2), runningMs: HOUR }]);
    expect((await totals()).computeMinor - before.computeMinor).toBe(100 + 5 + 9);

    // Deleting hours takes them away; a month left without hours leaves no row.
    await services.db.delete(usageRecords).where(and(eq(usageRecords.instanceId, capped.id), inArray(usageRecords.hour, [at(0), at(2)])));
    expect(await aggregated(ids)).toEqual(await recomputed(ids));
    expect((await totals()).computeMinor - before.computeMinor).toBe(30 + 5 + 9);
    await services.db.delete(usageRecords).where(inArray(usageRecords.instanceId, ids));
    expect(await aggregated(ids)).toEqual([]);
    expect(await totals()).toEqual(before);
  });
});
