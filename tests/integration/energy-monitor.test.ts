import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { asc, eq } from "drizzle-orm";
import { energyEvents, energyLevelChanges, energyReadings } from "../../db/schema";
import { startMonitor, type Monitor } from "../../hardware/monitor";
import { encodeBlock } from "../../hardware/protocols/vedirect";
import type { PtyPair } from "../../hardware/pty-pair";
import { socFromVoltage } from "../../hardware/soc";
import type { PowerPolicy } from "../../hardware/policy";
import { systemActor } from "../../server/auth/actor";
import { updatePowerPolicy } from "../../server/energy/policy";
import { dispatchPowerEmergency, powerEmergencyJobId, redispatchPendingChanges } from "../../server/energy/power";
import { energyStatus } from "../../server/energy/status";
import { readMonitorState } from "../../server/energy/telemetry";
import type { Services } from "../../server/services";
import { eventually, startTestServices } from "../harness/server";
import { openControllerEnd, openTestPtyPair, resetEnergyState, startSimulator } from "../harness/serial";

let services: Services;
let pair: PtyPair;

beforeAll(async () => {
  pair = await openTestPtyPair("monitor");
  services = await startTestServices({
    SERIAL_PORT: pair.host,
    ENERGY_SAMPLE_SECONDS: "1",
    ENERGY_TELEMETRY_TIMEOUT_MS: "1500",
    SERIAL_RESTART_MIN_MS: "100",
    SERIAL_RESTART_MAX_MS: "800",
  });
  await resetEnergyState(services.db);
});
afterAll(async () => {
  // The power level is platform-wide: leave it at normal for the other files.
  await resetEnergyState(services.db);
  await services.close();
  await pair.close();
});

const policy = (over: Partial<PowerPolicy>): PowerPolicy => ({ thresholds: { conserve: 50, critical: 30, shutdown: 15 }, hysteresis: 5, dwellSeconds: 1, recoveryDwellSeconds: 1, ...over });
const setPolicy = (p: PowerPolicy) => updatePowerPolicy(services.db, { actor: systemActor("test") }, p);
const levelChanges = () => services.db.select().from(energyLevelChanges).orderBy(asc(energyLevelChanges.seq));
const eventsOf = (kind: (typeof energyEvents.$inferSelect)["kind"]) => services.db.select().from(energyEvents).where(eq(energyEvents.kind, kind));

async function withMonitor<T>(run: (monitor: Monitor) => Promise<T>): Promise<T> {
  const monitor = await startMonitor(services);
  try {
    await eventually(
      async () => monitor.status().bridge.state,
      (s) => s === "running",
      { what: "the bridge to open the port" },
    );
    return await run(monitor);
  } finally {
    await monitor.stop();
  }
}

