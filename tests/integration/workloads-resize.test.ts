import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, asc, eq } from "drizzle-orm";
import { instancePlans, invoiceLines, invoices, plans } from "../../db/schema";
import { runInvoicing } from "../../server/billing/invoicing";
import { meterUsage } from "../../server/billing/metering";
import { previousPeriod } from "../../server/billing/periods";
import { syncHosts } from "../../server/compute/hosts";
import { setUserQuota } from "../../server/compute/quotas";
import { seedHistory, seedInstance } from "../harness/billing";
import { actionDone, retireInstancesSince } from "../harness/compute";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
const MIB = 1024 * 1024;
const HOUR = 3_600_000;

const started = new Date();

beforeAll(async () => {
  app = await startTestServer({ workers: true });
  await syncHosts(app.services);
});
afterAll(async () => {
  await retireInstancesSince(app.services, started);
  await app.close();
});

const nameOf = (id: string) => `${testRun.dockerNamespace}-${id}`;
async function customer() {
  const session = await createUserWithSession(app.services);
  return { ...session, api: app.client({ token: session.token }) };
}

describe("resize", () => {
  test("a running instance gets the new plan's limits live, and is billed on it from then on", async () => {
    const { api } = await customer();
    const created = await api.compute.instances.create.mutate({ name: "grow", planId: "nano", imageId: "busybox" });
    expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
    const id = created.instance.id;
    const before = await app.services.docker.getContainer(nameOf(id)).inspect();

    const resized = await api.compute.instances.resize.mutate({ id, planId: "micro" });
    expect((await actionDone(api, resized.actionId)).status).toBe("succeeded");
    const info = await app.services.docker.getContainer(nameOf(id)).inspect();
    expect(info.Id).toBe(before.Id);
    expect(info.State.StartedAt).toBe(before.State.StartedAt);
    expect(info.HostConfig).toMatchObject({ Memory: 512 * MIB, MemorySwap: 512 * MIB, NanoCpus: 500_000_000 });
    const instance = await api.compute.instances.get.query({ id });
    expect(instance).toMatchObject({ state: "running", memoryMb: 512, vcpus: 0.5, priceHourlyMinor: 2, priceMonthlyMinor: 800 });
    const history = await app.services.db.select().from(instancePlans).where(eq(instancePlans.instanceId, id)).orderBy(asc(instancePlans.seq));
    expect(history.map((h) => [h.seq, h.planSlug])).toEqual([
      [0, "nano"],
      [1, "micro"],
    ]);

    // Metering splits the hour where the plan changed; the estimate prices each part on its own plan.
    await Bun.sleep(6000);
    await meterUsage(app.services, { sample: false });
    const estimate = await api.billing.estimate.query();
    const compute = estimate.soFar.lines.filter((l) => l.instanceId === id && l.kind === "compute");
    expect(compute.map((l) => [l.description, l.unitPriceMinor])).toEqual([
      ["grow (nano): compute", 1],
      ["grow (micro): compute", 2],
    ]);
    for (const line of compute) expect(line.quantity).toBeGreaterThan(0);

    await expectAppError(api.compute.instances.resize.mutate({ id, planId: "micro" }), "CONFLICT");
    await expectAppError(api.compute.instances.resize.mutate({ id, planId: "galactic" }), "PLAN_NOT_FOUND");
  });

  test("a stopped instance's new limits apply at its next start; quota is checked for the difference", async () => {
    const { api, user } = await customer();
    const created = await api.compute.instances.create.mutate({ name: "later", planId: "nano", imageId: "busybox" });
    expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
    const id = created.instance.id;
    await setUserQuota(app.services.db, user.id, { maxMemoryMb: 400 });
    const over = await expectAppError(api.compute.instances.resize.mutate({ id, planId: "micro" }), "QUOTA_EXCEEDED");
    expect(over.data.details).toMatchObject({ resource: "memoryMb", limit: 400, used: 0, requested: 512 });

    const stopped = await api.compute.instances.stop.mutate({ id });
    expect((await actionDone(api, stopped.actionId)).status).toBe("succeeded");
    // Stopped, it holds no memory: the resize is accepted, and its start is what needs the room.
    await setUserQuota(app.services.db, user.id, { maxMemoryMb: 1024 });
    const resized = await api.compute.instances.resize.mutate({ id, planId: "micro" });
    expect((await actionDone(api, resized.actionId)).status).toBe("succeeded");
    expect((await api.compute.instances.get.query({ id })).state).toBe("stopped");
    const started = await api.compute.instances.start.mutate({ id });
    expect((await actionDone(api, started.actionId)).status).toBe("succeeded");
    expect((await app.services.docker.getContainer(nameOf(id)).inspect()).HostConfig.Memory).toBe(512 * MIB);
  });

  test("while an action runs, or from a state other than running and stopped, a resize is INVALID_TRANSITION", async () => {
    const { api } = await customer();
    const created = await api.compute.instances.create.mutate({ name: "busy", planId: "nano", imageId: "busybox" });
    await expectAppError(api.compute.instances.resize.mutate({ id: created.instance.id, planId: "micro" }), "INVALID_TRANSITION");
    await actionDone(api, created.actionId);
  });
});

