import { and, desc, gte, lt } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyHourly, energyReadings } from "../../db/schema";
import type { PowerPolicy } from "../../hardware/policy";
import type { BatteryChemistry } from "../../hardware/soc";
import type { Config } from "../config";
import { buildProfile, clearSkyIndex, estimateCapacityWh, forecastRunway, type ForecastResult, type HourPoint, type Threshold } from "./forecast";

/**
 * The runway forecast as a service: loads the platform's own history (hourly
 * roll-ups of the last two weeks, and the latest discharge for the battery's
 * real capacity), runs the pure forecast (forecast.ts) and shapes the answer
 * for `energy.status`, `energy.forecast`, the status page and the monitor.
 */

const HOUR_MS = 3_600_000;
const HISTORY_DAYS = 14;
/** Surplus solar stored per watt-hour: round-trip losses by chemistry. */
const CHARGE_EFFICIENCY: Record<BatteryChemistry, number> = { "lead-acid": 0.85, lifepo4: 0.95 };

export type RunwayInput = {
  /** Energy-clock time of the forecast. */
  now: number;
  soc: number;
  /** The load and solar power now (W); null: only the history. */
  loadW: number | null;
  pvW?: number | null;
  policy: PowerPolicy;
  /** SOC at which the controller may cut the load (alignment.ts), forecast as `cutoff`. */
  cutoffSoc: number | null;
};

export type ThresholdForecast = {
  soc: number;
  expectedAt: string | null;
  earliestAt: string | null;
  latestAt: string | null;
  /** Minutes from `at`; null: not within the horizon. */
  minutes: { expected: number | null; earliest: number | null; latest: number | null };
};

export type Runway = {
  at: string;
  horizonHours: number;
  soc: number;
  capacityWh: { rated: number; estimated: number | null; used: number };
  clearSkyIndex: number | null;
  historyDays: number;
  thresholds: Record<string, ThresholdForecast>;
  minSoc: { expected: number; pessimistic: number; optimistic: number };
};

/** The profile and capacity inputs, loaded once and reusable for a while (the monitor caches them per hour). */
export type RunwayHistory = { hours: HourPoint[]; capacityEstimateWh: number | null; loadedAt: number };

export async function loadRunwayHistory(db: Database, now: number): Promise<RunwayHistory> {
  const since = new Date(now - HISTORY_DAYS * 24 * HOUR_MS);
  const rows = await db
    .select({ hour: energyHourly.hour, seconds: energyHourly.seconds, pvWh: energyHourly.pvWh, loadWh: energyHourly.loadWh, socMax: energyHourly.socMax })
    .from(energyHourly)
    .where(and(gte(energyHourly.hour, since), lt(energyHourly.hour, new Date(now + HOUR_MS))));
  // The latest stretch of discharge within the last 12 hours, newest first until the battery was charging.
  const recent = await db
    .select({ soc: energyReadings.soc, outWh: energyReadings.batteryOutWh, inWh: energyReadings.batteryInWh })
    .from(energyReadings)
    .where(and(gte(energyReadings.at, new Date(now - 12 * HOUR_MS)), lt(energyReadings.at, new Date(now))))
    .orderBy(desc(energyReadings.at))
    .limit(5000);
  const stretch: Array<{ soc: number; outWh: number; inWh: number }> = [];
  for (const r of recent) {
    if (r.soc === null || r.outWh <= r.inWh) break;
    stretch.push({ soc: r.soc, outWh: r.outWh, inWh: r.inWh });
  }
  return {
    hours: rows.map((r) => ({ hour: r.hour.getTime(), seconds: r.seconds, pvWh: r.pvWh, loadWh: r.loadWh, socMax: r.socMax })),
    capacityEstimateWh: estimateCapacityWh(stretch.reverse()),
    loadedAt: now,
  };
}

export function computeRunway(energy: Config["energy"], history: RunwayHistory, input: RunwayInput): { runway: Runway; result: ForecastResult } {
  const rated = energy.battery.capacityAh * energy.battery.nominalVoltage;
  // A battery smaller than its rating is believed; a larger one is not (the safe side).
  const estimated = history.capacityEstimateWh === null ? null : Math.round(Math.max(0.3 * rated, Math.min(1.2 * rated, history.capacityEstimateWh)));
  const used = Math.min(rated, estimated ?? rated);
  const profile = buildProfile(history.hours, input.now);
  const dayStart = input.now - 3 * HOUR_MS;
  const k = clearSkyIndex(
    history.hours.filter((h) => h.hour >= Math.floor(dayStart / HOUR_MS) * HOUR_MS && h.hour <= input.now),
    profile,
  );
  const t = input.policy.thresholds;
  const thresholds: Threshold[] = [
    { name: "conserve", soc: t.conserve },
    { name: "critical", soc: t.critical },
    { name: "shutdown", soc: t.shutdown },
  ];
  if (input.cutoffSoc !== null) thresholds.push({ name: "cutoff", soc: input.cutoffSoc });
  const result = forecastRunway({
    now: input.now,
    soc: input.soc,
    capacityWh: used,
    chargeEfficiency: CHARGE_EFFICIENCY[energy.battery.chemistry],
    currentLoadW: input.loadW,
    currentPvW: input.pvW ?? null,
    profile,
    clearSky: k,
    thresholds,
    horizonHours: energy.forecast.horizonHours,
  });
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  const minutes = (ms: number | null) => (ms === null ? null : Math.max(0, Math.round((ms - input.now) / 60_000)));
  const byName: Record<string, ThresholdForecast> = {};
  for (const threshold of thresholds) {
    const c = result.crossings[threshold.name]!;
    byName[threshold.name] = {
      soc: threshold.soc,
      expectedAt: iso(c.expected),
      earliestAt: iso(c.earliest),
      latestAt: iso(c.latest),
      minutes: { expected: minutes(c.expected), earliest: minutes(c.earliest), latest: minutes(c.latest) },
    };
  }
  const r1 = (n: number) => Math.round(n * 10) / 10;
  const runway: Runway = {
    at: new Date(input.now).toISOString(),
    horizonHours: energy.forecast.horizonHours,
    soc: input.soc,
    capacityWh: { rated, estimated, used },
    clearSkyIndex: k === null ? null : Math.round(k * 1000) / 1000,
    historyDays: profile.days,
    thresholds: byName,
    minSoc: { expected: r1(result.minSoc.expected), pessimistic: r1(result.minSoc.pessimistic), optimistic: r1(result.minSoc.optimistic) },
  };
  return { runway, result };
}

/** Hourly points of the three trajectories, for `energy.forecast`. */
export function trajectoryPoints(result: ForecastResult): Array<{ at: string; expected: number; pessimistic: number; optimistic: number }> {
  const { expected, pessimistic, optimistic } = result.trajectories;
  const points: Array<{ at: string; expected: number; pessimistic: number; optimistic: number }> = [];
  let lastHour = Number.NaN;
  for (let i = 0; i < expected.length; i++) {
    const at = expected[i]!.at;
    // The first point of each hour, and the last one.
    const hour = Math.floor(at / HOUR_MS);
    if (hour === lastHour && i !== expected.length - 1) continue;
    lastHour = hour;
    const r1 = (n: number) => Math.round(n * 10) / 10;
    points.push({ at: new Date(at).toISOString(), expected: r1(expected[i]!.soc), pessimistic: r1(pessimistic[i]!.soc), optimistic: r1(optimistic[i]!.soc) });
  }
  return points;
}
