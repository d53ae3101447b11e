import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { asc } from "drizzle-orm";
import { energyLevelChanges, energyReadings } from "../../db/schema";
import { startMonitor } from "../../hardware/monitor";
import type { PtyPair } from "../../hardware/pty-pair";
import { systemActor } from "../../server/auth/actor";
import { updatePowerPolicy } from "../../server/energy/policy";
import { powerEmergencyJobId } from "../../server/energy/power";
import type { Services } from "../../server/services";
import { eventually, startTestServices } from "../harness/server";
import { openTestPtyPair, resetEnergyState, startSimulator } from "../harness/serial";

let pair: PtyPair;
beforeAll(async () => {
  pair = await openTestPtyPair("modbus");
});
afterAll(() => pair.close());

const modbusEnv = (over: Record<string, string> = {}) => ({
  SERIAL_PROTOCOL: "modbus",
  MODBUS_POLL_MS: "200",
  MODBUS_TIMEOUT_MS: "300",
  MODBUS_RETRIES: "2",
  ENERGY_SAMPLE_SECONDS: "1",
  ENERGY_TELEMETRY_TIMEOUT_MS: "1500",
  ...over,
});

async function withServices<T>(env: Record<string, string>, run: (services: Services) => Promise<T>) {
  const services = await startTestServices(env);
  try {
    await resetEnergyState(services.db);
    return await run(services);
  } finally {
    // The power level is platform-wide: leave it at normal for the other files.
    await resetEnergyState(services.db);
    await services.close();
  }
}

describe("the hardware monitor polling an EPEver Tracer over Modbus RTU", () => {
  test("polls through the bridge, tolerating an echoing adapter and damaged replies, and acts on the controller's SOC", async () => {
    // An RS-485 adapter that echoes every request, and every 7th reply failing its CRC.
    const sim = startSimulator(pair.device, ["--protocol", "modbus", "--scenario", "night-drain", "--soc", "44", "--speed", "60", "--rate", "10", "--echo", "--corrupt-every", "7"]);
    try {
      await withServices(modbusEnv({ SERIAL_PORT: pair.host, SERIAL_BAUD: "115200" }), async (services) => {
        await updatePowerPolicy(services.db, { actor: systemActor("test") }, { thresholds: { conserve: 50, critical: 30, shutdown: 15 }, hysteresis: 5, dwellSeconds: 1, recoveryDwellSeconds: 1 });
        const monitor = await startMonitor(services);
        try {
          const status = await eventually(
            async () => monitor.status(),
            (s) => s.framesDecoded >= 6 && s.level === "conserve",
            { timeoutMs: 15_000, what: "six polls and level conserve" },
          );
          expect(status.lastReading).toMatchObject({ socSource: "controller", loadPower: 120, pvPower: 0, chargeState: "off" });
          expect(Number.isInteger(status.lastReading!.soc)).toBe(true);
          expect(status.lastReading!.soc!).toBeLessThan(45);
          expect(status.lastReading!.batteryCurrent!).toBeLessThan(-9);
          expect(status.modbus!.echoes).toBeGreaterThan(0);
          expect(status.modbus!.crcErrors).toBeGreaterThan(0);
          expect(status.modbus!.retries).toBeGreaterThanOrEqual(status.modbus!.crcErrors);
          expect(status.dropReasons.poll).toBe(0);
          await monitor.settled();
        } finally {
          await monitor.stop();
        }
        const [change] = await services.db.select().from(energyLevelChanges).orderBy(asc(energyLevelChanges.seq));
        expect(change).toMatchObject({ fromLevel: "normal", toLevel: "conserve" });
        expect(change!.reading).toMatchObject({ socSource: "controller" });
        expect(await services.queues.queue("emergency").getJob(powerEmergencyJobId(change!.id))).toBeTruthy();
        const rows = await services.db.select().from(energyReadings);
        expect(rows.length).toBeGreaterThan(0);
        expect(rows.every((r) => r.source === "modbus" && r.socSource === "controller")).toBe(true);
      });
    } finally {
      await sim.stop();
    }
  }, 30_000);

  test("a controller that never answers (wrong unit id) is telemetry lost, not a reading", async () => {
    const sim = startSimulator(pair.device, ["--protocol", "modbus", "--unit", "1"]);
    try {
      await withServices(modbusEnv({ SERIAL_PORT: pair.host, MODBUS_UNIT_ID: "7" }), async (services) => {
        const monitor = await startMonitor(services);
        try {
          // Under load the telemetry timeout (1.5 s) can pass before the first poll has used up its retries: wait for both.
          const status = await eventually(
            async () => monitor.status(),
            (s) => s.telemetry === "lost" && s.dropReasons.poll > 0,
            { timeoutMs: 8000, what: "telemetry lost after failed polls" },
          );
          expect(status.framesDecoded).toBe(0);
          expect(status.dropReasons.poll).toBeGreaterThan(0);
          expect(status.modbus!.timeouts).toBeGreaterThan(0);
        } finally {
          await monitor.stop();
        }
      });
    } finally {
      await sim.stop();
    }
  }, 30_000);
});
