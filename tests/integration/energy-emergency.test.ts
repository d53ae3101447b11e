import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import { auditLog, energyEvents, energyLevelChanges, hosts, instanceActions, instances } from "../../db/schema";
import { startMonitor, type Monitor } from "../../hardware/monitor";
import { DEFAULT_POLICY, type PowerPolicy } from "../../hardware/policy";
import type { PtyPair } from "../../hardware/pty-pair";
import { systemActor } from "../../server/auth/actor";
import { freezeGroupOf, groupFrozen, setGroupFrozen } from "../../server/compute/freezer";
import { syncHosts } from "../../server/compute/hosts";
import { stateHistory } from "../../server/compute/instances";
import { reconcileInstance } from "../../server/compute/reconcile";
import { POWER_EMERGENCY_REASON, type InstancePriority } from "../../server/compute/states";
import { enforcePowerLevel, handlePowerEmergency, InstancesBusyError, POWER_RESTORED_REASON } from "../../server/energy/emergency";
import type { PowerLevel } from "../../server/energy/levels";
import { updatePowerPolicy } from "../../server/energy/policy";
import { throttledCpuMillis } from "../../server/energy/restrictions";
import { currentPowerLevel, dispatchPowerEmergency, powerEmergencyPayload, recordLevelChange } from "../../server/energy/power";
import { actionDone, frozenProbe, retireOtherInstances } from "../harness/compute";
import { testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { openTestPtyPair, resetEnergyState, startSimulator } from "../harness/serial";
import { eventually, startTestServer, startTestServices, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// The whole chain on real parts: a simulated controller writes VE.Direct bytes
// into one end of a socat pty pair, the serial bridge (Node + serialport) reads
// the other, the monitor decodes them and runs the power policy, each level
// change becomes a power-emergency job, the emergency worker requests pauses,
// stops and starts from compute, and the lifecycle worker applies them to real
// containers in the Docker engine.

const STAGGER_MS = 600;
let app: TestServer;
let api: ReturnType<TestServer["client"]>;
let pair: PtyPair;
let hook: ReturnType<typeof Bun.serve>;
const signals: Array<{ signal: string; from: string; to: string; changeId: string }> = [];
let monitor: Monitor | undefined;
let sim: ReturnType<typeof startSimulator> | undefined;
const ids: Record<"batch" | "web" | "db" | "idle", string> = { batch: "", web: "", db: "", idle: "" };

beforeAll(async () => {
  // Before any worker of this file runs: no level, no emergency job, no instance left by other files.
  const earlier = await startTestServices();
  await resetEnergyState(earlier.db);
  await earlier.queues.queue("emergency").obliterate({ force: true });
  await retireOtherInstances(earlier);
  await earlier.close();

  pair = await openTestPtyPair("emergency");
  hook = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      signals.push((await req.json()) as (typeof signals)[number]);
      return new Response(null, { status: 204 });
    },
  });
  app = await startTestServer({
    workers: true,
    env: {
      SERIAL_PORT: pair.host,
      ENERGY_SAMPLE_SECONDS: "1",
      ENERGY_TELEMETRY_TIMEOUT_MS: "3000",
      BACKUP_HOOK_URL: `http://127.0.0.1:${hook.port}/backup`,
      BACKUP_HOOK_LEVEL: "critical",
      EMERGENCY_RESUME_STAGGER_MS: String(STAGGER_MS),
      // The passes under test are the level-change jobs; the periodic one would only repeat them.
      EMERGENCY_ENFORCE_INTERVAL_MS: "600000",
    },
  });
  await syncHosts(app.services);
  await setPolicy({ dwellSeconds: 1, recoveryDwellSeconds: 1 });

  const owner = await createUserWithSession(app.services);
  api = app.client({ token: owner.token });
  const launch = async (name: string, priority: InstancePriority) => {
    const { instance, actionId } = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox", priority });
    expect((await actionDone(api, actionId)).status).toBe("succeeded");
    return instance.id;
  };
  ids.batch = await launch("batch", "interruptible");
  ids.web = await launch("web", "standard");
  ids.db = await launch("db", "critical");
  ids.idle = await launch("idle", "standard");
  // Stopped by its owner: no recovery may start it.
  const stopped = await api.compute.instances.stop.mutate({ id: ids.idle });
  expect((await actionDone(api, stopped.actionId)).status).toBe("succeeded");
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  await monitor?.stop();
  // Energy state is platform-wide: leave the level at normal for the other files.
  await resetEnergyState(app.services.db);
  for (const id of Object.values(ids).filter(Boolean)) {
    const deleted = await api.compute.instances.delete.mutate({ id }).catch(() => null);
    if (deleted) await actionDone(api, deleted.actionId);
  }
  await app.close();
  await hook.stop(true);
  await pair.close();
}, 60_000);

