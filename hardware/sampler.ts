import { batteryPower, round, type Reading } from "./protocols/reading";
import type { Sample } from "../server/energy/readings";

const MEANS = [
  "pvVoltage",
  "pvCurrent",
  "pvPower",
  "batteryVoltage",
  "batteryCurrent",
  "soc",
  "loadVoltage",
  "loadCurrent",
  "loadPower",
  "batteryTemperature",
  "controllerTemperature",
] as const satisfies ReadonlyArray<keyof Reading>;
type MeanField = (typeof MEANS)[number];

type Window = {
  start: number;
  samples: number;
  seconds: number;
  sums: Record<MeanField, number>;
  counts: Record<MeanField, number>;
  last: Reading;
  pvPowerMax: number | null;
  socMin: number | null;
  socMax: number | null;
  pvWh: number;
  loadWh: number;
  batteryInWh: number;
  batteryOutWh: number;
};

/**
 * Decimates the raw reading stream (about 1 Hz from VE.Direct) into one sample
 * per clock-aligned window: means of the measurements, the window's last
 * discrete values, SOC extremes, and the energy that flowed. Energy integrates
 * every raw reading (the previous reading's power held until the next), with
 * steps capped at `maxStepSeconds` so a telemetry gap is not filled with a
 * guess.
 */
export class Sampler {
  private window: Window | null = null;
  private prev: { at: number; reading: Reading } | null = null;

  constructor(private readonly opts: { windowSeconds: number; maxStepSeconds: number; source: string }) {}

  /** Adds a reading taken at `at` (ms); returns the window it closed, if any. */
  add(reading: Reading, at: number): Sample | null {
    const start = Math.floor(at / (this.opts.windowSeconds * 1000)) * this.opts.windowSeconds * 1000;
    let closed: Sample | null = null;
    if (this.window && this.window.start !== start) {
      closed = this.close();
    }
    this.window ??= this.open(start, reading);
    const w = this.window;
    w.samples++;
    w.last = reading;
    for (const f of MEANS) {
      const value = reading[f];
      if (value !== null) {
        w.sums[f] += value;
        w.counts[f]++;
      }
    }
    if (reading.pvPower !== null) w.pvPowerMax = Math.max(w.pvPowerMax ?? reading.pvPower, reading.pvPower);
    if (reading.soc !== null) {
      w.socMin = Math.min(w.socMin ?? reading.soc, reading.soc);
      w.socMax = Math.max(w.socMax ?? reading.soc, reading.soc);
    }
    if (this.prev) {
      const seconds = (at - this.prev.at) / 1000;
      if (seconds > 0 && seconds <= this.opts.maxStepSeconds) {
        const p = this.prev.reading;
        const hours = seconds / 3600;
        w.seconds += seconds;
        w.pvWh += (p.pvPower ?? 0) * hours;
        w.loadWh += (p.loadPower ?? 0) * hours;
        const battery = batteryPower(p) ?? 0;
        if (battery > 0) w.batteryInWh += battery * hours;
        else w.batteryOutWh += -battery * hours;
      }
    }
    this.prev = { at, reading };
    return closed;
  }

  /** Closes the open window once its end has passed (data stopped coming). */
  flushIfDue(now: number): Sample | null {
    if (!this.window || now < this.window.start + this.opts.windowSeconds * 1000) return null;
    return this.close();
  }

  /** Closes the open window whatever the time (shutdown). */
  flush(): Sample | null {
    return this.window ? this.close() : null;
  }

  private open(start: number, reading: Reading): Window {
    const zero = () => Object.fromEntries(MEANS.map((f) => [f, 0])) as Record<MeanField, number>;
    return {
      start,
      samples: 0,
      seconds: 0,
      sums: zero(),
      counts: zero(),
      last: reading,
      pvPowerMax: null,
      socMin: null,
      socMax: null,
      pvWh: 0,
      loadWh: 0,
      batteryInWh: 0,
      batteryOutWh: 0,
    };
  }

  private close(): Sample {
    const w = this.window!;
    this.window = null;
    const mean = (f: MeanField, decimals: number) => (w.counts[f] > 0 ? round(w.sums[f] / w.counts[f], decimals) : null);
    return {
      at: new Date(w.start),
      seconds: Math.round(w.seconds),
      samples: w.samples,
      source: this.opts.source,
      pvVoltage: mean("pvVoltage", 3),
      pvCurrent: mean("pvCurrent", 3),
      pvPower: mean("pvPower", 2),
      batteryVoltage: mean("batteryVoltage", 3),
      batteryCurrent: mean("batteryCurrent", 3),
      soc: mean("soc", 2),
      loadVoltage: mean("loadVoltage", 3),
      loadCurrent: mean("loadCurrent", 3),
      loadPower: mean("loadPower", 2),
      batteryTemperature: mean("batteryTemperature", 2),
      controllerTemperature: mean("controllerTemperature", 2),
      pvPowerMax: w.pvPowerMax,
      socMin: w.socMin,
      socMax: w.socMax,
      socSource: w.last.socSource,
      chargeState: w.last.chargeState,
      fault: w.last.fault,
      yieldTodayKwh: w.last.yieldTodayKwh,
      pvWh: w.pvWh,
      loadWh: w.loadWh,
      batteryInWh: w.batteryInWh,
      batteryOutWh: w.batteryOutWh,
    };
  }
}
