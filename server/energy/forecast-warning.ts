import { and, desc, eq, gt, inArray } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyEvents, instances } from "../../db/schema";
import type { InstancePriority } from "../compute/states";
import { recordEnergyEvent } from "./events";
import { lastBackToNormal, noticePowerEpisode } from "./notices";
import { isWorse, type PowerLevel } from "./levels";
import { LEVEL_RESTRICTIONS, shedAction, throttles } from "./restrictions";

/**
 * Tenant notices ahead of a power step.
 *
 * The hardware monitor calls `recordForecastWarning` when the runway forecast
 * expects the battery to cross a policy threshold within
 * ENERGY_FORECAST_WARN_MINUTES (pessimistic band), once per approach to that
 * level. It decides which instances the step will touch, records a
 * `forecast_warning` energy event listing them by tenant (for operators), and
 * tells the owners of those it will pause or stop (`power.notice` on the
 * customer event stream, with the earliest expected time): once per episode
 * and instance, so the emergency worker does not notice them again at the
 * level change (server/energy/notices.ts).
 */

export type AffectedInstance = { instanceId: string; userId: string; name: string; priority: InstancePriority; action: "throttle" | "pause" | "stop" };

export type ForecastWarning = {
  /** The level the forecast expects the platform to reach. */
  level: Exclude<PowerLevel, "normal">;
  /** The policy threshold (SOC %) whose crossing brings it. */
  thresholdSoc: number;
  /** Energy-clock times: when the forecast was made, and the band of the crossing. */
  at: Date;
  earliestAt: Date;
  expectedAt: Date | null;
  soc: number;
};

/** The instances a step to `level` will act on now (running ones, and paused ones a shutdown stops). */
export async function affectedBy(db: Database, level: PowerLevel): Promise<AffectedInstance[]> {
  const priorities = (["critical", "standard", "interruptible"] as const).filter((p) => shedAction(level, p) !== null || throttles(level, p));
  if (priorities.length === 0) return [];
  const rows = await db
    .select({ instanceId: instances.id, userId: instances.userId, name: instances.name, priority: instances.priority, state: instances.state, throttleMillis: instances.cpuThrottleMillis })
    .from(instances)
    .where(and(inArray(instances.priority, priorities), inArray(instances.state, ["running", "paused"])));
  const affected: AffectedInstance[] = [];
  for (const row of rows) {
    const shed = shedAction(level, row.priority);
    const action = shed ?? (row.throttleMillis === null && throttles(level, row.priority) ? "throttle" : null);
    if (!action || (row.state === "paused" && action !== "stop")) continue;
    affected.push({ instanceId: row.instanceId, userId: row.userId, name: row.name, priority: row.priority, action });
  }
  return affected;
}

export async function recordForecastWarning(db: Database, warning: ForecastWarning): Promise<{ eventId: string; affected: AffectedInstance[] }> {
  const affected = await affectedBy(db, warning.level);
  const minutes = Math.max(0, Math.round((warning.earliestAt.getTime() - warning.at.getTime()) / 60_000));
  const tenants = new Set(affected.map((a) => a.userId)).size;
  const eventId = await recordEnergyEvent(db, {
    at: warning.at,
    kind: "forecast_warning",
    severity: warning.level === "conserve" ? "info" : "warning",
    message: `The battery (${warning.soc.toFixed(1)} %) is forecast to fall below ${warning.thresholdSoc} % in ${minutes} min at the earliest: power level ${warning.level} would affect ${affected.length} instance${affected.length === 1 ? "" : "s"} of ${tenants} tenant${tenants === 1 ? "" : "s"}`,
    details: {
      level: warning.level,
      thresholdSoc: warning.thresholdSoc,
      soc: warning.soc,
      earliestAt: warning.earliestAt.toISOString(),
      expectedAt: warning.expectedAt?.toISOString() ?? null,
      affected,
    },
  });
  const shed = affected.filter((a) => a.action !== "throttle").map((a) => a.instanceId);
  await noticePowerEpisode(db, { level: warning.level, expectedAt: warning.earliestAt, instanceIds: shed, episodeId: `forecast-${eventId}`, coveredSince: await lastBackToNormal(db) });
  return { eventId, affected };
}

/**
 * Levels already warned about in the current approach: forecast warnings
 * recorded since the last level change, for levels worse than the current
 * one. A restarted monitor does not warn twice.
 */
export async function armedWarnings(db: Database, current: PowerLevel): Promise<Set<PowerLevel>> {
  const [lastChange] = await db.select({ at: energyEvents.at }).from(energyEvents).where(eq(energyEvents.kind, "level_changed")).orderBy(desc(energyEvents.at)).limit(1);
  const rows = await db
    .select({ details: energyEvents.details })
    .from(energyEvents)
    .where(and(eq(energyEvents.kind, "forecast_warning"), lastChange ? gt(energyEvents.at, lastChange.at) : undefined));
  const armed = new Set<PowerLevel>();
  for (const row of rows) {
    const level = row.details?.level as PowerLevel | undefined;
    if (level && level in LEVEL_RESTRICTIONS && isWorse(level, current)) armed.add(level);
  }
  return armed;
}