describe("the hardware monitor on a VE.Direct line", () => {
  test("good blocks become stored readings; a block with a bad checksum is dropped and counted", async () => {
    const fields: Array<[string, string]> = [
      ["PID", "0xA053"],
      ["V", "13400"],
      ["I", "2500"],
      ["VPV", "31000"],
      ["PPV", "120"],
      ["CS", "3"],
      ["ERR", "0"],
      ["LOAD", "ON"],
      ["IL", "3000"],
      ["H20", "42"],
    ];
    const good = encodeBlock(fields);
    const bad = encodeBlock(fields.map(([l, v]) => [l, l === "V" ? "99999" : v]));
    bad[bad.length - 1] = (bad[bad.length - 1]! + 1) & 0xff;

    const monitor = await startMonitor(services);
    const controller = openControllerEnd(pair.device);
    try {
      await eventually(
        async () => monitor.status().bridge.state,
        (s) => s === "running",
        { what: "the bridge to open the port" },
      );
      for (let i = 0; i < 6; i++) {
        controller.write(good);
        if (i === 2) controller.write(bad);
        await Bun.sleep(150);
      }
      await eventually(
        async () => monitor.status(),
        (s) => s.framesDecoded === 6 && s.dropReasons.checksum === 1,
        { what: "6 frames decoded and 1 dropped" },
      );
    } finally {
      await monitor.stop();
      controller.close();
    }

    const rows = await services.db.select().from(energyReadings);
    expect(rows.reduce((n, r) => n + r.samples, 0)).toBe(6);
    for (const row of rows) {
      expect(row).toMatchObject({
        source: "vedirect",
        batteryVoltage: 13.4,
        batteryCurrent: 2.5,
        pvPower: 120,
        loadCurrent: 3,
        loadPower: 40.2,
        chargeState: "bulk",
        yieldTodayKwh: 0.42,
        socSource: "voltage",
      });
      expect(row.soc).toBe(socFromVoltage({ chemistry: "lead-acid", cells: 6 }, 13.4));
    }
    const state = await readMonitorState(services.db);
    expect(state).toMatchObject({ protocol: "vedirect", framesDecoded: 6, framesDropped: 1 });
    expect(monitor.status().framesDropped).toBe(1);
  }, 30_000);

  test("a night drain moves the level down through every threshold, each change raising one power-emergency job", async () => {
    await setPolicy(policy({ dwellSeconds: 1 }));
    const sim = startSimulator(pair.device, ["--scenario", "night-drain", "--soc", "55", "--speed", "2400", "--rate", "10"]);
    try {
      await withMonitor(async (monitor) => {
        await eventually(
          async () => monitor.status().level,
          (l) => l === "shutdown",
          { timeoutMs: 40_000, intervalMs: 200, what: "level shutdown" },
        );
        await monitor.settled();
      });
    } finally {
      await sim.stop();
    }

    const changes = await levelChanges();
    expect(changes.map((c) => `${c.fromLevel}>${c.toLevel}`)).toEqual(["normal>conserve", "conserve>critical", "critical>shutdown"]);
    const below = { conserve: 50, critical: 30, shutdown: 15 } as const;
    const emergency = services.queues.queue("emergency");
    for (const change of changes) {
      // Recorded with the reading that caused it.
      expect(change.soc!).toBeLessThan(below[change.toLevel as keyof typeof below]);
      expect(change.reading).toMatchObject({ soc: change.soc, socSource: "voltage" });
      expect(change.enqueuedAt).toBeInstanceOf(Date);
      const job = await emergency.getJob(powerEmergencyJobId(change.id));
      expect(job?.name).toBe("power-emergency");
      expect(job?.data).toEqual({ changeId: change.id, seq: change.seq, from: change.fromLevel, to: change.toLevel, at: change.at.toISOString(), soc: change.soc });
    }

    // Processing the same change again enqueues nothing new.
    await dispatchPowerEmergency(services.db, services.queues, changes[0]!);
    expect(await redispatchPendingChanges(services.db, services.queues)).toBe(0);
    const jobs = await emergency.getJobs(["waiting", "active", "delayed", "completed", "failed", "prioritized"]);
    expect(jobs.filter((j) => j.data.changeId === changes[0]!.id)).toHaveLength(1);
    expect(jobs.filter((j) => changes.some((c) => c.id === j.data.changeId))).toHaveLength(3);

    const events = await eventsOf("level_changed");
    expect(events.map((e) => e.levelChangeId).sort()).toEqual(changes.map((c) => c.id).sort());
    expect(events.find((e) => e.levelChangeId === changes[2]!.id)?.severity).toBe("critical");
  }, 60_000);

  test("a recovering battery moves the level back up, one level at a time", async () => {
    const before = (await levelChanges()).length;
    const sim = startSimulator(pair.device, ["--scenario", "recovery", "--soc", "10", "--pv-peak", "200", "--speed", "1800", "--rate", "10"]);
    try {
      await withMonitor(async (monitor) => {
        expect(monitor.status().level).toBe("shutdown");
        await eventually(
          async () => monitor.status().level,
          (l) => l === "normal",
          { timeoutMs: 40_000, intervalMs: 200, what: "level normal" },
        );
        await monitor.settled();
      });
    } finally {
      await sim.stop();
    }
    const ups = (await levelChanges()).slice(before);
    expect(ups.map((c) => `${c.fromLevel}>${c.toLevel}`)).toEqual(["shutdown>critical", "critical>conserve", "conserve>normal"]);
    // Each step up cleared its threshold by the hysteresis band.
    const above = { critical: 20, conserve: 35, normal: 55 } as const;
    for (const change of ups) expect(change.soc!).toBeGreaterThanOrEqual(above[change.toLevel as keyof typeof above]);
    for (const change of ups) expect(await services.queues.queue("emergency").getJob(powerEmergencyJobId(change.id))).toBeTruthy();
  }, 60_000);

  test("clouds flapping around a threshold do not flap the level", async () => {
    // A dwell shorter than a cloud, so only the hysteresis band stands between the level and flapping.
    await setPolicy(policy({ dwellSeconds: 1, recoveryDwellSeconds: 1 }));
    const before = (await levelChanges()).length;
    const sim = startSimulator(pair.device, ["--scenario", "clouds", "--around", "50", "--swing", "2", "--speed", "2400", "--rate", "10"]);
    let crossings = 0;
    try {
      await withMonitor(async (monitor) => {
        // Watch the SOC the policy sees until it has crossed the 50 % threshold six times.
        let side = 0;
        await eventually(
          async () => {
            const soc = monitor.status().lastReading?.soc;
            if (soc !== null && soc !== undefined && soc !== 50) {
              const now = Math.sign(soc - 50);
              if (side !== 0 && now !== side) crossings++;
              side = now;
            }
            return crossings;
          },
          (n) => n >= 6,
          { timeoutMs: 40_000, intervalMs: 25, what: "six threshold crossings" },
        );
        await monitor.settled();
      });
    } finally {
      await sim.stop();
    }
    expect(crossings).toBeGreaterThanOrEqual(6);
    // The level changed at most once, and never straight back.
    const during = (await levelChanges()).slice(before);
    expect(during.length).toBeLessThanOrEqual(1);
    expect(during.filter((c) => c.toLevel === "normal")).toHaveLength(0);
  }, 60_000);

  test("silence (the cable pulled) raises telemetry lost; data coming back restores it", async () => {
    const sim = startSimulator(pair.device, ["--scenario", "cable-pulled", "--pull-after", "3600", "--speed", "60", "--rate", "5"]);
    try {
      await withMonitor(async (monitor) => {
        await eventually(
          async () => monitor.status().telemetry,
          (t) => t === "ok",
          { what: "telemetry ok" },
        );
        // A bridge slow to open under load may have been "lost" before the first byte: count from here.
        await monitor.settled();
        const [lostBefore, restoredBefore] = [(await eventsOf("telemetry_lost")).length, (await eventsOf("telemetry_restored")).length];
        // Pulled once data has flowed, so the pull cannot race the bridge opening.
        sim.pull();
        await eventually(
          async () => monitor.status().telemetry,
          (t) => t === "lost",
          { timeoutMs: 6000, what: "telemetry lost" },
        );
        await monitor.settled();
        const lost = (await eventsOf("telemetry_lost")).slice(lostBefore);
        expect(lost).toHaveLength(1);
        expect(lost[0]!.severity).toBe("critical");
        expect(lost[0]!.message).toContain("No valid data from the charge controller");
        await eventually(
          () => energyStatus(services.db, services.config.energy),
          (s) => s.telemetry.state === "lost",
          { what: "status to say lost" },
        );

        sim.plug();
        await eventually(
          async () => monitor.status().telemetry,
          (t) => t === "ok",
          { timeoutMs: 5000, what: "telemetry restored" },
        );
        await monitor.settled();
        expect(await eventsOf("telemetry_restored")).toHaveLength(restoredBefore + 1);
        await eventually(
          () => energyStatus(services.db, services.config.energy),
          (s) => s.telemetry.state === "ok",
          { what: "status to say ok" },
        );
      });
    } finally {
      await sim.stop();
    }
  }, 30_000);

  test("a bridge that dies is restarted, and data flows again", async () => {
    const sim = startSimulator(pair.device, ["--scenario", "sunny-day", "--speed", "60", "--rate", "5"]);
    try {
      await withMonitor(async (monitor) => {
        await eventually(
          async () => monitor.status().framesDecoded,
          (n) => n >= 3,
          { what: "frames before the crash" },
        );
        const firstPid = monitor.status().bridge.pid;
        monitor.killBridge();
        const after = await eventually(
          async () => monitor.status().bridge,
          (b) => b.restarts === 1 && b.state === "running",
          { what: "the bridge to be restarted" },
        );
        expect(after.pid).not.toBe(firstPid);
        expect(after.lastExit?.nextDelayMs).toBe(100);
        const frames = monitor.status().framesDecoded;
        await eventually(
          async () => monitor.status().framesDecoded,
          (n) => n >= frames + 3,
          { what: "frames after the restart" },
        );
        await monitor.settled();
        expect((await eventsOf("bridge_failed")).length).toBeGreaterThanOrEqual(1);
      });
    } finally {
      await sim.stop();
    }
  }, 30_000);
});

