import type { Reading } from "./protocols/reading";
import type { BatteryChemistry } from "./soc";

/**
 * Plausibility of a decoded reading. A checksum or CRC says the bytes arrived
 * as sent; it does not say the value is possible. Each reading is checked
 * against what this installation can physically produce — the battery's
 * chemistry and cell count, the controller's current rating, the PV array's
 * size — and against the reading before it (a battery cannot change its
 * voltage or charge faster than its current allows). A failing reading is
 * rejected whole and counted by reason; it never reaches storage or the policy.
 */

export type RejectReason = "soc_range" | "voltage_range" | "current_range" | "pv_power_range" | "pv_voltage" | "load_power_range" | "jump";
export const REJECT_REASONS: readonly RejectReason[] = ["soc_range", "voltage_range", "current_range", "pv_power_range", "pv_voltage", "load_power_range", "jump"];

/** Volts per cell a bank of this chemistry can show at all (charging, resting or under load). */
const CELL_VOLTS: Record<BatteryChemistry, { min: number; max: number }> = {
  // 6 cells: 9.0–16.2 V, i.e. 0.75–1.35 × nominal (equalisation reaches ~15.5 V).
  "lead-acid": { min: 1.5, max: 2.7 },
  // 4 cells: 8.0–15.6 V; a BMS cuts off near 2.5 and 3.65 V per cell.
  lifepo4: { min: 2.0, max: 3.9 },
};

export type PlausibilityLimits = {
  batteryVolts: { min: number; max: number };
  /** The controller's rated current (battery and load), with 10 % tolerance. */
  maxCurrentA: number;
  /** The PV array's peak power, with 10 % tolerance and 10 W of offset error. */
  maxPvPowerW: number;
  maxLoadPowerW: number;
  nominalVoltage: number;
  capacityAh: number;
};

export function plausibilityLimits(opts: { chemistry: BatteryChemistry; cells: number; nominalVoltage: number; capacityAh: number; ratedCurrentA: number; pvArrayWp: number }): PlausibilityLimits {
  const cell = CELL_VOLTS[opts.chemistry];
  const batteryVolts = { min: cell.min * opts.cells, max: cell.max * opts.cells };
  const maxCurrentA = opts.ratedCurrentA * 1.1;
  return {
    batteryVolts,
    maxCurrentA,
    maxPvPowerW: opts.pvArrayWp * 1.1 + 10,
    maxLoadPowerW: maxCurrentA * batteryVolts.max,
    nominalVoltage: opts.nominalVoltage,
    capacityAh: opts.capacityAh,
  };
}

/** The first field out of its physical range, or null. Unknown (null) fields are not judged. */
export function outOfRange(r: Reading, limits: PlausibilityLimits): RejectReason | null {
  if (r.soc !== null && !(r.soc >= 0 && r.soc <= 100)) return "soc_range";
  if (r.batteryVoltage !== null && !(r.batteryVoltage >= limits.batteryVolts.min && r.batteryVoltage <= limits.batteryVolts.max)) return "voltage_range";
  for (const current of [r.batteryCurrent, r.loadCurrent, r.pvCurrent]) {
    if (current !== null && !(Math.abs(current) <= limits.maxCurrentA)) return "current_range";
  }
  if (r.pvPower !== null && !(r.pvPower >= 0 && r.pvPower <= limits.maxPvPowerW)) return "pv_power_range";
  // A panel below the battery's voltage cannot push current into it.
  if (r.pvPower !== null && r.pvPower >= 5 && r.pvVoltage !== null && r.batteryVoltage !== null && r.pvVoltage <= r.batteryVoltage) return "pv_voltage";
  if (r.loadPower !== null && !(r.loadPower >= 0 && r.loadPower <= limits.maxLoadPowerW)) return "load_power_range";
  return null;
}

/** Ohms: a voltage step up to this times the current step is the battery's internal resistance at work (generous for aged lead-acid). */
const STEP_OHMS = 0.05;
/** Readings rejected as jumps in a row that agree with each other: the change is real (a reconnect, a different bank). */
const CONFIRMATIONS = 3;

/**
 * Whether `next` can follow `prev` `hours` later. Voltage may step by 5 % of
 * nominal, plus what the current step explains through internal resistance,
 * plus a drift of 20 % of nominal per hour. A controller-reported SOC may move
 * by 2 points plus what 1.5 × the rated current could add or remove over the
 * interval. (A SOC estimated from voltage follows the voltage, already judged.)
 */
export function isJump(prev: Reading, next: Reading, hours: number, limits: PlausibilityLimits): boolean {
  const h = Math.max(0, hours);
  if (prev.batteryVoltage !== null && next.batteryVoltage !== null) {
    const di = prev.batteryCurrent !== null && next.batteryCurrent !== null ? Math.abs(next.batteryCurrent - prev.batteryCurrent) : limits.maxCurrentA;
    const allowed = 0.05 * limits.nominalVoltage + STEP_OHMS * di + 0.2 * limits.nominalVoltage * h;
    if (Math.abs(next.batteryVoltage - prev.batteryVoltage) > allowed) return true;
  }
  if (prev.soc !== null && next.soc !== null && prev.socSource === "controller" && next.socSource === "controller") {
    const allowed = 2 + (100 * 1.5 * limits.maxCurrentA * h) / limits.capacityAh;
    if (Math.abs(next.soc - prev.soc) > allowed) return true;
  }
  return false;
}

export type Verdict = { ok: true } | { ok: false; reason: RejectReason };

/**
 * Range checks, then the jump check against the last accepted reading. When
 * readings keep being rejected as jumps but agree with one another, the third
 * is accepted and becomes the new reference, so a wrong first reading (or a
 * genuine step, like a bank swapped) cannot lock the filter out for good.
 */
export class PlausibilityFilter {
  private last: { reading: Reading; at: number } | null = null;
  private streak: Array<{ reading: Reading; at: number }> = [];

  constructor(private readonly limits: PlausibilityLimits) {}

  /** `at` is the reading's time in milliseconds (the energy clock's). */
  check(reading: Reading, at: number): Verdict {
    const range = outOfRange(reading, this.limits);
    if (range) return { ok: false, reason: range };
    const last = this.last;
    if (last && isJump(last.reading, reading, (at - last.at) / 3_600_000, this.limits)) {
      const previous = this.streak.at(-1);
      if (previous && isJump(previous.reading, reading, (at - previous.at) / 3_600_000, this.limits)) this.streak = [];
      this.streak.push({ reading, at });
      if (this.streak.length < CONFIRMATIONS) return { ok: false, reason: "jump" };
    }
    this.last = { reading, at };
    this.streak = [];
    return { ok: true };
  }

  /** Forget the reference (telemetry was lost: the next reading starts afresh). */
  reset(): void {
    this.last = null;
    this.streak = [];
  }
}
