import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { asc, eq } from "drizzle-orm";
import { energyEvents, energyLevelChanges, energyReadings } from "../../db/schema";
import { startMonitor, type Monitor } from "../../hardware/monitor";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { encodeBlock } from "../../hardware/protocols/vedirect";
import type { PtyPair } from "../../hardware/pty-pair";
import { systemActor } from "../../server/auth/actor";
import { AppError } from "../../server/errors";
import { updatePowerPolicy } from "../../server/energy/policy";
import { energyStatus } from "../../server/energy/status";
import { readMonitorState } from "../../server/energy/telemetry";
import type { Services } from "../../server/services";
import { openControllerEnd, openTestPtyPair, resetEnergyState, startSimulator } from "../harness/serial";
import { eventually, startTestServices } from "../harness/server";

// Damaged, impossible, truncated and mis-clocked bytes written into a real
// pty, read by the real bridge: each is rejected or classified, and none of
// them moves a stored value or the power level.

let pair: PtyPair;
let services: Services;

beforeAll(async () => {
  pair = await openTestPtyPair("readings");
  services = await startTestServices({ SERIAL_PORT: pair.host, ENERGY_SAMPLE_SECONDS: "1", ENERGY_TELEMETRY_TIMEOUT_MS: "1500", SERIAL_RESTART_MIN_MS: "100" });
  await resetEnergyState(services.db);
});
afterAll(async () => {
  await resetEnergyState(services.db);
  await services.close();
  await pair.close();
});

/** A battery monitor block (BMV-70x): voltage mV, current mA, SOC ‰. */
const bmv = (o: { v?: string; i?: string; soc?: string; ppv?: string } = {}) =>
  encodeBlock([
    ["PID", "0x203"],
    ["V", o.v ?? "12650"],
    ["I", o.i ?? "-4000"],
    ["P", "-51"],
    ["SOC", o.soc ?? "812"],
    ["TTG", "-1"],
    ["Alarm", "OFF"],
    ["AR", "0"],
    ...(o.ppv ? ([["PPV", o.ppv]] as Array<[string, string]>) : []),
  ]);

/** Flips the high bit of two bytes of a field's value: the byte sum — the checksum — does not change. */
function flipHighBits(block: Uint8Array, label: string): Uint8Array {
  const at = new TextDecoder("latin1").decode(block).indexOf(`\r\n${label}\t`) + label.length + 3;
  const damaged = block.slice();
  damaged[at] = damaged[at]! ^ 0x80;
  damaged[at + 1] = damaged[at + 1]! ^ 0x80;
  return damaged;
}

async function withMonitor<T>(run: (monitor: Monitor, controller: ReturnType<typeof openControllerEnd>) => Promise<T>): Promise<T> {
  await resetEnergyState(services.db);
  const monitor = await startMonitor(services);
  const controller = openControllerEnd(pair.device);
  try {
    await eventually(
      async () => monitor.status().bridge.state,
      (s) => s === "running",
      { what: "the bridge to open the port" },
    );
    return await run(monitor, controller);
  } finally {
    await monitor.stop();
    controller.close();
  }
}

const storedVoltages = async () => (await services.db.select().from(energyReadings).orderBy(asc(energyReadings.at))).map((r) => r.batteryVoltage);
const eventsOf = (kind: (typeof energyEvents.$inferSelect)["kind"]) => services.db.select().from(energyEvents).where(eq(energyEvents.kind, kind));

