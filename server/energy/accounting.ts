import { and, asc, desc, eq, gte, lt, lte, sql, type AnyColumn } from "drizzle-orm";
import type { Database } from "../../db/client";
import { pgArray } from "../billing/arrays";
import { energyAttributions, energyEvents, energyHourly, energyReadings, usageEnergy } from "../../db/schema";
import type { Config } from "../config";
import { addEnergy, attributeLoadEnergy, clipToWindow, noEnergy, type EnergyWindow, type InstanceShare, type Sources } from "./attribution";
import { quantile } from "./forecast";

const HOUR_MS = 3_600_000;
const hourFloor = (ms: number) => Math.floor(ms / HOUR_MS) * HOUR_MS;

/**
 * Per-tenant solar accounting, stored: each metering tick that sampled the
 * containers shares out the load energy measured since the last shared-out
 * window (model: server/energy/attribution.ts) and adds each instance's share
 * to `usage_energy` by hour. The window row (`energy_attributions`, unique on
 * its start) is written in the same transaction: two ticks racing for one
 * window share it once, and the next window starts where it ended.
 */

/** A first window, or one after a long pause, reaches back at most this far. */
const MAX_LOOKBACK_MS = 24 * HOUR_MS;
const IDLE_HISTORY_MS = 7 * 24 * HOUR_MS;

/** The watts the platform draws with nothing to do: configured, or the 5th percentile of the last week's hourly load. */
export async function idlePowerW(db: Database, energy: Config["energy"], now: Date): Promise<number> {
  if (energy.idlePowerW !== null) return energy.idlePowerW;
  const hours = await db
    .select({ loadWh: energyHourly.loadWh, seconds: energyHourly.seconds })
    .from(energyHourly)
    .where(and(gte(energyHourly.hour, new Date(now.getTime() - IDLE_HISTORY_MS)), gte(energyHourly.seconds, 1800)));
  return quantile(
    hours.map((h) => (h.loadWh * 3600) / h.seconds),
    0.05,
  );
}

export type TickEnergy = { from: string; until: string; loadWh: number; attributedWh: number; unattributedWh: number } | null;

export async function attributeTickEnergy(db: Database, config: Config, tick: { until: Date; shares: InstanceShare[] }): Promise<TickEnergy> {
  const energy = config.energy;
  const windowMs = energy.sampleSeconds * 1000;
  const [last] = await db.select({ until: energyAttributions.until }).from(energyAttributions).orderBy(desc(energyAttributions.until)).limit(1);
  const from = new Date(Math.max(last?.until.getTime() ?? 0, tick.until.getTime() - MAX_LOOKBACK_MS));
  // Whole stored windows that ended by `until`: the next tick starts where these end.
  const rows = await db
    .select({ at: energyReadings.at, seconds: energyReadings.seconds, loadWh: energyReadings.loadWh, pvWh: energyReadings.pvWh })
    .from(energyReadings)
    .where(and(gte(energyReadings.at, from), lte(energyReadings.at, new Date(tick.until.getTime() - windowMs))))
    .orderBy(asc(energyReadings.at));
  if (rows.length === 0) return null;
  const until = new Date(rows.at(-1)!.at.getTime() + windowMs);
  const onBackup = await backupTimeline(db, from, until);
  const windows: EnergyWindow[] = rows.map((r) => ({ at: r.at.getTime(), seconds: r.seconds, loadWh: r.loadWh, pvWh: r.pvWh, onBackup: onBackup(r.at.getTime()) }));
  // Reservations count where there was load measured: from the first stored window on.
  const shares = tick.shares.map((share) => clipToWindow(share, tick.until.getTime(), rows[0]!.at.getTime(), until.getTime()));
  const result = attributeLoadEnergy(windows, shares, await idlePowerW(db, energy, tick.until));
  const t = result.totals;

  return db.transaction(async (tx) => {
    const [window] = await tx
      .insert(energyAttributions)
      .values({
        from,
        until,
        loadWh: t.loadWh,
        solarWh: t.solarWh,
        batteryWh: t.batteryWh,
        backupWh: t.backupWh,
        idleWh: t.idleWh,
        attributedWh: t.attributedWh,
        unattributedWh: t.unattributedWh,
        instances: result.byInstance.size,
      })
      .onConflictDoNothing({ target: energyAttributions.from })
      .returning({ id: energyAttributions.id });
    // Another tick shared this window out first.
    if (!window) return null;
    const values = [...result.byInstance.entries()].flatMap(([instanceId, { userId, hours }]) => [...hours.entries()].map(([hour, s]) => ({ instanceId, userId, hour: new Date(hour), ...s })));
    if (values.length) {
      await tx
        .insert(usageEnergy)
        .values(values)
        .onConflictDoUpdate({
          target: [usageEnergy.instanceId, usageEnergy.hour],
          set: {
            loadWh: sql`${usageEnergy.loadWh} + excluded.load_wh`,
            solarWh: sql`${usageEnergy.solarWh} + excluded.solar_wh`,
            batteryWh: sql`${usageEnergy.batteryWh} + excluded.battery_wh`,
            backupWh: sql`${usageEnergy.backupWh} + excluded.backup_wh`,
            updatedAt: sql`now()`,
          },
        });
    }
    return { from: from.toISOString(), until: until.toISOString(), loadWh: t.loadWh, attributedWh: t.attributedWh, unattributedWh: t.unattributedWh };
  });
}

