import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, asc, eq, inArray } from "drizzle-orm";
import { invoiceLines, invoices, meterCursors, usageRecords } from "../../db/schema";
import { runInvoicing } from "../../server/billing/invoicing";
import { meterUsage } from "../../server/billing/metering";
import { POWER_EMERGENCY_REASON } from "../../server/compute/states";
import type { Services } from "../../server/services";
import { seedHistory, seedInstance, seedUsage } from "../harness/billing";
import { startTestServices } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Service-level: metering and invoicing over state histories and usage written by the test, on real PostgreSQL.
let services: Services;
beforeAll(async () => {
  services = await startTestServices({ BILLING_TAX_RATE_PERCENT: "20", BILLING_INTERRUPTIBLE_DISCOUNT_PERCENT: "40", BILLING_EGRESS_PRICE_PER_GB_MINOR: "1" });
});
afterAll(() => services.close());

const HOUR = 3_600_000;
const MIN = 60_000;
const customer = async () => (await createUserWithSession(services)).user;

async function usageOf(instanceId: string) {
  const rows = await services.db.select().from(usageRecords).where(eq(usageRecords.instanceId, instanceId)).orderBy(asc(usageRecords.hour));
  return {
    rows: rows.map((r) => ({ hour: r.hour.toISOString(), runningMs: r.runningMs, pausedMs: r.pausedMs, emergencyPausedMs: r.emergencyPausedMs })),
    runningMs: rows.reduce((s, r) => s + r.runningMs, 0),
    emergencyPausedMs: rows.reduce((s, r) => s + r.emergencyPausedMs, 0),
    pausedMs: rows.reduce((s, r) => s + r.pausedMs, 0),
  };
}

describe("metering from the state history", () => {
  // Two hours ago, aligned to nothing in particular.
  const t0 = new Date(Date.now() - 3 * HOUR - 17_123);
  const timeline = (t: Date) => [
    { from: null, to: "pending", at: t, reason: "created" },
    { from: "pending", to: "provisioning", at: new Date(t.getTime() + 1000) },
    { from: "provisioning", to: "running", at: new Date(t.getTime() + 2000) },
    { from: "running", to: "paused", at: new Date(t.getTime() + 62 * MIN), reason: POWER_EMERGENCY_REASON },
    { from: "paused", to: "running", at: new Date(t.getTime() + 92 * MIN), reason: "power_restored" },
    { from: "running", to: "stopping", at: new Date(t.getTime() + 150 * MIN) },
    { from: "stopping", to: "stopped", at: new Date(t.getTime() + 150 * MIN + 500) },
  ];
  const expectedRunningMs = 62 * MIN - 2000 + (150 - 92) * MIN;
  const expectedEmergencyMs = 30 * MIN;

  test("accounts exactly the running and emergency-paused time, whatever the ticks did", async () => {
    const user = await customer();
    const ticked = await seedInstance(services, user.id, { createdAt: t0 });
    const once = await seedInstance(services, user.id, { createdAt: t0 });
    await seedHistory(services, ticked.id, timeline(t0));
    await seedHistory(services, once.id, timeline(t0));

    // Ticks at odd moments, one repeated, two racing, a long gap (missed ticks), then the regular one.
    const at = (ms: number) => new Date(t0.getTime() + ms);
    await meterUsage(services, { until: at(10 * MIN), sample: false });
    await meterUsage(services, { until: at(10 * MIN), sample: false });
    await Promise.all([meterUsage(services, { until: at(70 * MIN + 3), sample: false }), meterUsage(services, { until: at(70 * MIN + 3), sample: false })]);
    await Promise.all([meterUsage(services, { until: at(71 * MIN), sample: false }), meterUsage(services, { until: at(95 * MIN), sample: false })]);
    await meterUsage(services, { until: at(160 * MIN), sample: false });
    await meterUsage(services);

    const a = await usageOf(ticked.id);
    const b = await usageOf(once.id);
    expect(a.runningMs).toBe(expectedRunningMs);
    expect(a.emergencyPausedMs).toBe(expectedEmergencyMs);
    expect(a.pausedMs).toBe(0);
    // The instance metered by many ticks and the one metered in one go have the same hours.
    expect(b.rows).toEqual(a.rows);

    const [cursor] = await services.db.select().from(meterCursors).where(eq(meterCursors.instanceId, ticked.id));
    expect(cursor!.state).toBe("stopped");
  });
});

