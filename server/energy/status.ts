import type { Database } from "../../db/client";
import type { ControllerCutoffs } from "../../hardware/protocols/epever-settings";
import type { Reading } from "../../hardware/protocols/reading";
import type { PowerPolicy } from "../../hardware/policy";
import type { Config } from "../config";
import { alignmentOptions, configuredCutoffs, policyAlignment } from "./alignment";
import { clockOf } from "./clock";
import { getPowerPolicy } from "./policy";
import { latestLevelChange } from "./power";
import { recentSamples } from "./readings";
import { computeRunway, loadRunwayHistory, trajectoryPoints } from "./runway";
import { readMonitorState } from "./telemetry";

type EnergyConfig = Config["energy"];

/** How far back the battery current is averaged for the time estimates. */
const TREND_WINDOW_MS = 5 * 60_000;

/** `degraded`: bytes arrive but no valid reading (wrong baud, noise); `lost`: nothing arrives. */
export type TelemetryState = "ok" | "waiting" | "degraded" | "lost" | "unavailable";

export type MonitorRow = NonNullable<Awaited<ReturnType<typeof readMonitorState>>>;

/** Telemetry as any process sees it: the monitor's verdict, unless the monitor itself went quiet. */
export function telemetryState(monitor: MonitorRow | null, energy: EnergyConfig, now: Date = new Date()): TelemetryState {
  if (!monitor) return "unavailable";
  const clock = clockOf(monitor.clock);
  const timeout = energy.telemetryTimeoutMs;
  // Fresh in energy time: a monitor that stopped (killed, host down) goes stale like a silent line.
  const fresh = monitor.lastReadingAt !== null && clock.now() - monitor.lastReadingAt.getTime() <= timeout * clock.speed;
  if (monitor.telemetry === "lost" || monitor.telemetry === "degraded") return monitor.telemetry;
  if (fresh) return "ok";
  if (monitor.telemetry === "waiting" && now.getTime() - monitor.startedAt.getTime() <= timeout) return "waiting";
  return "lost";
}

/** The controller's cut-offs (read by the monitor, else configured) and how the policy sits against them. */
export function controllerAlignment(monitor: MonitorRow | null, energy: EnergyConfig, policy: PowerPolicy) {
  const published = (monitor?.controllerSettings as { cutoffs?: ControllerCutoffs } | null | undefined)?.cutoffs ?? null;
  const cutoffs = published ?? configuredCutoffs(energy);
  return policyAlignment(policy, cutoffs, alignmentOptions(energy));
}

/**
 * The platform's energy state now: power level, latest reading, telemetry
 * and link health with the rejection counters, time estimates, the runway
 * forecast (time to each threshold with its band) and the controller's
 * cut-offs against the policy. "Now" is the energy clock's (clock.ts).
 */