const containerOf = (instanceId: string) => `${testRun.dockerNamespace}-${instanceId}`;
const setPolicy = (over: Partial<PowerPolicy>) => updatePowerPolicy(app.services.db, { actor: systemActor("test") }, { ...DEFAULT_POLICY, ...over });

/** What the engine says: paused, running, not running, or no container (yet). */
async function engineState(instanceId: string): Promise<"paused" | "running" | "exited" | "absent"> {
  const info = await app.services.docker
    .getContainer(containerOf(instanceId))
    .inspect()
    .catch((error) => {
      if ((error as { statusCode?: number }).statusCode === 404) return null;
      throw error;
    });
  if (!info) return "absent";
  return info.State.Paused ? "paused" : info.State.Running ? "running" : "exited";
}

/** Waits until both the instance and its container are in the given state. */
function settled(instanceId: string, state: "running" | "paused" | "stopped", timeoutMs = 20_000) {
  const engine = state === "stopped" ? "exited" : state;
  return eventually(
    async () => ({ instance: await api.compute.instances.get.query({ id: instanceId }), engine: await engineState(instanceId) }),
    (s) => s.instance.state === state && s.engine === engine,
    { timeoutMs, intervalMs: 100, what: `instance ${instanceId} to be ${state}` },
  );
}

const actionsOf = (instanceId: string) => app.services.db.select().from(instanceActions).where(eq(instanceActions.instanceId, instanceId)).orderBy(asc(instanceActions.createdAt));
const historyOf = async (instanceId: string) => (await stateHistory(app.services.db, instanceId)).map((h) => [h.from, h.to, h.reason]);
const levelChanges = () => app.services.db.select().from(energyLevelChanges).orderBy(asc(energyLevelChanges.seq));
const eventsOf = (kind: (typeof energyEvents.$inferSelect)["kind"]) => app.services.db.select().from(energyEvents).where(eq(energyEvents.kind, kind)).orderBy(asc(energyEvents.at));

async function startMonitorAndSim(args: string[]) {
  monitor ??= await startMonitor(app.services);
  await eventually(
    async () => monitor!.status().bridge.state,
    (s) => s === "running",
    { what: "the bridge to open the port" },
  );
  sim = startSimulator(pair.device, args);
}

async function stopSim() {
  await sim?.stop();
  sim = undefined;
}

function levelReaches(level: PowerLevel, timeoutMs = 40_000) {
  return eventually(
    async () => monitor!.status().level,
    (l) => l === level,
    { timeoutMs, intervalMs: 50, what: `power level ${level}` },
  );
}

/** A level change recorded directly (as the monitor would), optionally with its job. */
async function changeLevel(to: PowerLevel, opts: { dispatch?: boolean } = {}) {
  const { db, queues } = app.services;
  const from = await currentPowerLevel(db);
  const soc = { normal: 80, conserve: 45, critical: 25, shutdown: 10 }[to];
  const change = await recordLevelChange(db, { from, to, at: new Date(), soc, reading: { soc }, policy: DEFAULT_POLICY });
  if (!change) throw new Error(`could not record ${from} → ${to}`);
  if (opts.dispatch ?? true) await dispatchPowerEmergency(db, queues, change);
  return change;
}

