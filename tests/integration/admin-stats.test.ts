import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog } from "../../db/schema";
import { periodOf, previousPeriod } from "../../server/billing/periods";
import { syncHosts } from "../../server/compute/hosts";
import { recordLevelChange } from "../../server/energy/power";
import { storeSample } from "../../server/energy/readings";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { lifecycleProcessor } from "../../workers/lifecycle";
import { mailProcessor } from "../../workers/mail";
import { registerVerifiedUser, uniqueEmail, uniqueIp, STRONG_PASSWORD, startMailingServer, type MailingServer } from "../harness/accounts";
import { seedInstance, seedUsage } from "../harness/billing";
import { actionDone } from "../harness/compute";
import { resetEnergyState } from "../harness/serial";
import type { TestServer } from "../harness/server";
import { deliver, startStripeStandIn, type StripeStandIn } from "../harness/stripe";
import { createUserWithSession } from "../harness/users";

// The statistics agree with what was done through the public API and the billing services.
// The database is shared with other test files, so platform-wide figures are compared as
// differences across the fixtures; energy state is platform-wide and reset around this file.
let app: MailingServer;
let stripe: StripeStandIn;
let admin: Awaited<ReturnType<typeof createUserWithSession>>;
let api: ReturnType<TestServer["client"]>;

beforeAll(async () => {
  stripe = await startStripeStandIn();
  // No billing worker: metering must not add usage while the figures are compared.
  app = await startMailingServer({ env: { ...stripe.env }, workers: [mailProcessor, lifecycleProcessor] });
  await syncHosts(app.services);
  await resetEnergyState(app.services.db);
  admin = await createUserWithSession(app.services, { role: "admin" });
  api = app.client({ token: admin.token });
});
afterAll(async () => {
  await resetEnergyState(app.services.db);
  await app.close();
  await stripe.close();
});

const HOUR = 3_600_000;
type Overview = Awaited<ReturnType<typeof api.admin.stats.overview.query>>;

/** Numeric leaves of `after` minus those of `before`, same shape. */
function delta(before: unknown, after: unknown): unknown {
  if (typeof after === "number") return after - (before as number);
  if (after && typeof after === "object") return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, delta((before as Record<string, unknown>)[k], v)]));
  return after;
}

