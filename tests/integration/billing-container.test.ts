import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, sql } from "drizzle-orm";
import { extractText, getDocumentProxy } from "unpdf";
import { instancePlans, instances, invoices, usageRecords } from "../../db/schema";
import { runInvoicing } from "../../server/billing/invoicing";
import { formatMoney } from "../../server/billing/pdf";
import { periodOf } from "../../server/billing/periods";
import { syncHosts } from "../../server/compute/hosts";
import { pauseInstance, resumeInstance } from "../../server/compute/instances";
import { POWER_EMERGENCY_REASON } from "../../server/compute/states";
import { seedInstance, seedUsage } from "../harness/billing";
import { actionDone, execIn } from "../harness/compute";
import { testRun } from "../harness/env";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";
import { processors } from "../../workers/processors";

const INTERVAL_MS = 1000;
// The instance is sold at 3,600.00 an hour, so one second is 100 minor units and small time differences show in money.
const PRICE_HOURLY = 360_000;
const PER_SECOND = PRICE_HOURLY / 3600;

let app: TestServer;
beforeAll(async () => {
  // Without the emergency worker: its periodic pass would resume the "power emergency" pause below at normal power.
  app = await startTestServer({ workers: processors.filter((p) => p.queue !== "emergency"), env: { METERING_INTERVAL_MS: String(INTERVAL_MS), BILLING_TAX_RATE_PERCENT: "10" } });
  await syncHosts(app.services);
});
afterAll(async () => {
  // Later files' workers would otherwise meter on this file's one-second schedule.
  await app.services.queues.queue("billing").removeJobScheduler("billing-meter");
  await app.close();
});

