import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { extractText, getDocumentProxy } from "unpdf";
import { energyAttributions, invoiceLines, invoices, usageEnergy } from "../../db/schema";
import { emptyReading } from "../../hardware/protocols/reading";
import { runInvoicing } from "../../server/billing/invoicing";
import { meterUsage } from "../../server/billing/metering";
import { syncHosts } from "../../server/compute/hosts";
import { storeSample, type Sample } from "../../server/energy/readings";
import { lifecycleProcessor } from "../../workers/lifecycle";
import { seedInstance, seedUsage } from "../harness/billing";
import { actionDone, execIn, retireOtherInstances } from "../harness/compute";
import { testRun } from "../harness/env";
import { resetEnergyState } from "../harness/serial";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Per-tenant solar accounting on real containers: the load the charge
// controller measured is shared out by the CPU time the metering tick reads
// from the containers' cgroups over the same interval, and shows up in
// billing.usage, billing.estimate, energy.stats and, as an informational
// line, on the invoice.

let app: TestServer;
const IDLE_W = 20;
const LOAD_W = 120;

beforeAll(async () => {
  // Lifecycle only: metering is driven by hand here, and no power emergency may pause anything.
  app = await startTestServer({ workers: [lifecycleProcessor], env: { ENERGY_SAMPLE_SECONDS: "1", ENERGY_IDLE_POWER_W: String(IDLE_W), ENERGY_GRID_CO2_G_PER_KWH: "500" } });
  await syncHosts(app.services);
  await retireOtherInstances(app.services);
  await resetEnergyState(app.services.db);
}, 60_000);
afterAll(async () => {
  await resetEnergyState(app.services.db);
  await app.close();
});

/** One-second windows as the monitor stores them: `loadW` of load, the first `sunny` of them with 300 W of sun. */
async function storeLoad(from: number, seconds: number, sunny: number) {
  for (let i = 0; i < seconds; i++) {
    const pvW = i < sunny ? 300 : 0;
    const sample: Sample = {
      at: new Date(from + i * 1000),
      seconds: 1,
      samples: 1,
      source: "vedirect",
      ...emptyReading(),
      loadPower: LOAD_W,
      pvPower: pvW,
      socMin: null,
      socMax: null,
      pvPowerMax: pvW,
      pvWh: pvW / 3600,
      loadWh: LOAD_W / 3600,
      batteryInWh: 0,
      batteryOutWh: 0,
    };
    await storeSample(app.services.db, sample);
  }
}

