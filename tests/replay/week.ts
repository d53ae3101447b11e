import { asc, eq, inArray } from "drizzle-orm";
import { energyEvents, energyLevelChanges, instanceActions, instances } from "../../db/schema";
import { startMonitor } from "../../hardware/monitor";
import { DEFAULT_POLICY, type PowerPolicy } from "../../hardware/policy";
import type { PtyPair } from "../../hardware/pty-pair";
import { runSimulator } from "../../hardware/simulator/run";
import { WEEK_DAYS, WEEK_SECONDS } from "../../hardware/simulator/week";
import { systemActor } from "../../server/auth/actor";
import { syncHosts } from "../../server/compute/hosts";
import { createInstance } from "../../server/compute/create";
import { getAction } from "../../server/compute/instances";
import type { InstancePriority } from "../../server/compute/states";
import { scaledClock } from "../../server/energy/clock";
import type { PowerLevel } from "../../server/energy/levels";
import { updatePowerPolicy } from "../../server/energy/policy";
import type { Services } from "../../server/services";
import { emergencyProcessor } from "../../workers/emergency";
import { lifecycleProcessor } from "../../workers/lifecycle";
import { startWorkers } from "../../workers/runner";
import { retireOtherInstances } from "../harness/compute";
import { resetEnergyState } from "../harness/serial";
import { createUserWithSession } from "../harness/users";
import { minimumShedding, WATTS } from "./budget";
import { analyse, type Sample } from "./report";

/**
 * The week-long replay: seven simulated days of sun, clouds and a failing
 * battery (hardware/simulator/week.ts) played through the real serial path —
 * simulator → socat pty → Node bridge → monitor — at `speed` simulated
 * seconds per real second, against three real containers (critical,
 * standard, interruptible) on which the emergency worker and the lifecycle
 * worker act through Docker. The energy clock runs at the same speed, so the
 * policy's dwell and recovery, the forecast and the recovery stagger happen
 * in simulated time. The load the simulated controller carries is what the
 * containers are actually doing, as Docker reports it.
 */

export const REPLAY = { chemistry: "lead-acid", nominalVoltage: 12, capacityAh: 300, startSoc: 85, cutoffs: { lvd: 11.1, lvr: 12.6 } } as const;

/** The configuration a replay's services run with (besides the sandbox's own). */
export function replayEnv(ptyHost: string): Record<string, string> {
  return {
    SERIAL_PORT: ptyHost,
    BATTERY_CHEMISTRY: REPLAY.chemistry,
    BATTERY_NOMINAL_VOLTAGE: String(REPLAY.nominalVoltage),
    BATTERY_CAPACITY_AH: String(REPLAY.capacityAh),
    CONTROLLER_LVD_V: String(REPLAY.cutoffs.lvd),
    CONTROLLER_LVR_V: String(REPLAY.cutoffs.lvr),
    PV_ARRAY_WP: "700",
    // One stored window per simulated 5 minutes; a forecast every simulated 15.
    ENERGY_SAMPLE_SECONDS: "300",
    ENERGY_FORECAST_INTERVAL_S: "900",
    // Real time: the link's own pace.
    ENERGY_TELEMETRY_TIMEOUT_MS: "5000",
    // The periodic convergence every real second (simulated hours at this speed).
    EMERGENCY_ENFORCE_INTERVAL_MS: "1000",
    EMERGENCY_RESUME_STAGGER_MS: "2000",
  };
}

export type ReplayOptions = { pair: PtyPair; speed: number; rate: number; policy?: PowerPolicy; log?: (line: string) => void };