export async function energyStatus(db: Database, config: EnergyConfig, at?: Date) {
  const [change, monitor, { policy }] = await Promise.all([latestLevelChange(db), readMonitorState(db), getPowerPolicy(db)]);
  const clock = clockOf(monitor?.clock ?? null);
  const now = at?.getTime() ?? clock.now();
  const recent = await recentSamples(db, new Date(now - TREND_WINDOW_MS * clock.speed));

  const telemetry = telemetryState(monitor, config);
  const reading = telemetry === "unavailable" ? null : ((monitor?.lastReading as (Reading & { at: string }) | null | undefined) ?? null);

  // Current weighted by window length; the latest reading when no window is stored yet.
  let weight = 0;
  let sum = 0;
  for (const s of recent) {
    if (s.batteryCurrent === null) continue;
    sum += s.batteryCurrent * s.seconds;
    weight += s.seconds;
  }
  const current = weight > 0 ? sum / weight : (reading?.batteryCurrent ?? null);
  const soc = reading?.soc ?? null;
  const capacityAh = config.battery.capacityAh;
  const idle = capacityAh / 1000;
  const minutes = (ah: number, amps: number) => Math.round((ah / amps) * 60);
  const usable = telemetry === "ok" || telemetry === "waiting";
  const estimate = {
    trend: current === null || !usable ? "unknown" : current > idle ? "charging" : current < -idle ? "discharging" : "idle",
    averageCurrent: current === null ? null : Math.round(current * 1000) / 1000,
    minutesToEmpty: null as number | null,
    minutesToShutdown: null as number | null,
    minutesToFull: null as number | null,
  };
  if (soc !== null && current !== null && estimate.trend === "discharging") {
    estimate.minutesToEmpty = minutes((soc / 100) * capacityAh, -current);
    const aboveShutdown = soc - policy.thresholds.shutdown;
    estimate.minutesToShutdown = aboveShutdown > 0 ? minutes((aboveShutdown / 100) * capacityAh, -current) : 0;
  }
  if (soc !== null && current !== null && estimate.trend === "charging") estimate.minutesToFull = minutes(((100 - soc) / 100) * capacityAh, current);

  const alignment = controllerAlignment(monitor, config, policy);
  let forecast = null;
  if (soc !== null && usable) {
    const history = await loadRunwayHistory(db, now);
    forecast = computeRunway(config, history, { now, soc, loadW: reading?.loadPower ?? null, pvW: reading?.pvPower ?? null, policy, cutoffSoc: alignment.cutoffSoc }).runway;
  }
  const stored = monitor?.forecast as { floor?: string } | null | undefined;

  return {
    level: { level: change?.toLevel ?? "normal", since: change?.at.toISOString() ?? null, changeId: change?.id ?? null },
    reading,
    telemetry: {
      state: telemetry,
      protocol: monitor?.protocol ?? null,
      lastReadingAt: monitor?.lastReadingAt?.toISOString() ?? null,
      monitorUpdatedAt: monitor?.updatedAt.toISOString() ?? null,
      framesDecoded: monitor?.framesDecoded ?? 0,
      framesDropped: monitor?.framesDropped ?? 0,
      bridgeState: monitor?.bridgeState ?? null,
      bridgeRestarts: monitor?.bridgeRestarts ?? 0,
      /** Bytes, frames decoded and readings accepted, in total and over the last telemetry timeout. */
      link: monitor?.link ?? null,
      /** Blocks and readings refused, by reason (decoder drops, failed polls, implausible readings). */
      rejections: monitor?.rejections ?? {},
      clockSpeed: clock.speed,
    },
    battery: { chemistry: config.battery.chemistry, nominalVoltage: config.battery.nominalVoltage, cells: config.battery.cells, capacityAh },
    estimate,
    /** The runway forecast from the latest reading; null without one. `floor`: the level the monitor holds ahead of the battery. */
    forecast: forecast ? { ...forecast, floor: stored?.floor ?? "normal" } : null,
    controller: alignment,
  };
}

const inFlight = new WeakMap<Database, ReturnType<typeof energyStatus>>();

/**
 * `energyStatus` for callers who ask at the same time (a fleet of dashboards
 * polling `energy.status`): one computation at a time per database, its answer
 * shared by everyone who asked while it ran. The answer is the same for every
 * tenant; a caller may get one whose reads began just before it asked, never
 * one that had already been answered.
 */
export function sharedEnergyStatus(db: Database, config: EnergyConfig): ReturnType<typeof energyStatus> {
  let flight = inFlight.get(db);
  if (!flight) {
    flight = energyStatus(db, config).finally(() => inFlight.delete(db));
    inFlight.set(db, flight);
  }
  return flight;
}

/**
 * `energy.forecast`: the runway forecast from the latest reading, with the
 * hourly trajectory of the three runs (expected, pessimistic, optimistic).
 * Without a usable reading there is nothing to forecast from: `forecast` is
 * null and `reason` says why.
 */
export async function energyForecast(db: Database, config: EnergyConfig) {
  const [monitor, { policy }] = await Promise.all([readMonitorState(db), getPowerPolicy(db)]);
  const telemetry = telemetryState(monitor, config);
  const reading = (monitor?.lastReading as (Reading & { at: string }) | null | undefined) ?? null;
  if (telemetry !== "ok" || reading?.soc === null || reading?.soc === undefined) {
    return { forecast: null, trajectory: [], reason: telemetry === "ok" ? "the controller reports no state of charge" : `telemetry is ${telemetry}` };
  }
  const now = clockOf(monitor!.clock).now();
  const alignment = controllerAlignment(monitor, config, policy);
  const history = await loadRunwayHistory(db, now);
  const { runway, result } = computeRunway(config, history, { now, soc: reading.soc, loadW: reading.loadPower, pvW: reading.pvPower, policy, cutoffSoc: alignment.cutoffSoc });
  return { forecast: runway, trajectory: trajectoryPoints(result), reason: null };
}