describe("a night drain read from the serial line", () => {
  test("at critical the running interruptible container is paused in Docker, standard and critical ones keep running, backup power is asked for", async () => {
    await startMonitorAndSim(["--scenario", "night-drain", "--soc", "55", "--speed", "1200", "--rate", "10"]);
    await levelReaches("critical");
    // Silence holds the level at critical while we look (losing telemetry never changes the level).
    await stopSim();

    const batch = await settled(ids.batch, "paused");
    expect(batch.instance.stateReason).toBe(POWER_EMERGENCY_REASON);
    expect((await stateHistory(app.services.db, ids.batch)).at(-1)).toMatchObject({ from: "running", to: "paused", reason: POWER_EMERGENCY_REASON, actorType: "system" });
    expect(await engineState(ids.web)).toBe("running");
    expect(await engineState(ids.db)).toBe("running");
    expect((await api.compute.instances.get.query({ id: ids.web })).state).toBe("running");

    // Audited as the emergency worker's own action.
    const [audit] = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "compute.instance.pause"), eq(auditLog.targetId, ids.batch)));
    expect(audit).toMatchObject({ actorType: "system", reason: POWER_EMERGENCY_REASON, metadata: expect.objectContaining({ system: "power-emergency" }) });
    // And visible to operators in the energy event log.
    const shed = await eventsOf("instances_shed");
    expect(shed.at(-1)!.details).toMatchObject({ level: "critical", paused: [ids.batch], stopped: [] });
    expect(shed.at(-1)!.message).toBe("Power level critical: paused 1 instance");

    await eventually(
      async () => signals.length,
      (n) => n >= 1,
      { what: "the backup hook to be called" },
    );
    expect(signals.map((s) => [s.signal, s.to])).toEqual([["switch-to-backup", "critical"]]);
  }, 60_000);

  test("at critical new interruptible and standard instances are refused, and so is starting a stopped standard one", async () => {
    expect(await currentPowerLevel(app.services.db)).toBe("critical");
    const interruptible = await expectAppError(api.compute.instances.create.mutate({ name: "late-batch", planId: "nano", imageId: "busybox", priority: "interruptible" }), "POWER_RESTRICTED");
    expect(interruptible.data.details).toEqual({ level: "critical", priority: "interruptible" });
    expect(interruptible.data.httpStatus).toBe(503);
    const standard = await expectAppError(api.compute.instances.create.mutate({ name: "late-web", planId: "nano", imageId: "busybox" }), "POWER_RESTRICTED");
    expect(standard.data.details).toEqual({ level: "critical", priority: "standard" });
    const start = await expectAppError(api.compute.instances.start.mutate({ id: ids.idle }), "POWER_RESTRICTED");
    expect(start.data.details).toEqual({ level: "critical", priority: "standard" });
    // Nothing half-written.
    expect((await api.compute.instances.list.query()).items.map((i) => i.name).sort()).toEqual(["batch", "db", "idle", "web"]);
    expect((await api.compute.instances.get.query({ id: ids.idle })).state).toBe("stopped");
  });

  test("at shutdown standard and interruptible instances are stopped gracefully, the critical one keeps running", async () => {
    await startMonitorAndSim(["--scenario", "night-drain", "--soc", "22", "--speed", "1200", "--rate", "10"]);
    await levelReaches("shutdown");
    await stopSim();

    await settled(ids.web, "stopped");
    await settled(ids.batch, "stopped");
    expect(await engineState(ids.db)).toBe("running");
    expect((await historyOf(ids.web)).slice(-2)).toEqual([
      ["running", "stopping", POWER_EMERGENCY_REASON],
      ["stopping", "stopped", POWER_EMERGENCY_REASON],
    ]);
    // Paused at critical, then stopped: a paused container still holds its memory.
    expect((await historyOf(ids.batch)).slice(-3)).toEqual([
      ["running", "paused", POWER_EMERGENCY_REASON],
      ["paused", "stopping", POWER_EMERGENCY_REASON],
      ["stopping", "stopped", POWER_EMERGENCY_REASON],
    ]);
    // A graceful stop (SIGTERM through the init), not a kill.
    const web = await app.services.docker.getContainer(containerOf(ids.web)).inspect();
    expect(web.State.OOMKilled).toBe(false);
    expect(web.State.ExitCode).not.toBe(137);
    // The critical instance was never touched.
    expect((await historyOf(ids.db)).map(([, to]) => to)).toEqual(["pending", "provisioning", "running"]);
    // Crossing into shutdown from critical is still "on backup": no second signal.
    expect(signals.map((s) => s.signal)).toEqual(["switch-to-backup"]);
  }, 60_000);

  test("recovery brings them back most important first — standard at conserve, interruptible at normal — but not the one its owner stopped", async () => {
    const before = (await levelChanges()).length;
    await startMonitorAndSim(["--scenario", "recovery", "--soc", "10", "--pv-peak", "200", "--speed", "1800", "--rate", "10"]);
    await levelReaches("normal");
    await stopSim();

    await settled(ids.web, "running");
    await settled(ids.batch, "running");
    const ups = (await levelChanges()).slice(before);
    expect(ups.map((c) => `${c.fromLevel}>${c.toLevel}`)).toEqual(["shutdown>critical", "critical>conserve", "conserve>normal"]);
    const restored = await eventsOf("instances_restored");
    expect(restored.map((e) => [e.levelChangeId, e.details])).toEqual([
      [ups[1]!.id, { level: "conserve", resumed: [], started: [ids.web], unthrottled: [], superseded: false }],
      // Throttled at conserve on the way down: its CPU comes back with the start.
      [ups[2]!.id, { level: "normal", resumed: [], started: [ids.batch], unthrottled: [ids.batch], superseded: false }],
    ]);
    expect((await api.compute.instances.get.query({ id: ids.batch })).cpuThrottle).toBeNull();
    expect((await historyOf(ids.web)).slice(-2)).toEqual([
      ["stopped", "provisioning", POWER_RESTORED_REASON],
      ["provisioning", "running", POWER_RESTORED_REASON],
    ]);

    const idle = await api.compute.instances.get.query({ id: ids.idle });
    expect(idle).toMatchObject({ state: "stopped", stateReason: "requested" });
    expect((await actionsOf(ids.idle)).map((a) => a.kind)).toEqual(["create", "stop"]);
    expect(await engineState(ids.idle)).toBe("exited");
    expect((await historyOf(ids.db)).map(([, to]) => to)).toEqual(["pending", "provisioning", "running"]);

    // Leaving critical hands the load back to solar, once.
    await eventually(
      async () => signals.length,
      (n) => n >= 2,
      { what: "switch-to-solar" },
    );
    expect(signals.map((s) => [s.signal, s.to])).toEqual([
      ["switch-to-backup", "critical"],
      ["switch-to-solar", "conserve"],
    ]);
    expect(signals[1]!.changeId).toBe(ups[1]!.id);
  }, 90_000);
});

