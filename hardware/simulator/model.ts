import { round, type ChargeState } from "../protocols/reading";
import { defaultCells, voltageForSoc, type BatteryBank, type BatteryChemistry } from "../soc";

/**
 * A small physical model of a solar charge controller with a battery and a
 * constant load: PV power follows the scenario, the battery integrates
 * (PV × conversion efficiency − load), and the terminal voltage is the resting
 * voltage for the SOC plus the drop across the internal resistance. Time is
 * simulated seconds, advanced by the caller.
 */
export const SCENARIOS = ["sunny-day", "night-drain", "clouds", "recovery", "corrupt-frames", "cable-pulled"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export type ModelOptions = {
  scenario: ScenarioName;
  chemistry: BatteryChemistry;
  nominalVoltage: number;
  capacityAh: number;
  /** Starting state of charge (%); each scenario has its own default. */
  startSoc?: number;
  /** Constant load (W). */
  loadW?: number;
  /** Peak PV power (W). */
  pvPeakW?: number;
  /** clouds: the SOC the battery hovers around (%), and how far it swings either side. */
  around?: number;
  swing?: number;
  /** Ohms; the voltage sags under load and rises under charge by I × R. */
  internalResistance?: number;
};

export type ControllerState = {
  /** Simulated seconds since midnight of day `day`. */
  clock: number;
  day: number;
  soc: number;
  pvVoltage: number;
  pvPower: number;
  pvCurrent: number;
  batteryVoltage: number;
  batteryCurrent: number;
  loadPower: number;
  loadCurrent: number;
  loadOn: boolean;
  chargeState: ChargeState;
  yieldTodayWh: number;
  yieldTotalWh: number;
  maxPowerToday: number;
  yieldYesterdayWh: number;
  maxPowerYesterday: number;
  batteryTemperature: number;
  controllerTemperature: number;
};

const CONVERSION_EFFICIENCY = 0.97;

const DEFAULTS: Record<ScenarioName, { startSoc: number; loadW: number; pvPeakW: number; startClock: number }> = {
  "sunny-day": { startSoc: 45, loadW: 60, pvPeakW: 400, startClock: 6 * 3600 },
  "night-drain": { startSoc: 60, loadW: 120, pvPeakW: 0, startClock: 20 * 3600 },
  clouds: { startSoc: 50, loadW: 60, pvPeakW: 400, startClock: 11 * 3600 },
  recovery: { startSoc: 10, loadW: 60, pvPeakW: 500, startClock: 12 * 3600 },
  "corrupt-frames": { startSoc: 45, loadW: 60, pvPeakW: 400, startClock: 9 * 3600 },
  "cable-pulled": { startSoc: 45, loadW: 60, pvPeakW: 400, startClock: 9 * 3600 },
};

export class ControllerModel {
  readonly bank: BatteryBank;
  private readonly capacityWh: number;
  private readonly loadW: number;
  private readonly pvPeakW: number;
  private readonly resistance: number;
  private cloudy = false;
  private s: ControllerState;

  constructor(private readonly opts: ModelOptions) {
    const d = DEFAULTS[opts.scenario];
    this.bank = { chemistry: opts.chemistry, cells: defaultCells(opts.chemistry, opts.nominalVoltage) };
    this.capacityWh = opts.capacityAh * opts.nominalVoltage;
    this.loadW = opts.loadW ?? d.loadW;
    this.pvPeakW = opts.pvPeakW ?? d.pvPeakW;
    this.resistance = opts.internalResistance ?? 0.005 * (opts.nominalVoltage / 12);
    const soc = opts.startSoc ?? (opts.scenario === "clouds" ? (opts.around ?? d.startSoc) : d.startSoc);
    this.s = {
      clock: d.startClock,
      day: 0,
      soc,
      pvVoltage: 0,
      pvPower: 0,
      pvCurrent: 0,
      batteryVoltage: voltageForSoc(this.bank, soc),
      batteryCurrent: 0,
      loadPower: this.loadW,
      loadCurrent: 0,
      loadOn: true,
      chargeState: "off",
      yieldTodayWh: 0,
      yieldTotalWh: 1_234_000,
      maxPowerToday: 0,
      yieldYesterdayWh: 1_850,
      maxPowerYesterday: Math.round(this.pvPeakW * 0.9),
      batteryTemperature: 25,
      controllerTemperature: 30,
    };
    this.step(0);
  }

  get state(): ControllerState {
    return this.s;
  }

  /** PV power the scenario offers at this moment (before the battery is full). */
  private pvAvailable(): number {
    const hour = this.s.clock / 3600;
    switch (this.opts.scenario) {
      case "night-drain":
        return 0;
      case "recovery":
        return this.pvPeakW;
      case "clouds": {
        const around = this.opts.around ?? DEFAULTS.clouds.startSoc;
        const swing = this.opts.swing ?? 1.5;
        // Clouds come when the battery has risen past the band, clear when it has fallen below it.
        if (this.s.soc > around + swing) this.cloudy = true;
        if (this.s.soc < around - swing) this.cloudy = false;
        const margin = Math.max(40, this.loadW * 0.75);
        return Math.max(0, (this.cloudy ? this.loadW - margin : this.loadW + margin) / CONVERSION_EFFICIENCY);
      }
      default:
        return hour > 6 && hour < 18 ? this.pvPeakW * Math.sin((Math.PI * (hour - 6)) / 12) : 0;
    }
  }

  /** Advances the model by `seconds` of simulated time. */
  step(seconds: number): ControllerState {
    const s = this.s;
    let pv = this.pvAvailable();
    const load = s.loadOn ? this.loadW : 0;
    // A full battery takes only what the load draws: the controller curtails PV.
    if (s.soc >= 100 && pv * CONVERSION_EFFICIENCY > load) pv = load / CONVERSION_EFFICIENCY;
    const net = pv * CONVERSION_EFFICIENCY - load;
    s.soc = Math.min(100, Math.max(0, s.soc + ((net * seconds) / 3600 / this.capacityWh) * 100));

    const rest = voltageForSoc(this.bank, s.soc);
    const current = net / rest;
    s.batteryVoltage = rest + current * this.resistance;
    s.batteryCurrent = net / s.batteryVoltage;
    s.pvPower = Math.round(pv);
    s.pvVoltage = pv > 0 ? round(31.5 - 1.5 * (pv / Math.max(1, this.pvPeakW)), 2) : 0.01;
    s.pvCurrent = pv > 0 ? pv / s.pvVoltage : 0;
    s.loadPower = load;
    s.loadCurrent = load / s.batteryVoltage;
    s.chargeState = pv <= 0 ? "off" : s.soc < 80 ? "bulk" : s.soc < 99 ? "absorption" : "float";
    s.controllerTemperature = round(30 + (10 * pv) / Math.max(1, this.pvPeakW), 1);

    const energy = (pv * CONVERSION_EFFICIENCY * seconds) / 3600;
    s.yieldTodayWh += energy;
    s.yieldTotalWh += energy;
    s.maxPowerToday = Math.max(s.maxPowerToday, s.pvPower);
    s.clock += seconds;
    while (s.clock >= 86_400) {
      s.clock -= 86_400;
      s.day += 1;
      s.yieldYesterdayWh = s.yieldTodayWh;
      s.maxPowerYesterday = s.maxPowerToday;
      s.yieldTodayWh = 0;
      s.maxPowerToday = 0;
    }
    return s;
  }
}
