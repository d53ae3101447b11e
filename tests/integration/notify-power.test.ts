import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, asc, eq, inArray } from "drizzle-orm";
import { outboxEvents, powerNotices } from "../../db/schema";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { syncHosts } from "../../server/compute/hosts";
import { enforcePowerLevel } from "../../server/energy/emergency";
import type { PowerLevel } from "../../server/energy/levels";
import { noticePowerEpisode } from "../../server/energy/notices";
import { currentPowerLevel, dispatchPowerEmergency, recordLevelChange } from "../../server/energy/power";
import { emergencyProcessor } from "../../workers/emergency";
import { lifecycleProcessor } from "../../workers/lifecycle";
import { mailProcessor } from "../../workers/mail";
import { notifyProcessor } from "../../workers/notify";
import { actionDone, retireOtherInstances } from "../harness/compute";
import { resetEnergyState } from "../harness/serial";
import { eventually, startTestServer, startTestServices, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// A power episode on real containers: the level drops to critical (the
// emergency worker pauses interruptible instances through the lifecycle
// worker and Docker) and comes back to normal (they resume). Their owners get
// one notice ahead of the pause, one paused and one resumed event per
// instance, and nothing about instances the level leaves alone.

let app: TestServer;
const owners: Array<Awaited<ReturnType<typeof createUserWithSession>>> = [];
const ids = { batchA: "", dbA: "", batchB: "", webB: "" };

beforeAll(async () => {
  const earlier = await startTestServices();
  await resetEnergyState(earlier.db);
  await earlier.queues.queue("emergency").obliterate({ force: true });
  await retireOtherInstances(earlier);
  await earlier.close();

  app = await startTestServer({
    workers: [lifecycleProcessor, emergencyProcessor, notifyProcessor, mailProcessor],
    env: { EMERGENCY_RESUME_STAGGER_MS: "200", EMERGENCY_ENFORCE_INTERVAL_MS: "600000", NOTIFY_POLL_MS: "100" },
  });
  await syncHosts(app.services);
  owners.push(await createUserWithSession(app.services), await createUserWithSession(app.services));
  const launch = async (owner: number, name: string, priority: "interruptible" | "standard" | "critical") => {
    const api = app.client({ token: owners[owner]!.token });
    const { instance, actionId } = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox", priority });
    expect((await actionDone(api, actionId)).status).toBe("succeeded");
    return instance.id;
  };
  ids.batchA = await launch(0, "batch", "interruptible");
  ids.dbA = await launch(0, "db", "critical");
  ids.batchB = await launch(1, "batch", "interruptible");
  ids.webB = await launch(1, "web", "standard");
}, 90_000);

afterAll(async () => {
  await resetEnergyState(app.services.db);
  for (const [i, owner] of owners.entries()) {
    const api = app.client({ token: owner.token });
    for (const id of i === 0 ? [ids.batchA, ids.dbA] : [ids.batchB, ids.webB]) {
      const deleted = await api.compute.instances.delete.mutate({ id }).catch(() => null);
      if (deleted) await actionDone(api, deleted.actionId);
    }
  }
  await app.close();
}, 60_000);

async function changeLevel(to: PowerLevel) {
  const { db, queues } = app.services;
  const from = await currentPowerLevel(db);
  const soc = { normal: 80, conserve: 45, critical: 25, shutdown: 10 }[to];
  const change = await recordLevelChange(db, { from, to, at: new Date(), soc, reading: { soc }, policy: DEFAULT_POLICY });
  if (!change) throw new Error(`could not record ${from} → ${to}`);
  await dispatchPowerEmergency(db, queues, change);
  return change;
}

const instanceState = (owner: number, id: string) => app.client({ token: owners[owner]!.token }).compute.instances.get.query({ id });
const settled = (owner: number, id: string, state: string) =>
  eventually(
    () => instanceState(owner, id),
    (i) => i.state === state,
    { timeoutMs: 30_000, what: `${id} to be ${state}` },
  );

/** Power events about each instance, in the order they were written. */
async function powerEvents(instanceIds: string[]) {
  const rows = await app.services.db
    .select()
    .from(outboxEvents)
    .where(inArray(outboxEvents.type, ["power.notice", "power.paused", "power.resumed"]))
    .orderBy(asc(outboxEvents.seq));
  return Object.fromEntries(instanceIds.map((id) => [id, rows.filter((r) => r.data.instanceId === id)]));
}

describe("a power episode", () => {
  test("gives each paused instance's owner one notice before the pause, one paused and one resumed event; instances the level spares get none", async () => {
    const critical = await changeLevel("critical");
    await settled(0, ids.batchA, "paused");
    await settled(1, ids.batchB, "paused");
    // More passes at the same level (each reading, the periodic pass) notify nobody again.
    await enforcePowerLevel(app.services);
    await enforcePowerLevel(app.services);
    await changeLevel("normal");
    await settled(0, ids.batchA, "running");
    await settled(1, ids.batchB, "running");
    expect((await instanceState(0, ids.dbA)).state).toBe("running");
    expect((await instanceState(1, ids.webB)).state).toBe("running");

    const events = await powerEvents([ids.batchA, ids.batchB, ids.dbA, ids.webB]);
    for (const [owner, id] of [
      [0, ids.batchA],
      [1, ids.batchB],
    ] as const) {
      expect(events[id]!.map((e) => e.type)).toEqual(["power.notice", "power.paused", "power.resumed"]);
      expect(events[id]!.every((e) => e.userId === owners[owner]!.user.id)).toBe(true);
      expect(events[id]![0]!.data).toMatchObject({ instanceId: id, name: "batch", priority: "interruptible", level: "critical", action: "pause", episodeId: critical.id });
      expect(events[id]![1]!.data).toMatchObject({ instanceId: id, state: "paused" });
    }
    expect(events[ids.dbA]).toEqual([]);
    expect(events[ids.webB]).toEqual([]);
    expect(await app.services.db.select().from(powerNotices).where(eq(powerNotices.episodeId, critical.id))).toHaveLength(2);

    // The owner sees all three in the notification centre, newest first.
    const api = app.client({ token: owners[0]!.token });
    const centre = await eventually(
      () => api.notifications.list.query(),
      (list) => list.items.filter((n) => n.type.startsWith("power.")).length === 3,
      { what: "the power notifications", timeoutMs: 20_000 },
    );
    expect(centre.items.filter((n) => n.type.startsWith("power.")).map((n) => n.type)).toEqual(["power.resumed", "power.paused", "power.notice"]);
    expect(centre.items.find((n) => n.type === "power.notice")!.title).toBe("batch will be paused to save power");
  }, 90_000);

  test("one notice per episode and instance however often it is asked for; a new episode notifies again", async () => {
    const episode = `forecast-${crypto.randomUUID()}`;
    const ask = () => noticePowerEpisode(app.services.db, { level: "shutdown", expectedAt: new Date(Date.now() + 3_600_000), instanceIds: [ids.batchA, ids.webB, ids.dbA], episodeId: episode });
    // Shutdown stops interruptible and standard instances; critical ones are never noticed.
    const [first, second, third] = await Promise.all([ask(), ask(), ask()]);
    expect([...first!, ...second!, ...third!].sort()).toEqual([ids.batchA, ids.webB].sort());
    expect(await ask()).toEqual([]);
    const notices = await app.services.db
      .select()
      .from(outboxEvents)
      .where(
        and(
          eq(outboxEvents.type, "power.notice"),
          inArray(
            outboxEvents.userId,
            owners.map((o) => o.user.id),
          ),
        ),
      );
    const mine = notices.filter((n) => n.data.episodeId === episode);
    expect(mine.map((n) => [n.data.instanceId, n.data.action]).sort()).toEqual(
      [
        [ids.batchA, "stop"],
        [ids.webB, "stop"],
      ].sort(),
    );
    const other = await noticePowerEpisode(app.services.db, { level: "shutdown", expectedAt: new Date(), instanceIds: [ids.batchA], episodeId: `${episode}-next` });
    expect(other).toEqual([ids.batchA]);
  });
});
