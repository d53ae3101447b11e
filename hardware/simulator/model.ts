import { round, type ChargeState } from "../protocols/reading";
import { defaultCells, voltageForSoc, type BatteryBank, type BatteryChemistry } from "../soc";
import { weekSky, weekBattery } from "./week";

/**
 * A small physical model of a solar charge controller with a battery and a
 * load: PV power follows the scenario, the battery integrates
 * (PV × conversion efficiency − load), and the terminal voltage is the resting
 * voltage for the SOC plus the drop across the internal resistance. Like a
 * real controller it cuts its load output below its low-voltage disconnect
 * and reconnects above its reconnect voltage. Time is simulated seconds,
 * advanced by the caller.
 */
export const SCENARIOS = ["sunny-day", "night-drain", "clouds", "recovery", "corrupt-frames", "cable-pulled", "week"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export type ModelOptions = {
  scenario: ScenarioName;
  chemistry: BatteryChemistry;
  nominalVoltage: number;
  capacityAh: number;
  /** Starting state of charge (%); each scenario has its own default. */
  startSoc?: number;
  /** Constant load (W), until `setLoad` says otherwise. */
  loadW?: number;
  /** Peak PV power (W). */
  pvPeakW?: number;
  /** clouds: the SOC the battery hovers around (%), and how far it swings either side. */
  around?: number;
  swing?: number;
  /** Ohms; the voltage sags under load and rises under charge by I × R. */
  internalResistance?: number;
  /** Epoch ms the model starts at: its time of day follows (UTC). Default: the scenario's own hour. */
  startAt?: number;
  /** The controller's load disconnect and reconnect (V); default EPEver's 11.1 / 12.6 per 12 V. */
  cutoffs?: { lvd: number; lvr: number };
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
  /** The load is off because the battery fell below the low-voltage disconnect. */
  loadDisconnected: boolean;
  /** How often, and for how long (simulated seconds), the controller has cut the load. */
  disconnects: number;
  disconnectedSeconds: number;
  /** Lowest terminal voltage seen. */
  minBatteryVoltage: number;
  chargeState: ChargeState;
  yieldTodayWh: number;
  yieldTotalWh: number;
  maxPowerToday: number;
  yieldYesterdayWh: number;
  maxPowerYesterday: number;
  batteryTemperature: number;
  controllerTemperature: number;
};

export const CONVERSION_EFFICIENCY = 0.97;

const DEFAULTS: Record<ScenarioName, { startSoc: number; loadW: number; pvPeakW: number; startClock: number }> = {
  "sunny-day": { startSoc: 45, loadW: 60, pvPeakW: 400, startClock: 6 * 3600 },
  "night-drain": { startSoc: 60, loadW: 120, pvPeakW: 0, startClock: 20 * 3600 },
  clouds: { startSoc: 50, loadW: 60, pvPeakW: 400, startClock: 11 * 3600 },
  recovery: { startSoc: 10, loadW: 60, pvPeakW: 500, startClock: 12 * 3600 },
  "corrupt-frames": { startSoc: 45, loadW: 60, pvPeakW: 400, startClock: 9 * 3600 },
  "cable-pulled": { startSoc: 45, loadW: 60, pvPeakW: 400, startClock: 9 * 3600 },
  // A week of sun, cloudy days and a failing battery (week.ts).
  week: { startSoc: 85, loadW: 90, pvPeakW: 600, startClock: 0 },
};

export class ControllerModel {
  readonly bank: BatteryBank;
  private readonly capacityWh: number;
  private loadW: number;
  private readonly pvPeakW: number;
  private readonly resistance: number;
  private readonly cutoffs: { lvd: number; lvr: number };
  private elapsed = 0;
  private cloudy = false;
  private s: ControllerState;

  constructor(private readonly opts: ModelOptions) {
    const d = DEFAULTS[opts.scenario];
    this.bank = { chemistry: opts.chemistry, cells: defaultCells(opts.chemistry, opts.nominalVoltage) };
    this.capacityWh = opts.capacityAh * opts.nominalVoltage;
    this.loadW = opts.loadW ?? d.loadW;
    this.pvPeakW = opts.pvPeakW ?? d.pvPeakW;
    this.resistance = opts.internalResistance ?? 0.005 * (opts.nominalVoltage / 12);
    const k = opts.nominalVoltage / 12;
    this.cutoffs = opts.cutoffs ?? { lvd: 11.1 * k, lvr: 12.6 * k };
    const soc = opts.startSoc ?? (opts.scenario === "clouds" ? (opts.around ?? d.startSoc) : d.startSoc);
    const startClock = opts.startAt === undefined ? d.startClock : Math.floor((opts.startAt % 86_400_000) / 1000);
    this.s = {
      clock: startClock,
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
      loadDisconnected: false,
      disconnects: 0,
      disconnectedSeconds: 0,
      minBatteryVoltage: Infinity,
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

  /** What the platform draws from the load output from now on (W). */
  setLoad(watts: number): void {
    this.loadW = Math.max(0, watts);
  }

  /** PV power the scenario offers at this moment (before the battery is full). */
  private pvAvailable(): number {
    const hour = this.s.clock / 3600;
    const sun = hour > 6 && hour < 18 ? this.pvPeakW * Math.sin((Math.PI * (hour - 6)) / 12) : 0;
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
      case "week":
        return sun * weekSky(this.elapsed);
      default:
        return sun;
    }
  }

  /** Capacity (Wh) and internal resistance now: a failing battery loses the one and gains the other. */
  private battery(): { capacityWh: number; resistance: number } {
    if (this.opts.scenario !== "week") return { capacityWh: this.capacityWh, resistance: this.resistance };
    const health = weekBattery(this.elapsed);
    return { capacityWh: this.capacityWh * health.capacity, resistance: this.resistance * health.resistance };
  }

  /** Advances the model by `seconds` of simulated time. */
  step(seconds: number): ControllerState {
    const s = this.s;
    this.elapsed += seconds;
    const { capacityWh, resistance } = this.battery();
    let pv = this.pvAvailable();
    const load = s.loadOn ? this.loadW : 0;
    // A full battery takes only what the load draws: the controller curtails PV.
    if (s.soc >= 100 && pv * CONVERSION_EFFICIENCY > load) pv = load / CONVERSION_EFFICIENCY;
    const net = pv * CONVERSION_EFFICIENCY - load;
    s.soc = Math.min(100, Math.max(0, s.soc + ((net * seconds) / 3600 / capacityWh) * 100));

    const rest = voltageForSoc(this.bank, s.soc);
    const current = net / rest;
    s.batteryVoltage = rest + current * resistance;
    s.batteryCurrent = net / s.batteryVoltage;
    s.pvPower = Math.round(pv);
    s.pvVoltage = pv > 0 ? round((31.5 - 1.5 * (pv / Math.max(1, this.pvPeakW))) * (this.opts.nominalVoltage / 12), 2) : 0.01;
    s.pvCurrent = pv > 0 ? pv / s.pvVoltage : 0;
    s.loadPower = load;
    s.loadCurrent = load / s.batteryVoltage;
    s.chargeState = pv <= 0 ? "off" : s.soc < 80 ? "bulk" : s.soc < 99 ? "absorption" : "float";
    s.controllerTemperature = round(30 + (10 * pv) / Math.max(1, this.pvPeakW), 1);
    if (seconds > 0) s.minBatteryVoltage = Math.min(s.minBatteryVoltage, s.batteryVoltage);

    // The controller's own protection, on the voltage it measures (under load).
    if (s.loadDisconnected) s.disconnectedSeconds += seconds;
    if (s.loadOn && s.batteryVoltage < this.cutoffs.lvd) {
      s.loadOn = false;
      s.loadDisconnected = true;
      s.disconnects += 1;
    } else if (s.loadDisconnected && s.batteryVoltage >= this.cutoffs.lvr) {
      s.loadOn = true;
      s.loadDisconnected = false;
    }

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