describe("readings that cannot be fooled, through a pty", () => {
  test("two high bits flipped keep the checksum but not the grammar: SOC and voltage never change", async () => {
    await withMonitor(async (monitor, controller) => {
      for (let i = 0; i < 8; i++) {
        controller.write(i % 2 ? flipHighBits(bmv(), i % 4 === 1 ? "V" : "SOC") : bmv());
        await Bun.sleep(120);
      }
      const status = await eventually(
        async () => monitor.status(),
        (s) => s.framesDecoded === 4 && s.dropReasons.grammar === 4,
        { what: "4 frames decoded, 4 dropped for grammar" },
      );
      expect(status.dropReasons.checksum).toBe(0);
      expect(status.lastReading).toMatchObject({ batteryVoltage: 12.65, soc: 81.2, socSource: "controller" });
      await monitor.settled();
    });
    expect(new Set(await storedVoltages())).toEqual(new Set([12.65]));
    const rows = await services.db.select().from(energyReadings);
    expect(rows.every((r) => r.soc === 81.2)).toBe(true);
    expect((await readMonitorState(services.db))!.rejections).toMatchObject({ grammar: 4, checksum: 0 });
  }, 30_000);

  test("well-formed but impossible readings are rejected by reason and never stored or acted on", async () => {
    await withMonitor(async (monitor, controller) => {
      const sequence = [
        bmv(),
        bmv({ soc: "1200" }), // 120 %
        bmv({ v: "99999" }), // a 12 V bank at 100 V
        bmv({ i: "-90000" }), // 90 A through a 50 A controller
        bmv({ ppv: "4000" }), // 4 kW from 600 Wp
        bmv({ v: "14150" }), // +1.5 V with the current unchanged, a second later
        bmv(),
      ];
      for (const block of sequence) {
        controller.write(block);
        await Bun.sleep(120);
      }
      const status = await eventually(
        async () => monitor.status(),
        (s) => s.framesDecoded === 7,
        { what: "7 frames decoded" },
      );
      expect(status.rejected).toEqual({ soc_range: 1, voltage_range: 1, current_range: 1, pv_power_range: 1, pv_voltage: 0, load_power_range: 0, jump: 1 });
      expect(status.readingsRejected).toBe(5);
      expect(status.lastReading).toMatchObject({ batteryVoltage: 12.65, soc: 81.2 });
      await monitor.settled();
    });
    expect(new Set(await storedVoltages())).toEqual(new Set([12.65]));
    expect((await readMonitorState(services.db))!.rejections).toMatchObject({ soc_range: 1, voltage_range: 1, current_range: 1, pv_power_range: 1, jump: 1 });
  }, 30_000);

  test("a truncated block followed at once by a valid one loses only the truncated one", async () => {
    await withMonitor(async (monitor, controller) => {
      const whole = bmv();
      for (const cut of [9, 18, 30, whole.length - 3]) {
        // The cut block and the next one arrive in one write, back to back.
        controller.write(Buffer.concat([whole.subarray(0, cut), whole]));
        await Bun.sleep(150);
      }
      const status = await eventually(
        async () => monitor.status(),
        (s) => s.framesDecoded === 4,
        { what: "4 frames decoded" },
      );
      expect(status.dropReasons.truncated).toBe(4);
      expect(status.dropReasons.checksum).toBe(0);
    });
  }, 30_000);

  test("a wrong baud rate: bytes arrive but nothing decodes — link degraded, not telemetry lost, and no level change", async () => {
    await updatePowerPolicy(services.db, { actor: systemActor("test") }, { ...DEFAULT_POLICY, dwellSeconds: 0 });
    let sim: ReturnType<typeof startSimulator> | undefined;
    try {
      await withMonitor(async (monitor) => {
        // A battery at 12 % sent at 9600 baud to a host listening at 19200: decoded, it would mean shutdown.
        sim = startSimulator(pair.device, ["--scenario", "night-drain", "--soc", "12", "--tx-baud", "9600", "--rx-baud", "19200", "--rate", "5"]);
        await eventually(
          async () => monitor.status().telemetry,
          (t) => t === "degraded",
          { timeoutMs: 8000, what: "link degraded" },
        );
        const status = monitor.status();
        expect(status.link.totals.bytes).toBeGreaterThan(100);
        expect(status.link.totals.accepted).toBe(0);
        expect(status.level).toBe("normal");
        await monitor.settled();
        await eventually(
          () => energyStatus(services.db, services.config.energy),
          (s) => s.telemetry.state === "degraded",
          { what: "status to say degraded" },
        );
        const seen = await energyStatus(services.db, services.config.energy);
        expect(seen.telemetry.link).toMatchObject({ state: "degraded" });
        expect((seen.telemetry.link as { recent: { bytes: number } }).recent.bytes).toBeGreaterThan(0);
        expect(seen.forecast).toBeNull();

        // Then the line goes silent: a different alert.
        await sim!.stop();
        await eventually(
          async () => monitor.status().telemetry,
          (t) => t === "lost",
          { timeoutMs: 8000, what: "telemetry lost" },
        );
        await monitor.settled();
      });
    } finally {
      await sim?.stop();
    }
    const degraded = await eventsOf("link_degraded");
    expect(degraded).toHaveLength(1);
    expect(degraded[0]).toMatchObject({ severity: "warning" });
    expect(degraded[0]!.message).toContain("check the baud rate (SERIAL_BAUD=19200)");
    // The silence after it is its own alert (a slow bridge start may have raised one before the bytes came).
    const lost = (await eventsOf("telemetry_lost")).filter((e) => e.at > degraded[0]!.at);
    expect(lost).toHaveLength(1);
    expect(await services.db.select().from(energyLevelChanges)).toHaveLength(0);
  }, 40_000);
});