describe("a state of charge flapping around the critical threshold", () => {
  test("pauses the interruptible container once and never churns it", async () => {
    const before = (await levelChanges()).length;
    const actionsBefore = (await actionsOf(ids.batch)).length;
    await startMonitorAndSim(["--scenario", "clouds", "--around", "30", "--swing", "2", "--speed", "2400", "--rate", "10"]);
    let crossings = 0;
    let side = 0;
    await eventually(
      async () => {
        const soc = monitor!.status().lastReading?.soc;
        if (soc !== null && soc !== undefined && soc !== 30) {
          const now = Math.sign(soc - 30);
          if (side !== 0 && now !== side) crossings++;
          side = now;
        }
        return crossings;
      },
      (n) => n >= 6,
      { timeoutMs: 40_000, intervalMs: 25, what: "six crossings of the critical threshold" },
    );
    await stopSim();
    await monitor!.settled();

    const during = (await levelChanges()).slice(before);
    // Down once (possibly through conserve first), never back up.
    expect(during.at(-1)!.toLevel).toBe("critical");
    expect(during.filter((c) => c.toLevel === "normal" || (c.fromLevel === "critical" && c.toLevel === "conserve"))).toHaveLength(0);
    const batch = await settled(ids.batch, "paused");
    expect(batch.instance.stateReason).toBe(POWER_EMERGENCY_REASON);
    // Throttled first if the level passed through conserve, then paused once; never resumed.
    const actions = (await actionsOf(ids.batch)).slice(actionsBefore).map((a) => [a.kind, a.reason]);
    expect(actions.at(-1)).toEqual(["pause", POWER_EMERGENCY_REASON]);
    expect(actions.slice(0, -1).every(([kind, reason]) => kind === "throttle" && reason === POWER_EMERGENCY_REASON)).toBe(true);
    expect(actions.length).toBeLessThanOrEqual(2);
    expect(await engineState(ids.web)).toBe("running");
    await monitor!.stop();
    monitor = undefined;
  }, 60_000);

  test("a level change recorded without its job, then its job delivered late and twice, converges with one action", async () => {
    // Back to normal as a recovery job would do it, so the next steps start from a running instance.
    await changeLevel("normal");
    await settled(ids.batch, "running");
    const { db } = app.services;
    const actionsBefore = (await actionsOf(ids.batch)).length;

    // Critical recorded; its job delivered twice at once (a redelivery racing the first).
    const critical = await changeLevel("critical", { dispatch: false });
    const job = powerEmergencyPayload(critical);
    const results = await Promise.allSettled([handlePowerEmergency(app.services, job), handlePowerEmergency(app.services, job)]);
    expect(results.some((r) => r.status === "fulfilled")).toBe(true);
    await settled(ids.batch, "paused");
    // And once more, after the fact: nothing left to do.
    const again = await handlePowerEmergency(app.services, job);
    expect(again).toMatchObject({ stale: false, level: "critical", shed: [], restored: [], deferred: [] });
    expect((await actionsOf(ids.batch)).slice(actionsBefore).map((a) => a.kind)).toEqual(["pause"]);

    // The level recovers; the old critical job arrives only now. It is stale: it
    // converges to normal (resuming) instead of applying its own `to` (pausing).
    const normal = await changeLevel("normal", { dispatch: false });
    const stale = await handlePowerEmergency(app.services, job);
    expect(stale).toMatchObject({ stale: true, level: "normal", changeId: normal.id, shed: [] });
    expect(stale.restored.map((s) => [s.instanceId, s.action])).toEqual([[ids.batch, "resume"]]);
    await settled(ids.batch, "running");
    expect((await handlePowerEmergency(app.services, powerEmergencyPayload(normal))).restored).toEqual([]);
    expect((await actionsOf(ids.batch)).slice(actionsBefore).map((a) => [a.kind, a.reason, a.status])).toEqual([
      ["pause", POWER_EMERGENCY_REASON, "succeeded"],
      ["resume", POWER_RESTORED_REASON, "succeeded"],
    ]);
    // The backup hook followed the level, not the jobs: critical asked for backup, normal handed back.
    expect(signals.slice(-2).map((s) => [s.signal, s.changeId])).toEqual([
      ["switch-to-backup", critical.id],
      ["switch-to-solar", normal.id],
    ]);
    expect(
      await db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.action, "energy.backup.signalled"), eq(auditLog.targetId, normal.id))),
    ).toHaveLength(1);
  }, 60_000);
});