describe("a real container, metered and invoiced", () => {
  test("usage, the invoice lines, the credit for emergency-paused time and the PDF match the time it measurably ran", async () => {
    const owner = await createUserWithSession(app.services);
    const api = app.client({ token: owner.token });
    const created = await api.compute.instances.create.mutate({ name: "metered", planId: "nano", imageId: "busybox" });
    const id = created.instance.id;
    // Invoices price each plan segment at its own row's prices.
    await app.services.db.update(instances).set({ priceHourlyMinor: PRICE_HOURLY, priceMonthlyMinor: 1_000_000_000 }).where(eq(instances.id, id));
    await app.services.db.update(instancePlans).set({ priceHourlyMinor: PRICE_HOURLY, priceMonthlyMinor: 1_000_000_000 }).where(eq(instancePlans.instanceId, id));

    expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
    const runStart = Date.now();
    // Keep a CPU busy for two seconds (the plan allows a quarter of one).
    await execIn(app.services.docker, `${testRun.dockerNamespace}-${id}`, ["sh", "-c", "end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done"]);
    await Bun.sleep(1500);

    const pause = await pauseInstance(app.services, id, { reason: POWER_EMERGENCY_REASON });
    expect((await actionDone(api, pause.actionId)).status).toBe("succeeded");
    const pausedAt = Date.now();
    await Bun.sleep(2500);
    const resume = await resumeInstance(app.services, id, { reason: "power_restored" });
    expect((await actionDone(api, resume.actionId)).status).toBe("succeeded");
    const resumedAt = Date.now();
    await Bun.sleep(2000);
    const stop = await api.compute.instances.stop.mutate({ id });
    const stopRequested = Date.now();
    expect((await actionDone(api, stop.actionId)).status).toBe("succeeded");

    const running = (pausedAt - runStart + (stopRequested - resumedAt)) / 1000;
    const paused = (resumedAt - pausedAt) / 1000;
    const tolerance = INTERVAL_MS / 1000;

    // Metering runs on its own; wait until it has accounted past the stop.
    const usage = await eventually(
      () => api.billing.usage.query({ instanceId: id }),
      (u) => u.meteredUntil !== null && Date.parse(u.meteredUntil) > stopRequested + 1000,
      { timeoutMs: 30_000, intervalMs: 250, what: "metering to pass the stop" },
    );
    const metered = usage.instances[0]!;
    expect(usage.instances).toHaveLength(1);
    expect(Math.abs(metered.runningSeconds - running)).toBeLessThanOrEqual(tolerance);
    expect(Math.abs(metered.emergencyPausedSeconds - paused)).toBeLessThanOrEqual(tolerance);
    expect(metered.pausedSeconds).toBe(0);
    // Two busy seconds at a quarter of a CPU, sampled from the container's own counters.
    expect(metered.cpuSeconds).toBeGreaterThan(0.25);
    expect(metered.cpuSeconds).toBeLessThan(0.25 * running + 0.5);
    expect(metered.memoryByteSeconds).toBeGreaterThan(0);
    expect(usage.totals.runningSeconds).toBe(metered.runningSeconds);

    // The estimate prices the same usage so far; a stopped instance projects no more.
    const estimate = await api.billing.estimate.query();
    const computeSoFar = estimate.soFar.lines.find((l) => l.instanceId === id && l.kind === "compute")!;
    // In integer milliseconds, rounded half up as pricing does: float seconds (8.123 + 0.532 = 8.654999…) once rounded 865.5 down.
    const billedMs = Math.round(metered.runningSeconds * 1000) + Math.round(metered.emergencyPausedSeconds * 1000);
    expect(computeSoFar.amountMinor).toBe(Math.floor((billedMs * PER_SECOND + 500) / 1000));
    expect(estimate.projected.totalMinor).toBe(estimate.soFar.totalMinor);

    // Move the metered hours into a month that has ended, as if the month had turned, and invoice it.
    const target = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() - 2, 10));
    await app.services.db.execute(sql`
      update ${usageRecords} set hour = ${target.toISOString()}::timestamptz + (hour - (select min(hour) from ${usageRecords} where instance_id = ${id}))
      where instance_id = ${id}`);
    const period = periodOf(target).name;
    const run = await runInvoicing(app.services, { period });
    expect(run.created).toBeGreaterThanOrEqual(1);

    const list = await api.billing.invoices.list.query();
    expect(list.items).toHaveLength(1);
    const invoice = await api.billing.invoices.get.query({ id: list.items[0]!.id });
    expect(invoice).toMatchObject({ period, status: "open", currency: "USD", taxRateBps: 1000 });
    const compute = invoice.lines.find((l) => l.kind === "compute")!;
    const credit = invoice.lines.find((l) => l.kind === "credit")!;
    expect(Math.abs(compute.amountMinor - (running + paused) * PER_SECOND)).toBeLessThanOrEqual(tolerance * PER_SECOND);
    expect(Math.abs(-credit.amountMinor - paused * PER_SECOND)).toBeLessThanOrEqual(tolerance * PER_SECOND);
    expect(compute.details).toMatchObject({ runningSeconds: metered.runningSeconds, emergencyPausedSeconds: metered.emergencyPausedSeconds });
    expect(invoice.subtotalMinor).toBe(compute.amountMinor);
    expect(invoice.creditMinor).toBe(-credit.amountMinor);
    expect(invoice.taxMinor).toBe(Math.round((invoice.subtotalMinor - invoice.creditMinor) / 10));
    expect(invoice.totalMinor).toBe(invoice.subtotalMinor - invoice.creditMinor + invoice.taxMinor);

    // Invoicing again creates nothing.
    expect((await runInvoicing(app.services, { period })).created).toBe(0);
    expect(
      await app.services.db
        .select()
        .from(invoices)
        .where(and(eq(invoices.userId, owner.user.id), eq(invoices.period, period))),
    ).toHaveLength(1);

    // The PDF carries the number, the period, the lines, the tax and the total.
    const response = await fetch(`${app.url}/billing/invoices/${invoice.id}/pdf`, { headers: { authorization: `Bearer ${owner.token}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/pdf");
    const pdf = await getDocumentProxy(new Uint8Array(await response.arrayBuffer()));
    const { text } = await extractText(pdf, { mergePages: true });
    for (const figure of [
      invoice.number!,
      `Period: ${period}`,
      "metered: compute",
      formatMoney(compute.amountMinor, "USD"),
      formatMoney(credit.amountMinor, "USD"),
      "Tax 10%",
      formatMoney(invoice.taxMinor, "USD"),
      formatMoney(invoice.totalMinor, "USD"),
    ]) {
      expect(text).toContain(figure);
    }
  }, 90_000);

  test("invoicing is scheduled for 00:00 UTC on the 1st, and the job invoices a given period", async () => {
    const scheduler = await app.services.queues.queue("billing").getJobScheduler("billing-invoice-monthly");
    expect(scheduler).toMatchObject({ pattern: "0 0 1 * *", tz: "UTC", name: "invoice" });
    expect(new Date(scheduler!.next!).toISOString()).toMatch(/^\d{4}-\d{2}-01T00:00:00\.000Z$/);

    const { user } = await createUserWithSession(app.services);
    // Above the minimum charge (50¢ in USD), so the invoice is open rather than carried forward.
    const instance = await seedInstance(app.services, user.id, { priceHourlyMinor: 400 });
    await seedUsage(app.services, instance, [{ hour: new Date("2020-02-29T23:00:00Z"), runningMs: 1_800_000 }]);
    await app.services.queues.enqueue("billing", "invoice", { period: "2020-02" });
    const [invoice] = await eventually(
      () =>
        app.services.db
          .select()
          .from(invoices)
          .where(and(eq(invoices.userId, user.id), eq(invoices.period, "2020-02"))),
      (rows) => rows.length === 1,
      { timeoutMs: 15_000, what: "the invoice job" },
    );
    expect(invoice).toMatchObject({ status: "open", subtotalMinor: 200, taxMinor: 20, totalMinor: 220 });
  });
});
