import type { Database } from "../../db/client";
import type { InstancePriority } from "../compute/states";
import type { Config } from "../config";
import { POWER_LEVELS, type PowerLevel } from "./levels";
import { getPowerPolicy } from "./policy";
import { admits } from "./restrictions";
import { energyStatus } from "./status";

export type RecoveryEstimate = {
  level: PowerLevel;
  /** State of charge now (%), null when unknown. */
  batteryPercent: number | null;
  trend: string;
  /** The worst level that admits the priority again, and the state of charge (%) that brings the platform back to it. */
  targetLevel: PowerLevel;
  targetPercent: number;
  /** Seconds until the instance is expected back; null when it cannot be estimated (not charging, no telemetry). */
  seconds: number | null;
  at: string | null;
};

/**
 * When an instance the power policy paused or stopped is expected back: the
 * battery must climb to the SOC at which the level admits its priority again
 * (the threshold below that level plus the hysteresis), at the charging
 * current averaged over the last minutes, and then hold the level for the
 * recovery dwell. This is the only place the estimate is made (the edge's
 * Retry-After and page use it); a better model (a solar forecast, the
 * resume stagger) belongs here.
 */
export async function estimateRecovery(db: Database, config: Config["energy"], priority: InstancePriority, now: Date = new Date()): Promise<RecoveryEstimate> {
  const [status, { policy }] = await Promise.all([energyStatus(db, config, now), getPowerPolicy(db)]);
  const level = status.level.level;
  const soc = status.reading?.soc ?? null;
  // The lowest level that admits the priority, searched from the worst up.
  const targetLevel = [...POWER_LEVELS].reverse().find((l) => admits(l, priority)) ?? "normal";
  const floorOf: Record<PowerLevel, number> = { normal: policy.thresholds.conserve, conserve: policy.thresholds.critical, critical: policy.thresholds.shutdown, shutdown: 0 };
  const targetPercent = Math.min(100, floorOf[targetLevel] + (targetLevel === "shutdown" ? 0 : policy.hysteresis));

  let seconds: number | null = null;
  if (admits(level, priority)) {
    // Already admitted: recovery is bringing instances back one by one.
    seconds = 60;
  } else if (soc !== null && soc >= targetPercent) {
    seconds = policy.recoveryDwellSeconds;
  } else if (soc !== null && status.estimate.trend === "charging" && status.estimate.averageCurrent !== null && status.estimate.averageCurrent > 0) {
    const ampHours = ((targetPercent - soc) / 100) * config.battery.capacityAh;
    seconds = Math.round((ampHours / status.estimate.averageCurrent) * 3600) + policy.recoveryDwellSeconds;
  }
  return {
    level,
    batteryPercent: soc === null ? null : Math.round(soc * 10) / 10,
    trend: status.estimate.trend,
    targetLevel,
    targetPercent,
    seconds,
    at: seconds === null ? null : new Date(now.getTime() + seconds * 1000).toISOString(),
  };
}