describe("a recovery hard on the heels of a drop", () => {
  test("resumes an instance even when the emergency's own pause was still being applied", async () => {
    const critical = await changeLevel("critical", { dispatch: false });
    const shed = await handlePowerEmergency(app.services, powerEmergencyPayload(critical));
    expect(shed.shed.map((s) => [s.instanceId, s.action])).toEqual([[ids.batch, "pause"]]);
    // The level is back before (or just after) the lifecycle worker has paused the container.
    const normal = await changeLevel("normal", { dispatch: false });
    const recovery = await handlePowerEmergency(app.services, powerEmergencyPayload(normal)).catch((error: Error) => error);
    if (recovery instanceof Error) {
      // The pause was still in flight: the job asks to be retried, and its retry resumes it.
      expect(recovery).toBeInstanceOf(InstancesBusyError);
      expect(recovery.message).toContain(ids.batch);
      await dispatchPowerEmergency(app.services.db, app.services.queues, normal);
    } else {
      expect(recovery.restored.map((s) => [s.instanceId, s.action])).toEqual([[ids.batch, "resume"]]);
    }
    const batch = await settled(ids.batch, "running");
    expect(batch.instance.stateReason).toBe(POWER_RESTORED_REASON);
  }, 30_000);
});

describe("recovery after a jump from shutdown to normal", () => {
  test("restarts one instance at a time, EMERGENCY_RESUME_STAGGER_MS apart, the standard one before the interruptible one", async () => {
    const since = new Date();
    await changeLevel("shutdown");
    await settled(ids.web, "stopped");
    await settled(ids.batch, "stopped");
    await changeLevel("normal");
    await settled(ids.web, "running");
    await settled(ids.batch, "running");

    const starts = await app.services.db
      .select()
      .from(instanceActions)
      .where(and(inArray(instanceActions.instanceId, [ids.web, ids.batch]), eq(instanceActions.kind, "start"), gt(instanceActions.createdAt, since)))
      .orderBy(asc(instanceActions.createdAt));
    expect(starts.map((a) => a.instanceId)).toEqual([ids.web, ids.batch]);
    expect(starts[1]!.createdAt.getTime() - starts[0]!.createdAt.getTime()).toBeGreaterThanOrEqual(STAGGER_MS);
    expect(starts.every((a) => a.reason === POWER_RESTORED_REASON && a.actorType === "system")).toBe(true);
  }, 60_000);
});