/** Whether the platform was on backup power at an instant: the last backup signal before it said so. */
async function backupTimeline(db: Database, from: Date, until: Date): Promise<(at: number) => boolean> {
  const signal = energyEvents.details;
  const [before] = await db
    .select({ at: energyEvents.at, details: signal })
    .from(energyEvents)
    .where(and(eq(energyEvents.kind, "backup_signalled"), lt(energyEvents.at, from)))
    .orderBy(desc(energyEvents.at))
    .limit(1);
  const during = await db
    .select({ at: energyEvents.at, details: signal })
    .from(energyEvents)
    .where(and(eq(energyEvents.kind, "backup_signalled"), gte(energyEvents.at, from), lt(energyEvents.at, until)))
    .orderBy(asc(energyEvents.at));
  const changes = [...(before ? [before] : []), ...during].map((e) => ({ at: e.at.getTime(), on: e.details?.signal === "switch-to-backup" }));
  return (at) => {
    let on = false;
    for (const c of changes) if (c.at <= at) on = c.on;
    return on;
  };
}

const energySum = (column: AnyColumn) => sql<number>`coalesce(sum(${column}), 0)`.mapWith(Number);
const sources = { loadWh: energySum(usageEnergy.loadWh), solarWh: energySum(usageEnergy.solarWh), batteryWh: energySum(usageEnergy.batteryWh), backupWh: energySum(usageEnergy.backupWh) };

/** An owner's attributed energy over whole UTC hours in [from, to), per instance. */
export async function energyByInstance(db: Database, opts: { userId: string; from: Date; to: Date; instanceId?: string | undefined }): Promise<Map<string, Sources>> {
  const rows = await db
    .select({ instanceId: usageEnergy.instanceId, ...sources })
    .from(usageEnergy)
    .where(
      and(
        eq(usageEnergy.userId, opts.userId),
        gte(usageEnergy.hour, new Date(hourFloor(opts.from.getTime()))),
        lt(usageEnergy.hour, opts.to),
        opts.instanceId ? eq(usageEnergy.instanceId, opts.instanceId) : undefined,
      ),
    )
    .groupBy(usageEnergy.instanceId);
  return new Map(rows.map(({ instanceId, ...s }) => [instanceId, s]));
}

/** Per customer over a period (the invoice's informational line), for the given customers. */
export async function energyByCustomer(db: Database, opts: { from: Date; to: Date; userIds: readonly string[] }): Promise<Map<string, Sources>> {
  const rows = await db
    .select({ userId: usageEnergy.userId, ...sources })
    .from(usageEnergy)
    .where(and(sql`${usageEnergy.userId} = any(${pgArray(opts.userIds)}::uuid[])`, gte(usageEnergy.hour, opts.from), lt(usageEnergy.hour, opts.to)))
    .groupBy(usageEnergy.userId);
  return new Map(rows.map(({ userId, ...s }) => [userId, s]));
}

/** One owner's attributed energy over whole UTC hours in [from, to). */
export async function accountEnergy(db: Database, opts: { userId: string; from: Date; to: Date }): Promise<Sources> {
  let total = noEnergy();
  for (const s of (await energyByInstance(db, opts)).values()) total = addEnergy(total, s);
  return total;
}
