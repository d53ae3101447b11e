/**
 * State of charge from battery voltage, for controllers that do not report one
 * (a Victron MPPT has no SOC field; only a BMV/SmartShunt or a BMS measures it).
 *
 * The curves are *resting* (open-circuit) voltage per cell against SOC, the
 * figures commonly published by battery makers:
 * - lead-acid (flooded/AGM/gel): 12 V battery = 6 cells; 12.73 V full … 11.36 V empty.
 * - LiFePO4: 12.8 V battery = 4 cells; 3.40 V/cell full … 2.50 V/cell empty. The
 *   curve is flat between 30 % and 90 % (tens of millivolts), so a voltage
 *   estimate of a LiFePO4 bank is coarse there; fit a shunt when it matters.
 * Under charge the voltage reads high and under load it reads low (internal
 * resistance), so the estimate leads while charging and lags while discharging.
 * The power policy's hysteresis and dwell absorb that noise.
 */
export const BATTERY_CHEMISTRIES = ["lead-acid", "lifepo4"] as const;
export type BatteryChemistry = (typeof BATTERY_CHEMISTRIES)[number];

type Point = readonly [soc: number, cellVolts: number];

const LEAD_ACID_12V: readonly number[] = [11.36, 11.51, 11.66, 11.81, 11.96, 12.1, 12.24, 12.37, 12.5, 12.62, 12.73];
const LIFEPO4_CELL: readonly number[] = [2.5, 3.0, 3.2, 3.22, 3.25, 3.26, 3.27, 3.3, 3.32, 3.35, 3.4];

/** SOC 0, 10 … 100 % against volts per cell. */
export const SOC_CURVES: Record<BatteryChemistry, readonly Point[]> = {
  "lead-acid": LEAD_ACID_12V.map((v, i) => [i * 10, v / 6] as const),
  lifepo4: LIFEPO4_CELL.map((v, i) => [i * 10, v] as const),
};

/**
 * Cells in series. Lead-acid cells are 2 V nominal; LiFePO4 batteries are sold
 * as "12/24/48 V" for 4/8/16 cells (3.2 V nominal each).
 */
export function defaultCells(chemistry: BatteryChemistry, nominalVoltage: number): number {
  if (chemistry === "lead-acid") return Math.max(1, Math.round(nominalVoltage / 2));
  const common: Record<number, number> = { 12: 4, 24: 8, 36: 12, 48: 16 };
  return common[nominalVoltage] ?? Math.max(1, Math.round(nominalVoltage / 3.2));
}

export type BatteryBank = { chemistry: BatteryChemistry; cells: number };

/** Percent (0–100, one decimal) for a battery voltage, clamped to the curve's ends. */
export function socFromVoltage(bank: BatteryBank, volts: number): number {
  const curve = SOC_CURVES[bank.chemistry];
  const perCell = volts / bank.cells;
  const first = curve[0]!;
  const last = curve[curve.length - 1]!;
  if (perCell <= first[1]) return first[0];
  if (perCell >= last[1]) return last[0];
  for (let i = 1; i < curve.length; i++) {
    const [socHi, vHi] = curve[i]!;
    const [socLo, vLo] = curve[i - 1]!;
    if (perCell <= vHi) return Math.round((socLo + ((perCell - vLo) / (vHi - vLo)) * (socHi - socLo)) * 10) / 10;
  }
  return last[0];
}

/** The resting voltage of the bank at a SOC: the inverse of `socFromVoltage` (used by the simulator). */
export function voltageForSoc(bank: BatteryBank, soc: number): number {
  const curve = SOC_CURVES[bank.chemistry];
  const s = Math.min(100, Math.max(0, soc));
  for (let i = 1; i < curve.length; i++) {
    const [socHi, vHi] = curve[i]!;
    const [socLo, vLo] = curve[i - 1]!;
    if (s <= socHi) return (vLo + ((s - socLo) / (socHi - socLo)) * (vHi - vLo)) * bank.cells;
  }
  return curve[curve.length - 1]![1] * bank.cells;
}