describe("power admission over the API", () => {
  test("each level refuses new instances of the priorities it sheds or protects against, with the level and priority", async () => {
    const expected: Record<PowerLevel, InstancePriority[]> = { normal: [], conserve: ["interruptible"], critical: ["interruptible", "standard"], shutdown: ["interruptible", "standard"] };
    for (const level of ["conserve", "critical", "shutdown"] as const) {
      await changeLevel(level, { dispatch: false });
      for (const priority of expected[level]) {
        const refused = await expectAppError(api.compute.instances.create.mutate({ name: `new-${priority}`, planId: "nano", imageId: "busybox", priority }), "POWER_RESTRICTED");
        expect(refused.data.details).toEqual({ level, priority });
      }
    }
    // Critical work is still admitted at shutdown.
    const created = await api.compute.instances.create.mutate({ name: "failover", planId: "nano", imageId: "busybox", priority: "critical" });
    expect(created.instance).toMatchObject({ state: "pending", priority: "critical" });
    expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
    const deleted = await api.compute.instances.delete.mutate({ id: created.instance.id });
    expect((await actionDone(api, deleted.actionId)).status).toBe("succeeded");
    await changeLevel("normal", { dispatch: false });
    expect((await api.compute.instances.list.query()).items.map((i) => i.name).sort()).toEqual(["batch", "db", "idle", "web"]);
  });

  test("an instance accepted just before the level drops is paused once it is running", async () => {
    const { instance } = await api.compute.instances.create.mutate({ name: "just-in-time", planId: "nano", imageId: "busybox", priority: "interruptible" });
    const critical = await changeLevel("critical", { dispatch: false });
    // The first pass finds it still being provisioned: it sheds the rest and asks to be retried.
    const first = handlePowerEmergency(app.services, powerEmergencyPayload(critical));
    await expect(first).rejects.toBeInstanceOf(InstancesBusyError);
    await expect(first).rejects.toThrow(instance.id);
    await settled(ids.batch, "paused");
    // The job itself, retried with backoff, gets it once it runs.
    await dispatchPowerEmergency(app.services.db, app.services.queues, critical);
    const paused = await settled(instance.id, "paused");
    expect(paused.instance.stateReason).toBe(POWER_EMERGENCY_REASON);
    expect((await actionsOf(instance.id)).map((a) => a.kind)).toEqual(["create", "pause"]);

    const deleted = await api.compute.instances.delete.mutate({ id: instance.id });
    expect((await actionDone(api, deleted.actionId)).status).toBe("succeeded");
    await changeLevel("normal");
    await settled(ids.batch, "running");
  }, 60_000);
});

describe("the periodic pass", () => {
  test("puts back what drifted while the level held: a container unpaused behind the platform's back is paused again", async () => {
    const scheduler = await app.services.queues.queue("emergency").getJobScheduler("emergency-enforce");
    expect(scheduler).toMatchObject({ name: "enforce", every: 600_000 });

    await changeLevel("critical");
    await settled(ids.batch, "paused");
    await app.services.docker.getContainer(containerOf(ids.batch)).unpause();
    // The reconciler records it, from the Docker event or from this pass, whichever comes first.
    await eventually(
      async () => {
        await reconcileInstance(app.services, ids.batch);
        return (await api.compute.instances.get.query({ id: ids.batch })).stateReason;
      },
      (reason) => reason === "container was unpaused outside the platform",
      { what: "the unpause to be reconciled" },
    );
    const pass = await enforcePowerLevel(app.services);
    expect(pass.shed.map((s) => [s.instanceId, s.action])).toEqual([[ids.batch, "pause"]]);
    await settled(ids.batch, "paused");
    await changeLevel("normal");
    await settled(ids.batch, "running");
  }, 60_000);
});