describe("an EPEver: wrong baud, its cut-offs, and a policy below them", () => {
  const modbus = { SERIAL_PROTOCOL: "modbus", SERIAL_BAUD: "115200", MODBUS_POLL_MS: "200", MODBUS_TIMEOUT_MS: "300", ENERGY_SAMPLE_SECONDS: "1", ENERGY_TELEMETRY_TIMEOUT_MS: "1500" };

  test("replies that never pass their CRC (noise) degrade the link; a controller at another baud rate never answers: lost", async () => {
    const epever = await startTestServices({ ...modbus, SERIAL_PORT: pair.host });
    try {
      for (const [args, expected] of [
        [["--corrupt-every", "1"], "degraded"],
        [["--tx-baud", "57600", "--rx-baud", "115200"], "lost"],
      ] as const) {
        await resetEnergyState(epever.db);
        const monitor = await startMonitor(epever);
        // A battery at 12 %: read, it would mean shutdown.
        const sim = startSimulator(pair.device, ["--protocol", "modbus", "--scenario", "night-drain", "--soc", "12", ...args]);
        try {
          await eventually(
            async () => monitor.status().bridge.state,
            (s) => s === "running",
            { what: "the bridge" },
          );
          const status = await eventually(
            async () => monitor.status(),
            (s) => s.telemetry === expected && s.dropReasons.poll > 0,
            { timeoutMs: 10_000, what: `link ${expected}` },
          );
          expect(status.framesDecoded).toBe(0);
          expect(status.level).toBe("normal");
          if (expected === "degraded") {
            expect(status.modbus!.crcErrors).toBeGreaterThan(0);
            expect(status.link.totals.bytes).toBeGreaterThan(0);
          } else {
            expect(status.modbus!.timeouts).toBeGreaterThan(0);
            expect(status.link.totals.bytes).toBe(0);
          }
        } finally {
          await sim.stop();
          await monitor.stop();
        }
      }
    } finally {
      await resetEnergyState(epever.db);
      await epever.close();
    }
  }, 40_000);

  test("its battery settings are read over function 0x03; a policy whose shutdown sits below LVD + margin is flagged and refused", async () => {
    const epever = await startTestServices({ ...modbus, SERIAL_PORT: pair.host });
    // LVD raised to 11.5 V: with 0.27 V for the cold and 0.2 V of sag, shutdown must rest at ≥ 11.97 V (≈ 41 %).
    const sim = startSimulator(pair.device, ["--protocol", "modbus", "--scenario", "sunny-day", "--soc", "70", "--lvd", "11.5"]);
    try {
      await resetEnergyState(epever.db);
      await updatePowerPolicy(epever.db, { actor: systemActor("test") }, DEFAULT_POLICY);
      const monitor = await startMonitor(epever);
      try {
        const status = await eventually(
          async () => monitor.status(),
          (s) => s.cutoffs !== null && s.telemetry === "ok",
          { timeoutMs: 10_000, what: "the settings to be read" },
        );
        expect(status.cutoffs).toMatchObject({ source: "epever", lvd: 11.5, lvr: 12.6, uvWarning: 12, tempCompMvPerCell: 3 });
        expect(status.alignment).toMatchObject({ known: true, ok: false, shutdown: { soc: 15, ok: false, requiredVolts: 11.97 } });
        await monitor.settled();
        await eventually(
          async () => (await readMonitorState(epever.db))?.controllerSettings,
          (s) => s !== null && s !== undefined,
          { what: "the settings to be published" },
        );
      } finally {
        await monitor.stop();
      }
      const [flag] = await epever.db.select().from(energyEvents).where(eq(energyEvents.kind, "policy_misaligned"));
      expect(flag).toMatchObject({ severity: "critical" });
      expect(flag!.message).toContain("below the controller's disconnect 11.5 V");

      // The same policy again, through the service the admin procedure uses: refused, naming the minimum.
      const refused = await updatePowerPolicy(epever.db, { actor: systemActor("test") }, DEFAULT_POLICY, epever.config.energy).catch((e) => e);
      expect(refused).toBeInstanceOf(AppError);
      expect((refused as AppError).appCode).toBe("POLICY_BELOW_CUTOFF");
      expect((refused as AppError).details).toMatchObject({ field: "thresholds.shutdown", requiredVolts: 11.97 });
      const minimum = (refused as AppError).details!.minimumSoc as number;
      const accepted = await updatePowerPolicy(epever.db, { actor: systemActor("test") }, { ...DEFAULT_POLICY, thresholds: { conserve: 70, critical: 55, shutdown: minimum } }, epever.config.energy);
      expect(accepted.policy.thresholds.shutdown).toBe(minimum);
      const status = await energyStatus(epever.db, epever.config.energy);
      expect(status.controller).toMatchObject({ known: true, shutdown: { ok: true } });
    } finally {
      await sim.stop();
      await resetEnergyState(epever.db);
      await epever.close();
    }
  }, 40_000);
});
