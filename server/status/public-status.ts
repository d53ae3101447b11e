import { and, eq, gte, inArray, isNotNull, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyHourly, instances } from "../../db/schema";
import { POWER_EMERGENCY_REASON } from "../compute/states";
import type { Config } from "../config";
import { clockOf } from "../energy/clock";
import { energyStatus } from "../energy/status";
import { readMonitorState } from "../energy/telemetry";

const DAY_MS = 86_400_000;

/**
 * What the public status page shows, for tenants and their visitors alike:
 * the battery, the power level, the sun today, the forecast and how many
 * instances the power policy holds — counts only, nothing that names a
 * tenant or an instance.
 */
export async function publicStatus(db: Database, energy: Config["energy"]) {
  const status = await energyStatus(db, energy);
  const monitor = await readMonitorState(db);
  const now = clockOf(monitor?.clock ?? null).now();
  const midnight = new Date(Math.floor(now / DAY_MS) * DAY_MS);
  const [solar] = await db
    .select({ wh: sql<number>`coalesce(sum(${energyHourly.pvWh}), 0)`.mapWith(Number) })
    .from(energyHourly)
    .where(gte(energyHourly.hour, midnight));
  const held = await db
    .select({ state: instances.state, n: sql<number>`count(*)`.mapWith(Number) })
    .from(instances)
    .where(and(inArray(instances.state, ["paused", "stopped"]), eq(instances.stateReason, POWER_EMERGENCY_REASON)))
    .groupBy(instances.state);
  const [throttled] = await db
    .select({ n: sql<number>`count(*)`.mapWith(Number) })
    .from(instances)
    .where(and(eq(instances.state, "running"), isNotNull(instances.cpuThrottleMillis)));
  const reading = status.reading;
  const forecast = status.forecast;
  const next = forecast
    ? ((["conserve", "critical", "shutdown"] as const).map((name) => ({ name, ...forecast.thresholds[name]! })).find((t) => t.minutes.expected !== null && t.minutes.expected > 0) ?? null)
    : null;
  const r1 = (n: number | null | undefined) => (n === null || n === undefined ? null : Math.round(n * 10) / 10);
  return {
    at: new Date(now).toISOString(),
    level: status.level.level,
    levelSince: status.level.since,
    telemetry: status.telemetry.state,
    battery: { soc: r1(reading?.soc), socSource: reading?.socSource ?? null, voltage: reading?.batteryVoltage ?? null, trend: status.estimate.trend },
    power: { solarW: r1(reading?.pvPower), loadW: r1(reading?.loadPower) },
    solarTodayKwh: Math.round(solar!.wh) / 1000,
    forecast: forecast
      ? {
          horizonHours: forecast.horizonHours,
          lowestSoc: forecast.minSoc.expected,
          lowestSocPessimistic: forecast.minSoc.pessimistic,
          next: next && { level: next.name, belowSoc: next.soc, inMinutes: next.minutes.expected, earliestInMinutes: next.minutes.earliest },
        }
      : null,
    instances: {
      paused: held.find((h) => h.state === "paused")?.n ?? 0,
      stopped: held.find((h) => h.state === "stopped")?.n ?? 0,
      throttled: throttled?.n ?? 0,
    },
  };
}

export type PublicStatus = Awaited<ReturnType<typeof publicStatus>>;