describe("the ladder: throttle before pause", () => {
  /** The container's CPU quota as Docker reports it (`docker inspect` HostConfig.NanoCpus). */
  const nanoCpus = async (instanceId: string) => (await app.services.docker.getContainer(containerOf(instanceId)).inspect()).HostConfig.NanoCpus;
  const lastActionDone = async (instanceId: string) =>
    (
      await eventually(
        () => actionsOf(instanceId),
        (actions) => actions.at(-1)?.status === "succeeded",
        { what: `the last action on ${instanceId} to finish` },
      )
    ).at(-1)!;
  const quota = (instanceId: string, expected: number) =>
    eventually(
      () => nanoCpus(instanceId),
      (n) => n === expected,
      { what: `the CPU quota of ${instanceId} to be ${expected}` },
    );

  /** The plan's quota and the throttled one (EMERGENCY_THROTTLE_PERCENT, 25 % by default) of the interruptible instance. */
  async function quotas() {
    const planMillis = (await api.compute.instances.get.query({ id: ids.batch })).vcpus * 1000;
    return { planNanoCpus: planMillis * 1e6, throttledNanoCpus: throttledCpuMillis(planMillis, app.services.config.energy.emergency.throttlePercent) * 1e6 };
  }

  test("at conserve the interruptible container keeps running with a quarter of its CPU; critical pauses it throttled; normal gives it all back", async () => {
    const { planNanoCpus, throttledNanoCpus } = await quotas();
    expect(await nanoCpus(ids.batch)).toBe(planNanoCpus);
    const webBefore = await nanoCpus(ids.web);

    await changeLevel("conserve");
    await quota(ids.batch, throttledNanoCpus);
    const throttled = await settled(ids.batch, "running");
    expect(throttled.instance.cpuThrottle).toEqual({ vcpus: throttledNanoCpus / 1e9, reason: POWER_EMERGENCY_REASON });
    // Nothing else is touched at conserve.
    expect(await nanoCpus(ids.web)).toBe(webBefore);
    expect(await engineState(ids.web)).toBe("running");
    const throttle = await lastActionDone(ids.batch);
    expect(throttle).toMatchObject({ kind: "throttle", status: "succeeded", reason: POWER_EMERGENCY_REASON, actorType: "system" });
    const [audit] = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "compute.instance.throttle"), eq(auditLog.targetId, ids.batch)));
    expect(audit?.metadata).toMatchObject({ cpuLimitMillis: { from: planNanoCpus / 1e6, to: throttledNanoCpus / 1e6 } });
    const shed = await eventsOf("instances_shed");
    expect(shed.at(-1)).toMatchObject({ message: "Power level conserve: throttled 1 instance", details: { throttled: [ids.batch], paused: [], stopped: [] } });

    // The next rung: paused, still throttled (it would come back throttled at conserve).
    await changeLevel("critical");
    await settled(ids.batch, "paused");
    expect(await nanoCpus(ids.batch)).toBe(throttledNanoCpus);

    // Recovery: resumed with its CPU back, in one action.
    const actionsBefore = (await actionsOf(ids.batch)).length;
    await changeLevel("normal");
    await settled(ids.batch, "running");
    await quota(ids.batch, planNanoCpus);
    expect((await api.compute.instances.get.query({ id: ids.batch })).cpuThrottle).toBeNull();
    expect((await actionsOf(ids.batch)).slice(actionsBefore).map((a) => [a.kind, a.reason])).toEqual([["resume", POWER_RESTORED_REASON]]);
  }, 60_000);

  test("a throttled running instance is given its CPU back on its own when the level recovers", async () => {
    const { planNanoCpus, throttledNanoCpus } = await quotas();
    await changeLevel("conserve");
    await quota(ids.batch, throttledNanoCpus);
    await lastActionDone(ids.batch);
    // A restart by its owner keeps the limit: the platform, not the container, holds it.
    const restarted = await api.compute.instances.restart.mutate({ id: ids.batch });
    expect((await actionDone(api, restarted.actionId)).status).toBe("succeeded");
    expect(await nanoCpus(ids.batch)).toBe(throttledNanoCpus);
    await changeLevel("normal");
    await quota(ids.batch, planNanoCpus);
    expect(await lastActionDone(ids.batch)).toMatchObject({ kind: "throttle", reason: POWER_RESTORED_REASON, status: "succeeded" });
    expect(await engineState(ids.batch)).toBe("running");
  }, 60_000);
});

