/**
 * Per-tenant solar accounting, the model (pure). Each metering tick shares
 * out the load energy the charge controller measured over the same interval
 * in which the tick sampled the containers' CPU counters:
 *
 * 1. Where it came from, per stored reading window: on backup power (the
 *    backup hook was told to take over) all of it is backup; otherwise the
 *    panels supplied what they produced up to the load (solar-direct) and the
 *    battery the rest. The battery is only ever charged from the panels, so
 *    both are sunlight; only backup is not.
 * 2. Idle: the platform draws power with nothing running (the host, the
 *    network, the controller itself). That part — up to the idle power
 *    (ENERGY_IDLE_POWER_W, or estimated as the lowest load of the last week)
 *    times the window — is shared by reservation: each live instance's
 *    vCPUs × the time it was live. Having an instance is what keeps the host on.
 * 3. Active: the rest is shared by CPU time actually used (cgroup CPU usage
 *    deltas), as Kepler and Scaphandre do. With no CPU used at all it is
 *    shared by reservation too.
 * 4. With no instance live, the energy is the platform's own and stays
 *    unattributed (recorded as such).
 *
 * So the instances' shares of a window add up to its measured load exactly,
 * whenever any instance was live.
 */

const HOUR_MS = 3_600_000;

export type EnergyWindow = { at: number; seconds: number; loadWh: number; pvWh: number; onBackup: boolean };

export type InstanceShare = {
  instanceId: string;
  userId: string;
  /** CPU time used in the tick (ns), from the cgroup counters. */
  cpuNs: number;
  /** vCPU-milliseconds reserved: the plan's CPU (thousandths) × live milliseconds in the tick. */
  reservedMillisMs: number;
  /**
   * Where the metering window the reservation covers began (ms). It can start
   * before the energy window being shared out (an instance whose metering
   * caught up late): only the overlapping part of its reservation counts.
   */
  liveFrom?: number;
};

/** The share with its reservation cut to the part of `[liveFrom, tickUntil]` that lies in `[from, until]` (assumed evenly spread). */
export function clipToWindow(share: InstanceShare, tickUntil: number, from: number, until: number): InstanceShare {
  if (share.liveFrom === undefined || tickUntil <= share.liveFrom) return share;
  const overlap = Math.max(0, Math.min(tickUntil, until) - Math.max(share.liveFrom, from));
  return { ...share, reservedMillisMs: share.reservedMillisMs * (overlap / (tickUntil - share.liveFrom)) };
}

export type Sources = { loadWh: number; solarWh: number; batteryWh: number; backupWh: number };

export type AttributionResult = {
  /** Per instance, per UTC hour (ms). */
  byInstance: Map<string, { userId: string; hours: Map<number, Sources> }>;
  totals: Sources & { idleWh: number; attributedWh: number; unattributedWh: number };
};

const zero = (): Sources => ({ loadWh: 0, solarWh: 0, batteryWh: 0, backupWh: 0 });

/** Where a window's load energy came from. */
export function sourcesOf(w: EnergyWindow): Sources {
  const load = Math.max(0, w.loadWh);
  if (w.onBackup) return { loadWh: load, solarWh: 0, batteryWh: 0, backupWh: load };
  const solar = Math.min(load, Math.max(0, w.pvWh));
  return { loadWh: load, solarWh: solar, batteryWh: load - solar, backupWh: 0 };
}

export function attributeLoadEnergy(windows: readonly EnergyWindow[], shares: readonly InstanceShare[], idlePowerW: number): AttributionResult {
  const totals = { ...zero(), idleWh: 0, attributedWh: 0, unattributedWh: 0 };
  const byInstance: AttributionResult["byInstance"] = new Map();
  const live = shares.filter((s) => s.reservedMillisMs > 0 || s.cpuNs > 0);
  const reserved = live.reduce((a, s) => a + s.reservedMillisMs, 0);
  const cpu = live.reduce((a, s) => a + s.cpuNs, 0);
  for (const w of windows) {
    const src = sourcesOf(w);
    totals.loadWh += src.loadWh;
    totals.solarWh += src.solarWh;
    totals.batteryWh += src.batteryWh;
    totals.backupWh += src.backupWh;
    if (src.loadWh === 0) continue;
    if (live.length === 0) {
      totals.unattributedWh += src.loadWh;
      continue;
    }
    const idle = Math.min(src.loadWh, (Math.max(0, idlePowerW) * w.seconds) / 3600);
    const active = src.loadWh - idle;
    totals.idleWh += idle;
    const hour = Math.floor(w.at / HOUR_MS) * HOUR_MS;
    for (const s of live) {
      const byReservation = reserved > 0 ? s.reservedMillisMs / reserved : 1 / live.length;
      const byCpu = cpu > 0 ? s.cpuNs / cpu : byReservation;
      const wh = idle * byReservation + active * byCpu;
      if (wh === 0) continue;
      let entry = byInstance.get(s.instanceId);
      if (!entry) {
        entry = { userId: s.userId, hours: new Map() };
        byInstance.set(s.instanceId, entry);
      }
      let acc = entry.hours.get(hour);
      if (!acc) {
        acc = zero();
        entry.hours.set(hour, acc);
      }
      const k = wh / src.loadWh;
      acc.loadWh += wh;
      acc.solarWh += src.solarWh * k;
      acc.batteryWh += src.batteryWh * k;
      acc.backupWh += src.backupWh * k;
      totals.attributedWh += wh;
    }
  }
  return { byInstance, totals };
}

/** Sunlight is what came from the panels, directly or through the battery. */
export const sunlightWh = (s: Pick<Sources, "solarWh" | "batteryWh">) => s.solarWh + s.batteryWh;

/** CO2 avoided by sunlight in place of grid energy at `gramsPerKwh`, in grams. */
export const co2AvoidedGrams = (s: Pick<Sources, "solarWh" | "batteryWh">, gramsPerKwh: number) => (sunlightWh(s) / 1000) * gramsPerKwh;

const round = (n: number, d: number) => Math.round(n * 10 ** d) / 10 ** d;

/** How a share of energy is shown: kWh by source, the sunlight share, CO2 avoided. */
export function energyView(s: Sources, gridCo2GramsPerKwh: number) {
  return {
    kwh: round(s.loadWh / 1000, 4),
    solarKwh: round(s.solarWh / 1000, 4),
    batteryKwh: round(s.batteryWh / 1000, 4),
    backupKwh: round(s.backupWh / 1000, 4),
    /** Share of the energy that was sunlight (from the panels directly or through the battery), 0–1. */
    sunlightShare: s.loadWh > 0 ? round((s.solarWh + s.batteryWh) / s.loadWh, 4) : null,
    co2AvoidedKg: round(co2AvoidedGrams(s, gridCo2GramsPerKwh) / 1000, 4),
  };
}

export const noEnergy = (): Sources => ({ loadWh: 0, solarWh: 0, batteryWh: 0, backupWh: 0 });

export function addEnergy(a: Sources, b: Sources): Sources {
  return { loadWh: a.loadWh + b.loadWh, solarWh: a.solarWh + b.solarWh, batteryWh: a.batteryWh + b.batteryWh, backupWh: a.backupWh + b.backupWh };
}
