import type { PowerPolicy } from "../../hardware/policy";
import type { ControllerCutoffs } from "../../hardware/protocols/epever-settings";
import { socFromVoltage, voltageForSoc, type BatteryBank, type BatteryChemistry } from "../../hardware/soc";
import type { Config } from "../config";

/**
 * The policy's thresholds against the controller's own cut-offs. The policy
 * speaks in SOC; the controller in volts, measured under load. So a threshold
 * is turned into the bank's resting voltage at that SOC and must clear:
 *
 * - shutdown (where standard instances stop): the low-voltage disconnect
 *   + the temperature term + the load-sag margin. Below that the controller
 *   may cut the load — critical instances included — before the platform has
 *   finished shedding. Such a policy is refused.
 * - critical (where interruptible instances pause): the under-voltage warning
 *   + the load-sag margin. Pausing below the controller's own warning is
 *   allowed but flagged.
 *
 * Temperature term: controllers compensate their voltages for temperature,
 * the LVD included (EPEver's ViewStar manual says so; on Tracers it is
 * unconfirmed, so it is assumed): coefficient (mV/°C per 2 V cell; the
 * register 0x9002, or 3 mV for lead-acid and 0 for LiFePO4 when unknown)
 * × 2 V cells × (25 °C − the coldest the bank gets, BATTERY_MIN_TEMPERATURE_C).
 * A 12 V lead-acid bank at 10 °C: 3 × 6 × 15 = 0.27 V.
 * Load sag: the voltage drop across the bank's internal resistance at peak
 * load (ENERGY_CUTOFF_SAG_V, default 0.2 V per 12 V ≈ 40 A × 5 mΩ).
 */

const DEFAULT_TEMP_COMP: Record<BatteryChemistry, number> = { "lead-acid": 3, lifepo4: 0 };

export type Margins = { temperatureVolts: number; sagVolts: number };

export type AlignmentOptions = { bank: BatteryBank & { nominalVoltage: number }; minTemperatureC: number; sagVolts: number };

export function alignmentOptions(energy: Config["energy"]): AlignmentOptions {
  return {
    bank: { chemistry: energy.battery.chemistry, cells: energy.battery.cells, nominalVoltage: energy.battery.nominalVoltage },
    minTemperatureC: energy.battery.minTemperatureC,
    sagVolts: energy.controller.sagVolts,
  };
}

export function margins(cutoffs: ControllerCutoffs, opts: AlignmentOptions): Margins {
  const coefficient = cutoffs.tempCompMvPerCell ?? DEFAULT_TEMP_COMP[opts.bank.chemistry];
  const twoVoltCells = opts.bank.nominalVoltage / 2;
  const temperatureVolts = (coefficient / 1000) * twoVoltCells * Math.max(0, 25 - opts.minTemperatureC);
  return { temperatureVolts: round(temperatureVolts), sagVolts: opts.sagVolts };
}

export type LevelAlignment = { soc: number; restingVolts: number; requiredVolts: number; minimumSoc: number; ok: boolean };

export type Alignment = {
  known: boolean;
  ok: boolean;
  cutoffs: ControllerCutoffs | null;
  margins: Margins | null;
  /** SOC at which the controller may cut the load (LVD + margins), for the forecast. */
  cutoffSoc: number | null;
  shutdown: LevelAlignment | null;
  critical: LevelAlignment | null;
};

const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

function level(soc: number, requiredVolts: number, bank: BatteryBank): LevelAlignment {
  const restingVolts = voltageForSoc(bank, soc);
  // One decimal up, so the minimum itself passes.
  const minimumSoc = Math.ceil(socFromVoltage(bank, requiredVolts) * 10 + 1e-9) / 10;
  return { soc, restingVolts: round(restingVolts), requiredVolts: round(requiredVolts), minimumSoc, ok: restingVolts >= requiredVolts - 1e-9 };
}

export function policyAlignment(policy: PowerPolicy, cutoffs: ControllerCutoffs | null, opts: AlignmentOptions): Alignment {
  if (!cutoffs || cutoffs.lvd === null) return { known: false, ok: true, cutoffs, margins: null, cutoffSoc: null, shutdown: null, critical: null };
  const m = margins(cutoffs, opts);
  const required = cutoffs.lvd + m.temperatureVolts + m.sagVolts;
  const shutdown = level(policy.thresholds.shutdown, required, opts.bank);
  const critical = cutoffs.uvWarning === null ? null : level(policy.thresholds.critical, cutoffs.uvWarning + m.sagVolts, opts.bank);
  return { known: true, ok: shutdown.ok && (critical?.ok ?? true), cutoffs, margins: m, cutoffSoc: round(socFromVoltage(opts.bank, required), 1), shutdown, critical };
}

/** The configured cut-offs (VE.Direct controllers cannot be asked); null when none is configured. */
export function configuredCutoffs(energy: Config["energy"]): ControllerCutoffs | null {
  const c = energy.controller.cutoffs;
  if (c.lvd === null && c.uvWarning === null) return null;
  return {
    source: "config",
    lvd: c.lvd,
    lvr: c.lvr,
    uvWarning: c.uvWarning,
    uvWarningRecover: null,
    dischargeLimit: null,
    tempCompMvPerCell: null,
    batteryType: null,
    capacityAh: null,
    scaled: false,
  };
}