describe("freeze groups: a priority frozen in one write", () => {
  /** The container's processes as the kernel sees them: frozen by its own pause or through its freeze group. */
  async function kernelFrozen(instanceId: string): Promise<boolean> {
    const info = await app.services.docker.getContainer(containerOf(instanceId)).inspect();
    const probe = frozenProbe(info.HostConfig.CgroupParent ?? "", info.Id);
    if (!probe) throw new Error(`no cgroup found for container ${info.Id}`);
    return probe();
  }
  const group = (priority: InstancePriority) => freezeGroupOf(app.services.config, priority);
  const thawed = (priority: InstancePriority) =>
    eventually(
      async () => groupFrozen(group(priority)),
      (frozen) => !frozen,
      { what: `the ${priority} freeze group to be thawed` },
    );

  test("each container is made under its priority's group on this cgroupfs engine", async () => {
    const [host] = await app.services.db.select({ cgroupDriver: hosts.cgroupDriver }).from(hosts).innerJoin(instances, eq(instances.hostId, hosts.id)).where(eq(instances.id, ids.batch));
    // The machine this suite runs on has Docker's cgroupfs driver; anything else must fail loudly here, not skip.
    expect(host!.cgroupDriver).toBe("cgroupfs");
    for (const [id, priority] of [
      [ids.batch, "interruptible"],
      [ids.web, "standard"],
      [ids.db, "critical"],
    ] as const) {
      const info = await app.services.docker.getContainer(containerOf(id)).inspect();
      expect(info.HostConfig.CgroupParent).toBe(group(priority));
    }
  });

  test("critical freezes the interruptible container before its pause action has run; Docker then pauses it and the group is thawed", async () => {
    await settled(ids.batch, "running");
    expect(await kernelFrozen(ids.batch)).toBe(false);
    const critical = await changeLevel("critical", { dispatch: false });
    const pass = await handlePowerEmergency(app.services, powerEmergencyPayload(critical));
    expect(pass.shed.map((s) => [s.instanceId, s.action])).toEqual([[ids.batch, "pause"]]);
    // By the time the pass returns the processes are stopped: by the group, or already by the pause itself.
    expect(await kernelFrozen(ids.batch)).toBe(true);
    expect(await kernelFrozen(ids.web)).toBe(false);
    expect(await kernelFrozen(ids.db)).toBe(false);
    await settled(ids.batch, "paused");
    // The last pause to land thaws the group; the container stays frozen by its own pause, as Docker records.
    await thawed("interruptible");
    expect(await kernelFrozen(ids.batch)).toBe(true);
    expect(await engineState(ids.batch)).toBe("paused");

    await changeLevel("normal");
    await settled(ids.batch, "running");
    expect(await kernelFrozen(ids.batch)).toBe(false);
  }, 60_000);

  test("a group left frozen by a pass that died is thawed by the next pass: at once when the level admits the priority, once no pause is open when it does not", async () => {
    await settled(ids.batch, "running");
    // A pass froze the group and died before any pause was recorded: at normal, the next pass thaws it.
    expect(setGroupFrozen(group("interruptible"), true)).toBe(true);
    await eventually(
      () => kernelFrozen(ids.batch),
      (frozen) => frozen,
      { what: "the group to freeze the container" },
    );
    await enforcePowerLevel(app.services);
    expect(groupFrozen(group("interruptible"))).toBe(false);
    expect(await kernelFrozen(ids.batch)).toBe(false);

    // At critical with the container paused and no pause open, a stale frozen group is released too, and recovery is not held by it.
    await changeLevel("critical");
    await settled(ids.batch, "paused");
    await thawed("interruptible");
    setGroupFrozen(group("interruptible"), true);
    await enforcePowerLevel(app.services);
    expect(groupFrozen(group("interruptible"))).toBe(false);
    expect(await engineState(ids.batch)).toBe("paused");
    setGroupFrozen(group("interruptible"), true);
    await changeLevel("normal");
    await settled(ids.batch, "running");
    expect(groupFrozen(group("interruptible"))).toBe(false);
    expect(await kernelFrozen(ids.batch)).toBe(false);
  }, 60_000);
});
