import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../server/config";

describe("energy configuration", () => {
  test("with no port and no simulator the monitor is off; defaults are documented values", () => {
    const { energy } = loadConfig({});
    expect(energy.monitorEnabled).toBe(false);
    expect(energy.serial).toMatchObject({ protocol: "vedirect", baud: 19200, parity: "none", nodeBin: "node" });
    expect(energy.modbus).toEqual({ unitId: 1, pollMs: 5000, timeoutMs: 500, retries: 2 });
    expect(energy.battery).toEqual({ chemistry: "lead-acid", nominalVoltage: 12, cells: 6, capacityAh: 100, minTemperatureC: 10 });
    expect(energy.controller).toEqual({ ratedCurrentA: 50, pvArrayWp: 600, cutoffs: { lvd: null, lvr: null, uvWarning: null }, sagVolts: 0.2 });
    expect(energy.forecast).toEqual({ horizonHours: 48, warnMinutes: 120, preemptMinutes: 30, intervalSeconds: 300 });
    expect(energy).toMatchObject({ idlePowerW: null, statusPage: true });
    expect(energy).toMatchObject({ telemetryTimeoutMs: 30_000, sampleSeconds: 10, gridCo2GramsPerKwh: 400, simulator: null });
  });

  test("Modbus defaults to the EPEver line speed; an explicit baud wins", () => {
    expect(loadConfig({ SERIAL_PORT: "/dev/ttyUSB0", SERIAL_PROTOCOL: "modbus" }).energy.serial.baud).toBe(115200);
    expect(loadConfig({ SERIAL_PORT: "/dev/ttyUSB0", SERIAL_PROTOCOL: "modbus", SERIAL_BAUD: "9600" }).energy.serial.baud).toBe(9600);
  });

  test("a port or a simulator turns the monitor on; both at once is refused", () => {
    expect(loadConfig({ SERIAL_PORT: "/dev/ttyUSB0" }).energy.monitorEnabled).toBe(true);
    expect(loadConfig({ ENERGY_SIMULATOR: "night-drain" }).energy).toMatchObject({ monitorEnabled: true, simulator: { scenario: "night-drain", speed: 1 } });
    expect(() => loadConfig({ SERIAL_PORT: "/dev/ttyUSB0", ENERGY_SIMULATOR: "clouds" })).toThrow(/exclude each other/);
  });

  test("production refuses the simulator", () => {
    expect(() => loadConfig({ NODE_ENV: "production", APP_SECRET: "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7", ENERGY_SIMULATOR: "sunny-day" })).toThrow(/ENERGY_SIMULATOR is for development/);
  });

  test("LiFePO4 banks get their cell count from the nominal voltage unless given", () => {
    expect(loadConfig({ BATTERY_CHEMISTRY: "lifepo4", BATTERY_NOMINAL_VOLTAGE: "48" }).energy.battery.cells).toBe(16);
    expect(loadConfig({ BATTERY_CHEMISTRY: "lifepo4", BATTERY_NOMINAL_VOLTAGE: "48", BATTERY_CELLS: "15" }).energy.battery.cells).toBe(15);
  });

  test("the controller's cut-offs, the load-sag margin and the simulated clock's start are read; nonsense is named", () => {
    const energy = loadConfig({ CONTROLLER_LVD_V: "11.4", CONTROLLER_LVR_V: "12.6", CONTROLLER_UV_WARNING_V: "12.1", BATTERY_NOMINAL_VOLTAGE: "24" }).energy;
    expect(energy.controller).toMatchObject({ cutoffs: { lvd: 11.4, lvr: 12.6, uvWarning: 12.1 }, sagVolts: 0.4 });
    expect(loadConfig({ ENERGY_SIMULATOR: "week", ENERGY_SIMULATOR_START: "2026-06-01T00:00:00Z" }).energy.simulator?.start?.toISOString()).toBe("2026-06-01T00:00:00.000Z");
    expect(() => loadConfig({ CONTROLLER_LVD_V: "12.6", CONTROLLER_LVR_V: "11.1" })).toThrow(/CONTROLLER_LVR_V must be above/);
    expect(() => loadConfig({ ENERGY_FORECAST_HORIZON_HOURS: "500" })).toThrow(/ENERGY_FORECAST_HORIZON_HOURS/);
    expect(() => loadConfig({ EMERGENCY_THROTTLE_PERCENT: "100" })).toThrow(/EMERGENCY_THROTTLE_PERCENT/);
    expect(() => loadConfig({ STATUS_PAGE_ENABLED: "maybe" })).toThrow(/STATUS_PAGE_ENABLED/);
    expect(() => loadConfig({ BATTERY_MIN_TEMPERATURE_C: "-80" })).toThrow(/BATTERY_MIN_TEMPERATURE_C/);
  });

  test("invalid values are named", () => {
    expect(() => loadConfig({ SERIAL_PROTOCOL: "canbus" })).toThrow(/SERIAL_PROTOCOL/);
    expect(() => loadConfig({ SERIAL_PARITY: "mark" })).toThrow(/SERIAL_PARITY/);
    expect(() => loadConfig({ MODBUS_UNIT_ID: "300" })).toThrow(/MODBUS_UNIT_ID/);
    expect(() => loadConfig({ BATTERY_CHEMISTRY: "nicad" })).toThrow(/BATTERY_CHEMISTRY/);
    expect(() => loadConfig({ BATTERY_CAPACITY_AH: "-5" })).toThrow(/BATTERY_CAPACITY_AH/);
    expect(() => loadConfig({ ENERGY_SIMULATOR: "hurricane" })).toThrow(/ENERGY_SIMULATOR/);
    expect(() => loadConfig({ BACKUP_HOOK_LEVEL: "normal" })).toThrow(/BACKUP_HOOK_LEVEL/);
    expect(() => loadConfig({ BACKUP_HOOK_URL: "not a url" })).toThrow(/BACKUP_HOOK_URL/);
    expect(() => loadConfig({ SERIAL_RESTART_MIN_MS: "5000", SERIAL_RESTART_MAX_MS: "1000" })).toThrow(/SERIAL_RESTART_MAX_MS/);
  });

  test("the emergency worker staggers recovery by 2 s and re-converges every 30 s unless told otherwise", () => {
    expect(loadConfig({}).energy.emergency).toEqual({ resumeStaggerMs: 2000, enforceIntervalMs: 30_000, throttlePercent: 25 });
    expect(loadConfig({ EMERGENCY_RESUME_STAGGER_MS: "0", EMERGENCY_ENFORCE_INTERVAL_MS: "5000" }).energy.emergency).toEqual({ resumeStaggerMs: 0, enforceIntervalMs: 5000, throttlePercent: 25 });
    expect(() => loadConfig({ EMERGENCY_RESUME_STAGGER_MS: "-1" })).toThrow(/EMERGENCY_RESUME_STAGGER_MS/);
    expect(() => loadConfig({ EMERGENCY_ENFORCE_INTERVAL_MS: "0" })).toThrow(/EMERGENCY_ENFORCE_INTERVAL_MS/);
  });
});