describe("the capacity rule", () => {
  test("a stopped instance gives its CPU and memory back; starting it needs them again", async () => {
    const { api, user } = await customer();
    await setUserQuota(app.services.db, user.id, { maxMemoryMb: 300 });
    const first = await api.compute.instances.create.mutate({ name: "first", planId: "nano", imageId: "busybox" });
    expect((await actionDone(api, first.actionId)).status).toBe("succeeded");
    await expectAppError(api.compute.instances.create.mutate({ name: "second", planId: "nano", imageId: "busybox" }), "QUOTA_EXCEEDED");
    const stopped = await api.compute.instances.stop.mutate({ id: first.instance.id });
    expect((await actionDone(api, stopped.actionId)).status).toBe("succeeded");
    const second = await api.compute.instances.create.mutate({ name: "second", planId: "nano", imageId: "busybox" });
    expect((await actionDone(api, second.actionId)).status).toBe("succeeded");
    const refused = await expectAppError(api.compute.instances.start.mutate({ id: first.instance.id }), "QUOTA_EXCEEDED");
    expect(refused.data.details).toMatchObject({ resource: "memoryMb", used: 256 });
    expect((await api.compute.instances.get.query({ id: first.instance.id })).state).toBe("stopped");
  });
});

describe("the invoice of a month with a resize", () => {
  test("has a compute line per plan, each at its price and capped at its share of the monthly price", async () => {
    const { user } = await customer();
    const period = previousPeriod(new Date());
    const start = period.start.getTime();
    const instance = await seedInstance(app.services, user.id, { name: "mid", createdAt: new Date(start + HOUR), state: "running" });
    await seedHistory(app.services, instance.id, [
      { from: null, to: "pending", at: new Date(start + HOUR), reason: "created" },
      { from: "pending", to: "provisioning", at: new Date(start + HOUR + 1000) },
      { from: "provisioning", to: "running", at: new Date(start + HOUR + 2000) },
    ]);
    const resizedAt = new Date(start + 10 * 24 * HOUR);
    const [micro] = await app.services.db.select().from(plans).where(eq(plans.slug, "micro"));
    await app.services.db.insert(instancePlans).values({
      instanceId: instance.id,
      seq: 1,
      planId: micro!.id,
      planSlug: "micro",
      cpuMillis: 500,
      memoryMb: 512,
      diskGb: 10,
      priceHourlyMinor: 2,
      priceMonthlyMinor: 800,
      currency: "USD",
      fromAt: resizedAt,
    });
    await runInvoicing(app.services, { period: period.name });

    const [invoice] = await app.services.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.userId, user.id), eq(invoices.period, period.name)));
    const lines = await app.services.db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, invoice!.id)).orderBy(asc(invoiceLines.position));
    const periodMs = period.end.getTime() - start;
    const nanoHours = (resizedAt.getTime() - (start + HOUR + 2000)) / HOUR;
    const microHours = (period.end.getTime() - resizedAt.getTime()) / HOUR;
    const nanoCap = Math.round((400 * (resizedAt.getTime() - start)) / periodMs);
    const microCap = Math.round((800 * (period.end.getTime() - resizedAt.getTime())) / periodMs);
    expect(lines.map((l) => [l.kind, l.description, l.unitPriceMinor, l.amountMinor])).toEqual([
      ["compute", `mid (nano): compute${Math.round(nanoHours) > nanoCap ? " (monthly cap)" : ""}`, 1, Math.min(Math.round(nanoHours), nanoCap)],
      ["compute", `mid (micro): compute${Math.round(microHours * 2) > microCap ? " (monthly cap)" : ""}`, 2, Math.min(Math.round(microHours * 2), microCap)],
    ]);
    expect(lines[0]!.quantity).toBeCloseTo(nanoHours, 3);
    expect(lines[1]!.quantity).toBeCloseTo(microHours, 3);
    // Never more than the larger plan's whole month.
    expect(invoice!.subtotalMinor).toBeLessThanOrEqual(800);
  });
});
