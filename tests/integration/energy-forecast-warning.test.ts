import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq, inArray } from "drizzle-orm";
import { energyEvents, instances, outboxEvents, powerNotices } from "../../db/schema";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { POWER_EMERGENCY_REASON } from "../../server/compute/states";
import { affectedBy, armedWarnings, recordForecastWarning } from "../../server/energy/forecast-warning";
import { lastBackToNormal, noticePowerEpisode, powerEpisodeOf } from "../../server/energy/notices";
import { recordLevelChange } from "../../server/energy/power";
import type { Services } from "../../server/services";
import { seedInstance } from "../harness/billing";
import { retireOtherInstances } from "../harness/compute";
import { resetEnergyState } from "../harness/serial";
import { startTestServices } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Who a forecast step down will touch, recorded as a forecast_warning event once
// per approach, and the owners told ahead of time (power.notice), once per episode.

let services: Services;
const ids = { batch: "", job: "", web: "", db: "", parked: "" };
const owners = { alice: "", bob: "" };

beforeAll(async () => {
  services = await startTestServices();
  await retireOtherInstances(services);
  await resetEnergyState(services.db);
  owners.alice = (await createUserWithSession(services)).user.id;
  owners.bob = (await createUserWithSession(services)).user.id;
  const make = async (owner: string, name: string, priority: "critical" | "standard" | "interruptible", state: "running" | "paused" = "running", throttled = false) => {
    const instance = await seedInstance(services, owner, { name, priority, state });
    if (throttled) await services.db.update(instances).set({ cpuThrottleMillis: 63, cpuThrottleReason: POWER_EMERGENCY_REASON }).where(eq(instances.id, instance.id));
    if (state === "paused") await services.db.update(instances).set({ stateReason: POWER_EMERGENCY_REASON }).where(eq(instances.id, instance.id));
    return instance.id;
  };
  ids.batch = await make(owners.alice, "batch", "interruptible");
  ids.job = await make(owners.bob, "job", "interruptible", "running", true);
  ids.parked = await make(owners.bob, "parked", "interruptible", "paused", true);
  ids.web = await make(owners.alice, "web", "standard");
  ids.db = await make(owners.bob, "db", "critical");
});
afterAll(async () => {
  await retireOtherInstances(services);
  await resetEnergyState(services.db);
  await services.close();
});

const pick = (list: Awaited<ReturnType<typeof affectedBy>>) => list.map((a) => [a.name, a.action]).sort();

describe("who a step down will affect", () => {
  test("conserve throttles running interruptible instances not yet throttled; critical pauses them; shutdown stops standard ones and paused ones too", async () => {
    expect(pick(await affectedBy(services.db, "conserve"))).toEqual([["batch", "throttle"]]);
    expect(pick(await affectedBy(services.db, "critical"))).toEqual([
      ["batch", "pause"],
      ["job", "pause"],
    ]);
    expect(pick(await affectedBy(services.db, "shutdown"))).toEqual([
      ["batch", "stop"],
      ["job", "stop"],
      ["parked", "stop"],
      ["web", "stop"],
    ]);
    // Critical instances are never affected.
    expect((await affectedBy(services.db, "shutdown")).some((a) => a.instanceId === ids.db)).toBe(false);
    expect(await affectedBy(services.db, "normal")).toEqual([]);
  });

  test("a warning is an event listing each affected instance with its owner; a restarted monitor knows it was given", async () => {
    const at = new Date();
    const { eventId, affected } = await recordForecastWarning(services.db, {
      level: "critical",
      thresholdSoc: 30,
      at,
      earliestAt: new Date(at.getTime() + 40 * 60_000),
      expectedAt: new Date(at.getTime() + 65 * 60_000),
      soc: 34.2,
    });
    expect(affected.map((a) => a.userId).sort()).toEqual([owners.alice, owners.bob].sort());
    const [event] = await services.db.select().from(energyEvents).where(eq(energyEvents.id, eventId));
    expect(event).toMatchObject({ kind: "forecast_warning", severity: "warning" });
    expect(event!.message).toBe("The battery (34.2 %) is forecast to fall below 30 % in 40 min at the earliest: power level critical would affect 2 instances of 2 tenants");
    expect(event!.details).toMatchObject({
      level: "critical",
      thresholdSoc: 30,
      soc: 34.2,
      affected: expect.arrayContaining([expect.objectContaining({ instanceId: ids.batch, userId: owners.alice, action: "pause", priority: "interruptible" })]),
    });

    expect([...(await armedWarnings(services.db, "normal"))]).toEqual(["critical"]);
    // Once the level has changed, the approach is over: a new one is warned about afresh.
    await recordLevelChange(services.db, { from: "normal", to: "critical", at: new Date(at.getTime() + 1000), soc: 29.5, reading: {}, policy: DEFAULT_POLICY });
    expect([...(await armedWarnings(services.db, "critical"))]).toEqual([]);
  });

  test("owners of the instances a step will pause or stop hear ahead of it, once per episode; the level change does not tell them again", async () => {
    const notices = async () =>
      (
        await services.db
          .select({ data: outboxEvents.data })
          .from(outboxEvents)
          .where(and(eq(outboxEvents.type, "power.notice"), inArray(outboxEvents.userId, [owners.alice, owners.bob])))
      ).map((row) => row.data as { instanceId: string; action: string; level: string; expectedAt: string; episodeId: string });
    // A fresh approach: the warning in the test above already told these owners.
    await resetEnergyState(services.db);
    await services.db.delete(powerNotices).where(inArray(powerNotices.instanceId, Object.values(ids)));
    const before = (await notices()).length;

    const at = new Date();
    const earliestAt = new Date(at.getTime() + 30 * 60_000);
    const { eventId } = await recordForecastWarning(services.db, { level: "critical", thresholdSoc: 30, at, earliestAt, expectedAt: null, soc: 33 });
    const ahead = (await notices()).slice(before);
    // batch and job will be paused; the standard and critical ones are untouched at critical.
    expect(ahead.map((n) => [n.instanceId, n.action]).sort()).toEqual(
      [
        [ids.batch, "pause"],
        [ids.job, "pause"],
      ].sort(),
    );
    for (const notice of ahead) expect(notice).toMatchObject({ level: "critical", expectedAt: earliestAt.toISOString(), episodeId: `forecast-${eventId}` });

    // A later forecast of shutdown in the same approach tells only those not told yet.
    await recordForecastWarning(services.db, { level: "shutdown", thresholdSoc: 15, at, earliestAt, expectedAt: null, soc: 33 });
    const more = (await notices()).slice(before + ahead.length);
    expect(more.map((n) => [n.instanceId, n.action]).sort()).toEqual(
      [
        [ids.parked, "stop"],
        [ids.web, "stop"],
      ].sort(),
    );

    // The level change itself (the emergency worker's call) adds nothing for the instances already told.
    const change = (await recordLevelChange(services.db, { from: "normal", to: "shutdown", at: new Date(), soc: 14, reading: {}, policy: DEFAULT_POLICY }))!;
    const noticed = await noticePowerEpisode(services.db, {
      level: "shutdown",
      expectedAt: new Date(),
      instanceIds: [ids.batch, ids.job, ids.parked, ids.web, ids.db],
      episodeId: await powerEpisodeOf(services.db, change),
      coveredSince: await lastBackToNormal(services.db, change.seq),
    });
    expect(noticed).toEqual([]);
  });
});