describe("the hardware monitor without a usable port", () => {
  test("restarts the bridge with a doubling, capped delay and reports the failure once", async () => {
    const lonely = await startTestServices({
      SERIAL_PORT: "/dev/ttySAHARY-absent",
      SERIAL_RESTART_MIN_MS: "100",
      SERIAL_RESTART_MAX_MS: "400",
      ENERGY_TELEMETRY_TIMEOUT_MS: "500",
    });
    await resetEnergyState(lonely.db);
    const monitor = await startMonitor(lonely);
    try {
      const delays: number[] = [];
      await eventually(
        async () => {
          const exit = monitor.status().bridge.lastExit;
          if (exit && delays.at(-1) !== exit.nextDelayMs) delays.push(exit.nextDelayMs);
          return monitor.status().bridge.restarts;
        },
        (n) => n >= 5,
        { timeoutMs: 10_000, intervalMs: 20, what: "five restarts" },
      );
      expect(delays.slice(0, 3)).toEqual([100, 200, 400]);
      expect(Math.max(...delays)).toBe(400);
      const exit = monitor.status().bridge.lastExit!;
      expect(exit.code).toBe(2);
      expect(exit.message).toContain("cannot open serial port /dev/ttySAHARY-absent");
      await monitor.settled();
      const failures = await lonely.db.select().from(energyEvents).where(eq(energyEvents.kind, "bridge_failed"));
      expect(failures).toHaveLength(1);
      expect(failures[0]!.message).toContain("cannot open serial port /dev/ttySAHARY-absent");
      expect(monitor.status().telemetry).toBe("lost");
    } finally {
      await monitor.stop();
      await lonely.close();
    }
  }, 30_000);
});
