import { READ_HOLDING, type ModbusClient } from "./modbus";

/**
 * An EPEver Tracer's own battery settings: holding registers 0x9000–0x900E,
 * read with function 0x03, volts ×100 (shared/reference/events-and-energy.md
 * §4.2). The controller acts on these by itself — it raises its under-voltage
 * warning, and at the low-voltage disconnect (LVD) it cuts the load, every
 * container with it — so the platform's thresholds must sit above them.
 */
export const EPEVER_SETTINGS_READ = { start: 0x9000, count: 15 } as const;

export type ControllerCutoffs = {
  source: "epever" | "config";
  /** Low-voltage disconnect: the controller cuts the load. */
  lvd: number | null;
  /** Low-voltage reconnect: the load comes back. */
  lvr: number | null;
  /** Under-voltage warning, and where it clears. */
  uvWarning: number | null;
  uvWarningRecover: number | null;
  dischargeLimit: number | null;
  /** Temperature compensation, mV per °C per 2 V cell (the controller moves its voltages by it). */
  tempCompMvPerCell: number | null;
  batteryType: number | null;
  capacityAh: number | null;
  /** True when the registers held 12 V values for a larger bank and were scaled (docs/energy.md, "Thresholds and the controller's own cut-offs"). */
  scaled: boolean;
};

/**
 * Decodes the settings block (from 0x9000). The ordering rules every EPEver
 * enforces (LVR > LVD ≥ discharging limit; warning recover > warning ≥
 * discharging limit) are checked: values breaking them were not read right and
 * are refused (null). Whether 24/48 V units hold pack volts or 12 V-normalised
 * ones is not documented; a LVD below 75 % of a larger bank's nominal voltage
 * is taken as 12 V-normalised and scaled.
 */
export function cutoffsFromEpever(registers: readonly number[], nominalVoltage: number): ControllerCutoffs | null {
  if (registers.length < EPEVER_SETTINGS_READ.count) return null;
  const volts = (index: number) => registers[index]! / 100;
  let scale = 1;
  const lvdRaw = volts(0x0d);
  if (nominalVoltage > 12 && lvdRaw < 0.75 * nominalVoltage) scale = nominalVoltage / 12;
  const v = (index: number) => Math.round(volts(index) * scale * 100) / 100;
  const cutoffs: ControllerCutoffs = {
    source: "epever",
    batteryType: registers[0x00]!,
    capacityAh: registers[0x01]!,
    tempCompMvPerCell: Math.abs(registers[0x02]! / 100),
    lvr: v(0x0a),
    uvWarningRecover: v(0x0b),
    uvWarning: v(0x0c),
    lvd: v(0x0d),
    dischargeLimit: v(0x0e),
    scaled: scale !== 1,
  };
  const ordered = cutoffs.lvr! > cutoffs.lvd! && cutoffs.lvd! >= cutoffs.dischargeLimit! && cutoffs.uvWarningRecover! > cutoffs.uvWarning! && cutoffs.uvWarning! >= cutoffs.dischargeLimit!;
  if (!ordered || !(cutoffs.lvd! > 0.5 * nominalVoltage && cutoffs.lvd! < 1.2 * nominalVoltage)) return null;
  return cutoffs;
}

export async function readEpeverCutoffs(client: ModbusClient, unit: number, nominalVoltage: number): Promise<ControllerCutoffs | null> {
  const registers = await client.read(unit, READ_HOLDING, EPEVER_SETTINGS_READ.start, EPEVER_SETTINGS_READ.count);
  return cutoffsFromEpever(registers, nominalVoltage);
}

/** Holding registers 0x9000–0x900E as a 12 V lead-acid Tracer ships (the simulator's answer), scaled to the bank. */
export function defaultEpeverSettings(nominalVoltage: number, over: Partial<Record<"lvd" | "lvr" | "uvWarning" | "uvWarningRecover", number>> = {}): number[] {
  const k = nominalVoltage / 12;
  const x100 = (volts: number) => Math.round(volts * 100);
  return [
    1, // sealed lead-acid
    100, // Ah
    300, // 3.00 mV/°C/2V
    x100(16.0 * k), // over-voltage disconnect
    x100(15.0 * k), // charging limit
    x100(15.0 * k), // over-voltage reconnect
    x100(14.6 * k), // equalize
    x100(14.4 * k), // boost
    x100(13.8 * k), // float
    x100(13.2 * k), // boost reconnect
    x100(over.lvr ?? 12.6 * k),
    x100(over.uvWarningRecover ?? 12.2 * k),
    x100(over.uvWarning ?? 12.0 * k),
    x100(over.lvd ?? 11.1 * k),
    x100(10.6 * k), // discharging limit
  ];
}