describe("invoicing a period", () => {
  test("one invoice per customer with lines per instance, discounts, credits and tax; zero totals settle at once", async () => {
    const period = "2023-03";
    const h = (day: number, hour: number) => new Date(Date.UTC(2023, 2, day, hour));
    const alice = await customer();
    const bob = await customer();
    const carol = await customer();
    const dave = await customer();

    // Alice: a standard instance for 10 h at 10¢/h, and one that ran all month (capped at 400¢).
    const web = await seedInstance(services, alice.id, { name: "web", priceHourlyMinor: 10, priceMonthlyMinor: 5000 });
    await seedUsage(services, web, [{ hour: h(3, 8), runningMs: (6 * HOUR) / 6 }, ...Array.from({ length: 9 }, (_, i) => ({ hour: h(4, i), runningMs: HOUR }))]);
    const db = await seedInstance(services, alice.id, { name: "db", priceHourlyMinor: 1, priceMonthlyMinor: 400 });
    await seedUsage(
      services,
      db,
      Array.from({ length: 31 * 24 }, (_, i) => ({ hour: new Date(h(1, 0).getTime() + i * HOUR), runningMs: HOUR })),
    );
    // Bob: interruptible, 20 h running + 5 h paused by a power emergency at 25¢/h, 3 GB sent.
    const batch = await seedInstance(services, bob.id, { name: "batch", priceHourlyMinor: 25, priceMonthlyMinor: 10_000, priority: "interruptible" });
    await seedUsage(services, batch, [
      ...Array.from({ length: 20 }, (_, i) => ({ hour: h(10, i), runningMs: HOUR })),
      ...Array.from({ length: 5 }, (_, i) => ({ hour: h(11, i), emergencyPausedMs: HOUR })),
      { hour: h(12, 0), txBytes: 3_000_000_000 },
    ]);
    // Carol used nothing in March (only in April).
    const idle = await seedInstance(services, carol.id);
    await seedUsage(services, idle, [{ hour: new Date(Date.UTC(2023, 3, 1, 0)), runningMs: HOUR }]);
    // Dave ran for ten minutes at 1¢/h: rounds to nothing.
    const tiny = await seedInstance(services, dave.id, { priceHourlyMinor: 1 });
    await seedUsage(services, tiny, [{ hour: h(20, 5), runningMs: 10 * MIN }]);

    const result = await runInvoicing(services, { period });
    expect(result).toMatchObject({ period, customers: 3, created: 3, settledAtZero: 1 });

    const rows = await services.db.select().from(invoices).where(eq(invoices.period, period));
    const of = (userId: string) => rows.find((r) => r.userId === userId);
    expect(of(carol.id)).toBeUndefined();

    const a = of(alice.id)!;
    // 100 + 400 = 500; tax 20 % = 100.
    expect(a).toMatchObject({ status: "open", currency: "USD", subtotalMinor: 500, discountMinor: 0, creditMinor: 0, taxRateBps: 2000, taxMinor: 100, totalMinor: 600 });
    expect(a.periodStart).toEqual(new Date("2023-03-01T00:00:00Z"));
    expect(a.periodEnd).toEqual(new Date("2023-04-01T00:00:00Z"));
    const aLines = await services.db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, a.id)).orderBy(asc(invoiceLines.position));
    expect(aLines.map((l) => [l.instanceId, l.kind, l.quantity, l.unitPriceMinor, l.amountMinor])).toEqual([
      [web.id, "compute", 10, 10, 100],
      [db.id, "compute", 744, 1, 400],
    ]);
    expect(aLines[1]!.details).toMatchObject({ capped: true, monthlyCapMinor: 400 });

    const b = of(bob.id)!;
    // compute 25 h × 25 = 625; egress 3; discount 40 % of 625 = 250; credit 5 h × 25 × 60 % = 75; taxable 303; tax 60.6 → 61.
    expect(b).toMatchObject({ subtotalMinor: 628, discountMinor: 250, creditMinor: 75, taxMinor: 61, totalMinor: 364, status: "open" });
    const bLines = await services.db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, b.id)).orderBy(asc(invoiceLines.position));
    expect(bLines.map((l) => [l.kind, l.amountMinor])).toEqual([
      ["compute", 625],
      ["egress", 3],
      ["discount", -250],
      ["credit", -75],
    ]);

    const d = of(dave.id)!;
    expect(d).toMatchObject({ totalMinor: 0, status: "paid" });
    expect(d.paidAt).not.toBeNull();

    // Numbers: unique, sequential, in the INV-nnnnnn form.
    const numbers = rows.map((r) => Number(r.number!.slice(4))).sort((x, y) => x - y);
    expect(rows.every((r) => /^INV-\d{6,}$/.test(r.number!))).toBe(true);
    expect(numbers[2]! - numbers[0]!).toBe(2);
  });

  test("a rerun, or two runs at once, create nothing more", async () => {
    const period = "2023-06";
    const users = await Promise.all([customer(), customer(), customer()]);
    for (const user of users) {
      const instance = await seedInstance(services, user.id, { priceHourlyMinor: 7 });
      await seedUsage(services, instance, [{ hour: new Date(Date.UTC(2023, 5, 15, 12)), runningMs: HOUR }]);
    }
    const [first, second] = await Promise.all([runInvoicing(services, { period }), runInvoicing(services, { period })]);
    expect(first.created + second.created).toBe(3);
    const before = await services.db.select().from(invoices).where(eq(invoices.period, period)).orderBy(asc(invoices.id));
    const linesBefore = await services.db
      .select()
      .from(invoiceLines)
      .where(
        inArray(
          invoiceLines.invoiceId,
          before.map((i) => i.id),
        ),
      );
    expect(before).toHaveLength(3);
    expect(new Set(before.map((i) => i.userId)).size).toBe(3);

    const again = await runInvoicing(services, { period });
    expect(again).toMatchObject({ customers: 0, created: 0 });
    const after = await services.db.select().from(invoices).where(eq(invoices.period, period)).orderBy(asc(invoices.id));
    expect(after).toEqual(before);
    expect(
      await services.db
        .select()
        .from(invoiceLines)
        .where(
          inArray(
            invoiceLines.invoiceId,
            after.map((i) => i.id),
          ),
        ),
    ).toHaveLength(linesBefore.length);
  });

  test("closes metering at the period's end: time not yet metered is still invoiced, to the millisecond", async () => {
    const user = await customer();
    const start = new Date("2023-08-31T22:00:00.250Z");
    const instance = await seedInstance(services, user.id, { createdAt: start, priceHourlyMinor: 360_000, priceMonthlyMinor: 1_000_000_000 });
    await seedHistory(services, instance.id, [
      { from: null, to: "pending", at: start, reason: "created" },
      { from: "pending", to: "provisioning", at: new Date(start.getTime() + 250) },
      { from: "provisioning", to: "running", at: new Date(start.getTime() + 500) },
      { from: "running", to: "stopping", at: new Date("2023-09-01T01:00:00Z") },
      { from: "stopping", to: "stopped", at: new Date("2023-09-01T01:00:01Z") },
    ]);
    await runInvoicing(services, { period: "2023-08" });
    const [invoice] = await services.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.userId, user.id), eq(invoices.period, "2023-08")));
    // Running from 22:00:00.750 to 24:00: 7,199,250 ms at 100¢ a second = 719,925¢.
    expect(invoice!.subtotalMinor).toBe(719_925);
    await meterUsage(services);
    const usage = await usageOf(instance.id);
    // September's hour is metered too, and not invoiced in August.
    expect(usage.runningMs).toBe(7_199_250 + HOUR);
  });

  test("an unfinished period is refused", async () => {
    const now = new Date();
    const current = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
    await expect(runInvoicing(services, { period: current })).rejects.toMatchObject({ appCode: "VALIDATION_FAILED" });
    await expect(runInvoicing(services, { period: "2023-13" })).rejects.toMatchObject({ appCode: "VALIDATION_FAILED" });
  });
});