describe("per-tenant solar accounting", () => {
  test("each tenant's share follows its CPU time; the shares add up to the measured load within 1 %", async () => {
    const busyOwner = await createUserWithSession(app.services);
    const quietOwner = await createUserWithSession(app.services);
    const busyApi = app.client({ token: busyOwner.token });
    const quietApi = app.client({ token: quietOwner.token });
    const launch = async (api: typeof busyApi, name: string) => {
      const { instance, actionId } = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox" });
      expect((await actionDone(api, actionId)).status).toBe("succeeded");
      return instance.id;
    };
    const busy = await launch(busyApi, "cruncher");
    const quiet = await launch(quietApi, "idler");

    // First tick: cursors and counter baselines, at a second both instances were already live by (a share
    // counts only the time an instance was there), once the settle margin behind it has passed.
    const t1 = Math.ceil(Date.now() / 1000) * 1000;
    await eventually(
      async () => Date.now(),
      (now) => now >= t1 + 6000,
      { what: "the settle margin after t1 to pass" },
    );
    await meterUsage(app.services, { until: new Date(t1) });
    // The busy tenant burns CPU (the nano plan allows a quarter of a core) while the other idles.
    await execIn(app.services.docker, `${testRun.dockerNamespace}-${busy}`, ["sh", "-c", "end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do :; done"]);
    // Ten seconds of measured load after t1, the first four in sunshine.
    await storeLoad(t1, 10, 4);
    const t2 = t1 + 11_000;
    await eventually(
      async () => Date.now(),
      (now) => now >= t2 + 5000,
      { what: "the settle margin to pass" },
    );
    const tick = await meterUsage(app.services, { until: new Date(t2) });
    // Both containers are on this machine's engine: sampled from their cgroup files (under their freeze group), not the engine's stats.
    expect(tick.sampledViaCgroup).toBe(tick.sampled);
    expect(tick.sampled).toBeGreaterThanOrEqual(2);

    const measuredWh = (10 * LOAD_W) / 3600;
    expect(tick.energy).toMatchObject({ from: expect.any(String) });
    expect(tick.energy!.loadWh).toBeCloseTo(measuredWh, 9);
    const rows = await app.services.db.select().from(usageEnergy);
    const sum = rows.reduce((a, r) => a + r.loadWh, 0);
    // The acceptance: shares add up to the measured load within 1 %.
    expect(Math.abs(sum - measuredWh) / measuredWh).toBeLessThan(0.01);
    const [window] = await app.services.db.select().from(energyAttributions);
    expect(window!.attributedWh + window!.unattributedWh).toBeCloseTo(window!.loadWh, 9);
    expect(window).toMatchObject({ instances: 2, unattributedWh: 0 });
    expect(window!.idleWh).toBeCloseTo((10 * IDLE_W) / 3600, 9);

    const of = (id: string) =>
      rows
        .filter((r) => r.instanceId === id)
        .reduce((a, r) => ({ loadWh: a.loadWh + r.loadWh, solarWh: a.solarWh + r.solarWh, batteryWh: a.batteryWh + r.batteryWh }), { loadWh: 0, solarWh: 0, batteryWh: 0 });
    const busyWh = of(busy);
    const quietWh = of(quiet);
    // Equal reservations share the idle part evenly; the CPU time decides the rest.
    expect(busyWh.loadWh).toBeGreaterThan(3 * quietWh.loadWh);
    expect(quietWh.loadWh).toBeGreaterThanOrEqual(((10 * IDLE_W) / 3600 / 2) * 0.99);
    // Four sunny seconds of ten: 40 % straight from the panels, the rest from the battery.
    expect(busyWh.solarWh / busyWh.loadWh).toBeCloseTo(0.4, 6);
    expect(busyWh.batteryWh / busyWh.loadWh).toBeCloseTo(0.6, 6);

    // billing.usage, billing.estimate and energy.stats show each tenant its own share, and only its own.
    const usage = await busyApi.billing.usage.query({ from: new Date(t1 - 3_600_000).toISOString() });
    expect(usage.instances.map((i) => i.instanceId)).toEqual([busy]);
    expect(usage.instances[0]!.energy.kwh).toBeCloseTo(busyWh.loadWh / 1000, 4);
    expect(usage.totals.energy).toMatchObject({ backupKwh: 0, sunlightShare: 1 });
    // Sunlight (panels and battery) in place of grid power at 500 g/kWh.
    expect(usage.totals.energy.co2AvoidedKg).toBeCloseTo((busyWh.loadWh / 1000) * 0.5, 4);
    expect((await busyApi.billing.estimate.query()).energy.kwh).toBeCloseTo(busyWh.loadWh / 1000, 4);
    const stats = await quietApi.energy.stats.query({ period: "day" });
    expect(stats.account.kwh).toBeCloseTo(quietWh.loadWh / 1000, 4);
    expect(stats.loadKwh).toBeCloseTo(measuredWh / 1000, 3);

    // A tick over the same window again shares nothing out twice.
    await meterUsage(app.services, { until: new Date(t2) });
    const again = (await app.services.db.select().from(usageEnergy)).reduce((a, r) => a + r.loadWh, 0);
    expect(again).toBeCloseTo(sum, 9);

    for (const [api, id] of [
      [busyApi, busy],
      [quietApi, quiet],
    ] as const) {
      const deleted = await api.compute.instances.delete.mutate({ id });
      await actionDone(api, deleted.actionId);
    }
  }, 90_000);

  test("the invoice carries the energy as an informational line that changes no total", async () => {
    const period = "2021-07";
    const hour = new Date(Date.UTC(2021, 6, 10, 12));
    const withEnergy = await createUserWithSession(app.services);
    const without = await createUserWithSession(app.services);
    const a = await seedInstance(app.services, withEnergy.user.id, { name: "solar-web" });
    const b = await seedInstance(app.services, without.user.id, { name: "plain-web" });
    for (const instance of [a, b]) await seedUsage(app.services, instance, [{ hour, runningMs: 3_000_000 }]);
    await app.services.db.insert(usageEnergy).values({ instanceId: a.id, userId: withEnergy.user.id, hour, loadWh: 1500, solarWh: 900, batteryWh: 450, backupWh: 150 });

    await runInvoicing(app.services, { period });
    const invoiceOf = async (userId: string) => {
      const [invoice] = await app.services.db.select().from(invoices).where(sql`${invoices.userId} = ${userId} and ${invoices.period} = ${period}`);
      const lines = await app.services.db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, invoice!.id));
      return { invoice: invoice!, lines };
    };
    const solar = await invoiceOf(withEnergy.user.id);
    const plain = await invoiceOf(without.user.id);
    const line = solar.lines.find((l) => l.kind === "energy")!;
    expect(line).toMatchObject({ amountMinor: 0, unitPriceMinor: 0, quantity: 1.5, unit: "kWh", instanceId: null });
    expect(line.description).toBe("Energy: 1.5 kWh, 90 % sunlight (panels 0.9 kWh, battery 0.45 kWh, backup 0.15 kWh); CO2 avoided 0.675 kg");
    expect(line.details).toMatchObject({ co2AvoidedKg: 0.675, sunlightShare: 0.9, gridCo2GramsPerKwh: 500 });
    // Same usage, same totals: the line is information only.
    expect(plain.lines.some((l) => l.kind === "energy")).toBe(false);
    for (const field of ["subtotalMinor", "discountMinor", "creditMinor", "taxMinor", "totalMinor"] as const) expect(solar.invoice[field]).toBe(plain.invoice[field]);

    const api = app.client({ token: withEnergy.token });
    const shown = await api.billing.invoices.get.query({ id: solar.invoice.id });
    expect(shown.lines.find((l) => l.kind === "energy")).toMatchObject({ amountMinor: 0, unit: "kWh" });
    const response = await fetch(`${app.url}/billing/invoices/${solar.invoice.id}/pdf`, { headers: { authorization: `Bearer ${withEnergy.token}` } });
    const { text } = await extractText(await getDocumentProxy(new Uint8Array(await response.arrayBuffer())), { mergePages: true });
    expect(text).toContain("90 % sunlight");
    expect(text).toContain("CO2 avoided 0.675 kg");
  }, 60_000);
});