export async function runWeekReplay(services: Services, opts: ReplayOptions) {
  const { db, config } = services;
  const log = opts.log ?? (() => {});
  const policy = opts.policy ?? { ...DEFAULT_POLICY, dwellSeconds: 30, recoveryDwellSeconds: 300 };
  await retireOtherInstances(services);
  await resetEnergyState(db);
  await services.queues.queue("emergency").obliterate({ force: true });
  await updatePowerPolicy(db, { actor: systemActor("replay") }, policy, config.energy);
  await syncHosts(services);

  const workers = await startWorkers(services, [lifecycleProcessor, emergencyProcessor]);
  const { user } = await createUserWithSession(services);
  const ids = {} as Record<InstancePriority, string>;
  for (const priority of ["critical", "standard", "interruptible"] as const) {
    const { instance, actionId } = await createInstance(services, { actor: systemActor("replay"), ownerId: user.id }, { name: `replay-${priority}`, planId: "nano", imageId: "busybox", priority });
    ids[priority] = instance.id;
    for (let waited = 0; ; waited += 100) {
      const action = await getAction(db, null, actionId);
      if (action.status === "succeeded") break;
      if (action.status === "failed" || waited > 60_000) throw new Error(`the ${priority} instance did not start: ${action.error ?? "timed out"}`);
      await Bun.sleep(100);
    }
  }

  // The week ends a day before now, so every stored reading is in the past.
  const simStart = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 8 * 86_400_000;
  const clock = scaledClock({ speed: opts.speed, realEpochMs: Date.now(), simEpochMs: simStart });
  const realStart = Date.now();
  let load: number = WATTS.base + WATTS.critical + WATTS.standard + WATTS.interruptible;
  let lowestSoc = 100;
  const sim = runSimulator({
    port: opts.pair.device,
    protocol: "vedirect",
    scenario: "week",
    clock,
    speed: opts.speed,
    rate: opts.rate,
    unit: 1,
    split: false,
    echo: false,
    corruptEvery: 0,
    hexEvery: 10,
    chemistry: REPLAY.chemistry,
    nominalVoltage: REPLAY.nominalVoltage,
    capacityAh: REPLAY.capacityAh,
    startSoc: REPLAY.startSoc,
    cutoffs: REPLAY.cutoffs,
    loadW: load,
    onStep: (state) => {
      lowestSoc = Math.min(lowestSoc, state.soc);
      sim?.model.setLoad(load);
    },
  });
  const monitor = await startMonitor(services, { clock });

  // What the containers are doing, as Docker says, on the energy clock.
  const samples: Sample[] = [];
  let polling = false;
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      const containers = await services.docker.listContainers({ all: true, filters: { label: [`sahary.namespace=${config.docker.namespace}`, "sahary.kind=instance"] } });
      const stateOf = (id: string) => containers.find((c) => c.Labels["sahary.instance"] === id)?.State ?? "absent";
      const [batch] = await db.select({ throttle: instances.cpuThrottleMillis }).from(instances).where(eq(instances.id, ids.interruptible));
      const sample: Sample = {
        at: clock.now(),
        critical: stateOf(ids.critical),
        standard: stateOf(ids.standard),
        interruptible: stateOf(ids.interruptible),
        throttled: batch?.throttle != null,
        disconnected: sim.model.state.loadDisconnected,
      };
      samples.push(sample);
      const draw = (state: string, running: number) => (state === "running" ? running : state === "paused" ? WATTS.paused : 0);
      load = WATTS.base + draw(sample.critical, WATTS.critical) + draw(sample.standard, WATTS.standard) + draw(sample.interruptible, sample.throttled ? WATTS.throttled : WATTS.interruptible);
    } finally {
      polling = false;
    }
  };
  const poller = setInterval(() => void poll().catch((error) => log(`poll failed: ${(error as Error).message}`)), 100);

  const end = simStart + WEEK_SECONDS * 1000;
  const deadline = realStart + ((WEEK_SECONDS * 1000) / opts.speed) * 2 + 60_000;
  let lastDay = -1;
  try {
    while (clock.now() < end) {
      if (Date.now() > deadline) throw new Error("the replay fell too far behind real time");
      const day = Math.floor((clock.now() - simStart) / 86_400_000);
      if (day !== lastDay) {
        lastDay = day;
        const s = monitor.status();
        log(`day ${day} (${WEEK_DAYS[Math.min(day, WEEK_DAYS.length - 1)]!.name}): SOC ${s.lastReading?.soc ?? "—"} %, level ${s.level}, ${s.framesDecoded} frames`);
      }
      await Bun.sleep(200);
    }
    await poll();
  } finally {
    clearInterval(poller);
    sim.stop();
    await monitor.stop();
    await workers.close();
    // Later users of this Redis prefix must not inherit a one-second enforce schedule.
    await services.queues.queue("emergency").removeJobScheduler("emergency-enforce");
  }
  const realSeconds = (Date.now() - realStart) / 1000;

  const changes = await db.select().from(energyLevelChanges).orderBy(asc(energyLevelChanges.seq));
  const warnings = await db
    .select()
    .from(energyEvents)
    .where(inArray(energyEvents.kind, ["forecast_warning"]))
    .orderBy(asc(energyEvents.at));
  const status = monitor.status();
  const byId = new Map(Object.entries(ids).map(([priority, id]) => [id, priority]));
  const actions = await db
    .select()
    .from(instanceActions)
    .where(inArray(instanceActions.instanceId, Object.values(ids)))
    .orderBy(asc(instanceActions.createdAt));
  return analyse({
    actions: actions.map((a) => ({
      priority: byId.get(a.instanceId)!,
      kind: a.kind,
      reason: a.reason,
      // Rows are stamped in real time: mapped onto the energy clock.
      at: clock.fromReal(a.createdAt.getTime()),
      engineSeconds: a.finishedAt && a.startedAt ? (a.finishedAt.getTime() - a.startedAt.getTime()) / 1000 : null,
    })),
    simStart,
    simEnd: end,
    realSeconds,
    speed: opts.speed,
    policy,
    samples,
    levels: changes.map((c) => ({ at: c.at.getTime(), to: c.toLevel as PowerLevel, cause: c.cause })),
    warnings: warnings.map((w) => ({ at: w.at.getTime(), level: w.details?.level as PowerLevel, earliestAt: Date.parse(String(w.details?.earliestAt)) })),
    battery: { lowestSoc, lowestVolts: sim.model.state.minBatteryVoltage, disconnects: sim.model.state.disconnects, disconnectedSeconds: sim.model.state.disconnectedSeconds, lvd: REPLAY.cutoffs.lvd },
    link: { framesDecoded: status.framesDecoded, framesDropped: status.framesDropped, readingsRejected: status.readingsRejected },
    minimum: minimumShedding(
      { chemistry: REPLAY.chemistry, nominalVoltage: REPLAY.nominalVoltage, capacityAh: REPLAY.capacityAh, startSoc: REPLAY.startSoc, cutoffs: REPLAY.cutoffs, startAt: simStart },
      policy,
    ),
  });
}