describe("admin.stats.overview", () => {
  test("users, instances, resources and revenue move exactly as the fixtures did", async () => {
    const now = new Date();
    const last = previousPeriod(now);
    const current = periodOf(now);
    // Whatever usage of last month was still uninvoiced (other files' fixtures) is invoiced first, so the run below is ours alone.
    await api.admin.billing.runInvoicing.mutate({ period: last.name });
    const before = await api.admin.stats.overview.query();

    // Users, through the public API: two verified customers, one who never verifies, one suspended, one made operator.
    const ada = await registerVerifiedUser(app, app.mail, { name: "Ada" });
    const bea = await registerVerifiedUser(app, app.mail, { name: "Bea" });
    await app.client({ headers: { "x-forwarded-for": uniqueIp() } }).auth.register.mutate({ email: uniqueEmail("lazy"), password: STRONG_PASSWORD, name: "Lazy" });
    const cid = await registerVerifiedUser(app, app.mail, { name: "Cid" });
    await api.admin.users.setStatus.mutate({ id: cid.user.id, status: "suspended", reason: "stats fixture" });
    await api.admin.users.setRole.mutate({ id: bea.user.id, role: "operator", reason: "stats fixture" });

    // Instances, through the public API: two real containers, one of them stopped again.
    const adaApi = app.client({ token: ada.token });
    const first = await adaApi.compute.instances.create.mutate({ name: "stats-1", planId: "nano", imageId: "busybox" });
    const second = await adaApi.compute.instances.create.mutate({ name: "stats-2", planId: "nano", imageId: "busybox" });
    await actionDone(adaApi, first.actionId);
    await actionDone(adaApi, second.actionId);
    await actionDone(adaApi, (await adaApi.compute.instances.stop.mutate({ id: second.instance.id })).actionId);

    // Usage already metered (written as metering would), priced at 50¢/h and 25¢/h, one instance capped at 100¢ a month.
    const a = await seedInstance(app.services, ada.user.id, { priceHourlyMinor: 50, priceMonthlyMinor: 10_000 });
    const b = await seedInstance(app.services, bea.user.id, { priceHourlyMinor: 25, priceMonthlyMinor: 10_000 });
    const c = await seedInstance(app.services, bea.user.id, { priceHourlyMinor: 50, priceMonthlyMinor: 100 });
    const lastHour = (h: number) => new Date(last.start.getTime() + h * HOUR);
    await seedUsage(app.services, a, [
      { hour: lastHour(1), runningMs: 2 * HOUR, txBytes: 2_500_000_000 },
      { hour: lastHour(5), runningMs: HOUR },
    ]);
    await seedUsage(app.services, b, [{ hour: lastHour(2), runningMs: HOUR / 2 }]);
    await seedUsage(app.services, c, [{ hour: lastHour(3), runningMs: 3 * HOUR }]);
    await seedUsage(app.services, a, [{ hour: current.start, runningMs: HOUR }]);
    // ada: 3 h × 50 = 150, 2.5 GB egress at 1¢/GB = 2.5 → 3 (half up): 153. bea: 0.5 h × 25 = 12.5 → 13, plus 150 capped at 100: 113.

    // Invoicing through the admin procedure, then ada pays through Stripe.
    const run = await api.admin.billing.runInvoicing.mutate({ period: last.name });
    expect(run).toMatchObject({ period: last.name, customers: 2, created: 2 });
    const adaInvoice = (await adaApi.billing.invoices.list.query()).items.find((i) => i.period === last.name)!;
    const beaInvoice = (await app.client({ token: bea.token }).billing.invoices.list.query()).items.find((i) => i.period === last.name)!;
    expect([adaInvoice.totalMinor, beaInvoice.totalMinor]).toEqual([153, 113]);
    const payment = await adaApi.billing.invoices.pay.mutate({ id: adaInvoice.id });
    const delivered = await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", stripe.intentAfter(payment.providerPaymentId!, { status: "succeeded", amount_received: 153 })));
    expect(delivered.status).toBe(200);

    const after = await api.admin.stats.overview.query();
    const changed = delta(before, after) as Overview;

    expect(changed.users).toEqual({ total: 4, byStatus: { unverified: 1, active: 2, suspended: 1 }, byRole: { customer: 3, operator: 1, admin: 0 } });
    expect(changed.instances.total).toBe(5);
    expect(changed.instances.byState).toEqual({ pending: 0, provisioning: 0, running: 1, stopping: 0, stopped: 4, paused: 0, deleting: 0, deleted: 0, error: 0 });
    // Seeded instances sit on an offline host of their own (created by the first seed of the run), so only active hosts give capacity.
    expect(changed.resources.hosts.active).toBe(0);
    expect(changed.resources.vcpus).toEqual({ capacity: 0, allocated: 1.25, running: 0.25 });
    expect(changed.resources.memoryMb).toEqual({ capacity: 0, allocated: 5 * 256, running: 256 });
    expect(after.resources.vcpus.capacity).toBeGreaterThan(0);

    expect(after.revenue.currency).toBe("USD");
    expect(after.revenue.lastPeriod).toMatchObject({ period: last.name, start: last.start.toISOString(), end: last.end.toISOString() });
    expect(after.revenue.thisPeriod).toMatchObject({ period: current.name, start: current.start.toISOString() });
    expect(changed.revenue.lastPeriod).toMatchObject({ accruedMinor: 266, invoices: 2, invoicedMinor: 266, paidMinor: 153, refundedMinor: 0, outstandingMinor: 113 });
    expect(changed.revenue.thisPeriod).toMatchObject({ accruedMinor: 50, invoices: 0, invoicedMinor: 0, paidMinor: 0, outstandingMinor: 0 });
    // This month's accrual is what each customer's own estimate shows so far, before discounts and tax.
    const estimates = await Promise.all([adaApi, app.client({ token: bea.token })].map((client) => client.billing.estimate.query()));
    expect(estimates.reduce((sum, e) => sum + e.soFar.subtotalMinor, 0)).toBe(changed.revenue.thisPeriod.accruedMinor);

    for (const instance of [first.instance, second.instance]) {
      await actionDone(adaApi, (await adaApi.compute.instances.delete.mutate({ id: instance.id })).actionId);
    }
  });

  test("reports the power level and today's solar energy (UTC day) from the energy tables", async () => {
    const empty = await api.admin.stats.overview.query();
    expect(empty.energy).toMatchObject({ level: "normal", levelSince: null, soc: null, lastReadingAt: null, solarToday: { kwh: 0 } });

    const now = new Date();
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const window = (at: number, pvWh: number, soc: number) => ({
      at: new Date(at),
      seconds: 10,
      samples: 10,
      source: "test",
      soc,
      pvWh,
      loadWh: 1,
      batteryInWh: 0,
      batteryOutWh: 0,
    });
    await storeSample(app.services.db, window(today - HOUR, 900, 70)); // yesterday: not today's
    await storeSample(app.services.db, window(today, 250.5, 61));
    await storeSample(app.services.db, window(today + 10_000, 500, 60));
    await storeSample(app.services.db, window(today + 20_000, 1000, 48.5));
    const change = await recordLevelChange(app.services.db, { from: "normal", to: "conserve", at: new Date(today + 20_000), soc: 48.5, reading: {}, policy: DEFAULT_POLICY });
    expect(change).not.toBeNull();

    const stats = await api.admin.stats.overview.query();
    expect(stats.energy).toEqual({
      level: "conserve",
      levelSince: new Date(today + 20_000).toISOString(),
      soc: 48.5,
      lastReadingAt: new Date(today + 20_000).toISOString(),
      solarToday: { since: new Date(today).toISOString(), kwh: 1.751 },
    });
  });
});

describe("admin.billing.runInvoicing", () => {
  test("is idempotent, also when called twice at once, and each run is audited with the admin", async () => {
    const customer = await createUserWithSession(app.services);
    const instance = await seedInstance(app.services, customer.user.id, { priceHourlyMinor: 40, priceMonthlyMinor: 10_000 });
    // A month no other test invoices.
    await seedUsage(app.services, instance, [{ hour: new Date("2019-04-10T08:00:00Z"), runningMs: HOUR }]);

    const [one, two] = await Promise.all([api.admin.billing.runInvoicing.mutate({ period: "2019-04" }), api.admin.billing.runInvoicing.mutate({ period: "2019-04" })]);
    expect(one.created + two.created).toBe(1);
    const again = await api.admin.billing.runInvoicing.mutate({ period: "2019-04" });
    expect(again).toMatchObject({ period: "2019-04", customers: 0, created: 0 });
    const invoices = (await app.client({ token: customer.token }).billing.invoices.list.query()).items;
    expect(invoices.map((i) => [i.period, i.totalMinor])).toEqual([["2019-04", 40]]);

    const runs = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "billing.invoicing.run"), eq(auditLog.targetId, "2019-04")));
    expect(runs).toHaveLength(3);
    expect(runs.every((r) => r.actorType === "user" && r.actorId === admin.user.id)).toBe(true);
  });
});
