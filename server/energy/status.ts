import type { Database } from "../../db/client";
import type { Reading } from "../../hardware/protocols/reading";
import type { Config } from "../config";
import { getPowerPolicy } from "./policy";
import { latestLevelChange } from "./power";
import { recentSamples } from "./readings";
import { readMonitorState } from "./telemetry";

type EnergyConfig = Config["energy"];

/** How far back the battery current is averaged for the time estimates. */
const TREND_WINDOW_MS = 5 * 60_000;

export type TelemetryState = "ok" | "waiting" | "lost" | "unavailable";

/**
 * The platform's energy state now: power level, latest reading, telemetry
 * health and time estimates. Estimates divide the charge left (or missing) by
 * the battery current averaged over the last five minutes; "empty" is 0 % on
 * the SOC scale, "shutdown" the policy's shutdown threshold.
 */
export async function energyStatus(db: Database, config: EnergyConfig, now: Date = new Date()) {
  const [change, monitor, { policy }, recent] = await Promise.all([
    latestLevelChange(db),
    readMonitorState(db),
    getPowerPolicy(db),
    recentSamples(db, new Date(now.getTime() - TREND_WINDOW_MS)),
  ]);

  let telemetry: TelemetryState = "unavailable";
  if (monitor) {
    const fresh = monitor.lastReadingAt !== null && now.getTime() - monitor.lastReadingAt.getTime() <= config.telemetryTimeoutMs;
    telemetry = monitor.telemetry === "lost" ? "lost" : fresh ? "ok" : monitor.telemetry === "waiting" && now.getTime() - monitor.startedAt.getTime() <= config.telemetryTimeoutMs ? "waiting" : "lost";
  }
  const reading = telemetry === "unavailable" ? null : (monitor?.lastReading as (Reading & { at: string }) | null | undefined) ?? null;

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
  const estimate = {
    trend: current === null || telemetry === "lost" || telemetry === "unavailable" ? "unknown" : current > idle ? "charging" : current < -idle ? "discharging" : "idle",
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
    },
    battery: { chemistry: config.battery.chemistry, nominalVoltage: config.battery.nominalVoltage, cells: config.battery.cells, capacityAh },
    estimate,
  };
}
