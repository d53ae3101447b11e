import { and, asc, desc, gte, lt, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyHourly, energyReadings } from "../../db/schema";
import { AppError } from "../errors";
import { accountEnergy } from "./accounting";
import { energyView } from "./attribution";

/** One decimated window, as the monitor hands it over. */
export type Sample = Omit<typeof energyReadings.$inferInsert, "id">;

const HOUR_MS = 3_600_000;

/**
 * Stores a window and adds it to its hourly roll-up, in one transaction. A
 * window already stored (a monitor restarted inside it) is left as it was and
 * not counted twice.
 */
export async function storeSample(db: Database, sample: Sample): Promise<boolean> {
  return db.transaction(async (tx) => {
    const inserted = await tx.insert(energyReadings).values(sample).onConflictDoNothing({ target: energyReadings.at }).returning({ id: energyReadings.id });
    if (inserted.length === 0) return false;
    const hour = new Date(Math.floor(sample.at.getTime() / HOUR_MS) * HOUR_MS);
    const hasSoc = sample.soc !== null && sample.soc !== undefined;
    const hasVoltage = sample.batteryVoltage !== null && sample.batteryVoltage !== undefined;
    const h = energyHourly;
    await tx
      .insert(h)
      .values({
        hour,
        samples: sample.samples,
        seconds: sample.seconds,
        pvWh: sample.pvWh,
        loadWh: sample.loadWh,
        batteryInWh: sample.batteryInWh,
        batteryOutWh: sample.batteryOutWh,
        pvPowerMax: sample.pvPowerMax ?? null,
        socSum: hasSoc ? sample.soc! : 0,
        socCount: hasSoc ? 1 : 0,
        socMin: sample.socMin ?? null,
        socMax: sample.socMax ?? null,
        batteryVoltageSum: hasVoltage ? sample.batteryVoltage! : 0,
        batteryVoltageCount: hasVoltage ? 1 : 0,
        batteryVoltageMin: sample.batteryVoltage ?? null,
        batteryVoltageMax: sample.batteryVoltage ?? null,
      })
      .onConflictDoUpdate({
        target: h.hour,
        set: {
          samples: sql`${h.samples} + excluded.samples`,
          seconds: sql`${h.seconds} + excluded.seconds`,
          pvWh: sql`${h.pvWh} + excluded.pv_wh`,
          loadWh: sql`${h.loadWh} + excluded.load_wh`,
          batteryInWh: sql`${h.batteryInWh} + excluded.battery_in_wh`,
          batteryOutWh: sql`${h.batteryOutWh} + excluded.battery_out_wh`,
          pvPowerMax: sql`greatest(${h.pvPowerMax}, excluded.pv_power_max)`,
          socSum: sql`${h.socSum} + excluded.soc_sum`,
          socCount: sql`${h.socCount} + excluded.soc_count`,
          socMin: sql`least(${h.socMin}, excluded.soc_min)`,
          socMax: sql`greatest(${h.socMax}, excluded.soc_max)`,
          batteryVoltageSum: sql`${h.batteryVoltageSum} + excluded.battery_voltage_sum`,
          batteryVoltageCount: sql`${h.batteryVoltageCount} + excluded.battery_voltage_count`,
          batteryVoltageMin: sql`least(${h.batteryVoltageMin}, excluded.battery_voltage_min)`,
          batteryVoltageMax: sql`greatest(${h.batteryVoltageMax}, excluded.battery_voltage_max)`,
        },
      });
    return true;
  });
}

/** Deletes windows older than the retention; the hourly roll-ups stay. */
export async function pruneReadings(db: Database, olderThan: Date): Promise<void> {
  await db.delete(energyReadings).where(lt(energyReadings.at, olderThan));
}

/** Windows since `since`, oldest first. */
export async function recentSamples(db: Database, since: Date) {
  return db.select().from(energyReadings).where(gte(energyReadings.at, since)).orderBy(asc(energyReadings.at));
}

export const RESOLUTIONS = ["auto", "sample", "hour", "day"] as const;
export type Resolution = (typeof RESOLUTIONS)[number];

/** Keeps responses to a size a dashboard can draw. */
export const MAX_POINTS = 5000;

const round = (n: number | null, d = 2) => (n === null || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d);
const avgPower = (wh: number, seconds: number) => (seconds > 0 ? round((wh * 3600) / seconds, 1) : null);

/**
 * History between `from` and `to`: stored windows (`sample`), hourly or daily
 * (UTC) roll-ups. `auto` picks the finest resolution that fits in MAX_POINTS.
 * Energies are watt-hours; powers are means over the point.
 */
export async function energyHistory(db: Database, opts: { from: Date; to: Date; resolution: Resolution; sampleSeconds: number }) {
  const { from, to } = opts;
  if (to.getTime() <= from.getTime()) throw new AppError("VALIDATION_FAILED", "`to` must be after `from`", { details: { field: "to" } });
  const span = to.getTime() - from.getTime();
  const points = { sample: span / (opts.sampleSeconds * 1000), hour: span / HOUR_MS, day: span / (24 * HOUR_MS) };
  const resolution = opts.resolution === "auto" ? ((["sample", "hour", "day"] as const).find((r) => points[r] <= MAX_POINTS) ?? "day") : opts.resolution;
  if (points[resolution] > MAX_POINTS) {
    throw new AppError("VALIDATION_FAILED", `At ${resolution} resolution this range has more than ${MAX_POINTS} points; narrow it or use a coarser resolution`, {
      details: { field: "resolution", maxPoints: MAX_POINTS },
    });
  }

  if (resolution === "sample") {
    const rows = await db
      .select()
      .from(energyReadings)
      .where(and(gte(energyReadings.at, from), lt(energyReadings.at, to)))
      .orderBy(asc(energyReadings.at));
    return {
      resolution,
      points: rows.map((r) => ({
        at: r.at.toISOString(),
        seconds: r.seconds,
        pvPower: round(r.pvPower, 1),
        pvPowerMax: round(r.pvPowerMax, 1),
        loadPower: round(r.loadPower, 1),
        batteryVoltage: round(r.batteryVoltage, 3),
        batteryCurrent: round(r.batteryCurrent, 3),
        soc: round(r.soc, 1),
        socMin: round(r.socMin, 1),
        socMax: round(r.socMax, 1),
        pvWh: round(r.pvWh, 3)!,
        loadWh: round(r.loadWh, 3)!,
        batteryInWh: round(r.batteryInWh, 3)!,
        batteryOutWh: round(r.batteryOutWh, 3)!,
      })),
    };
  }

  const h = energyHourly;
  const bucket = resolution === "hour" ? h.hour : sql<Date>`date_trunc('day', ${h.hour}, 'UTC')`;
  // Bucket starts inside [from, to) by the hour they cover; a day bucket may start before `from`.
  const rows = await db
    .select({
      at: sql<string>`${bucket}`.mapWith((v: unknown) => new Date(v as string)),
      seconds: sql<number>`sum(${h.seconds})`.mapWith(Number),
      pvWh: sql<number>`sum(${h.pvWh})`.mapWith(Number),
      loadWh: sql<number>`sum(${h.loadWh})`.mapWith(Number),
      batteryInWh: sql<number>`sum(${h.batteryInWh})`.mapWith(Number),
      batteryOutWh: sql<number>`sum(${h.batteryOutWh})`.mapWith(Number),
      pvPowerMax: sql<number | null>`max(${h.pvPowerMax})`.mapWith((v: unknown) => (v === null ? null : Number(v))),
      socSum: sql<number>`sum(${h.socSum})`.mapWith(Number),
      socCount: sql<number>`sum(${h.socCount})`.mapWith(Number),
      socMin: sql<number | null>`min(${h.socMin})`.mapWith((v: unknown) => (v === null ? null : Number(v))),
      socMax: sql<number | null>`max(${h.socMax})`.mapWith((v: unknown) => (v === null ? null : Number(v))),
      vSum: sql<number>`sum(${h.batteryVoltageSum})`.mapWith(Number),
      vCount: sql<number>`sum(${h.batteryVoltageCount})`.mapWith(Number),
    })
    .from(h)
    .where(and(gte(h.hour, from), lt(h.hour, to)))
    .groupBy(bucket)
    .orderBy(asc(bucket));
  return {
    resolution,
    points: rows.map((r) => ({
      at: r.at.toISOString(),
      seconds: r.seconds,
      pvPower: avgPower(r.pvWh, r.seconds),
      pvPowerMax: round(r.pvPowerMax, 1),
      loadPower: avgPower(r.loadWh, r.seconds),
      batteryVoltage: r.vCount > 0 ? round(r.vSum / r.vCount, 3) : null,
      batteryCurrent: null,
      soc: r.socCount > 0 ? round(r.socSum / r.socCount, 1) : null,
      socMin: round(r.socMin, 1),
      socMax: round(r.socMax, 1),
      pvWh: round(r.pvWh, 3)!,
      loadWh: round(r.loadWh, 3)!,
      batteryInWh: round(r.batteryInWh, 3)!,
      batteryOutWh: round(r.batteryOutWh, 3)!,
    })),
  };
}

export const PERIODS = { day: 24, week: 7 * 24, month: 30 * 24, year: 365 * 24 } as const;
export type Period = keyof typeof PERIODS;

/**
 * Totals over a rolling period (whole hours). Efficiency is the charge
 * controller's: energy delivered (to the load, plus what the battery kept net)
 * per kWh of PV harvested. CO2 avoided counts the PV energy harvested as grid
 * energy not drawn, at the configured grid intensity.
 */
export async function energyStats(db: Database, opts: { period: Period; now: Date; gridCo2GramsPerKwh: number }) {
  const to = new Date(Math.ceil(opts.now.getTime() / HOUR_MS) * HOUR_MS);
  const from = new Date(to.getTime() - PERIODS[opts.period] * HOUR_MS);
  const h = energyHourly;
  const [totals] = await db
    .select({
      seconds: sql<number>`coalesce(sum(${h.seconds}), 0)`.mapWith(Number),
      pvWh: sql<number>`coalesce(sum(${h.pvWh}), 0)`.mapWith(Number),
      loadWh: sql<number>`coalesce(sum(${h.loadWh}), 0)`.mapWith(Number),
      batteryInWh: sql<number>`coalesce(sum(${h.batteryInWh}), 0)`.mapWith(Number),
      batteryOutWh: sql<number>`coalesce(sum(${h.batteryOutWh}), 0)`.mapWith(Number),
      pvPowerMax: sql<number | null>`max(${h.pvPowerMax})`.mapWith((v: unknown) => (v === null ? null : Number(v))),
    })
    .from(h)
    .where(and(gte(h.hour, from), lt(h.hour, to)));
  const t = totals!;
  const delivered = t.loadWh + t.batteryInWh - t.batteryOutWh;
  return {
    period: opts.period,
    from: from.toISOString(),
    to: to.toISOString(),
    solarKwh: round(t.pvWh / 1000, 3)!,
    loadKwh: round(t.loadWh / 1000, 3)!,
    batteryInKwh: round(t.batteryInWh / 1000, 3)!,
    batteryOutKwh: round(t.batteryOutWh / 1000, 3)!,
    efficiency: t.pvWh > 0 && delivered > 0 ? round(delivered / t.pvWh, 3) : null,
    peakPvPower: round(t.pvPowerMax, 1),
    co2AvoidedKg: round((t.pvWh / 1000) * (opts.gridCo2GramsPerKwh / 1000), 3)!,
    gridCo2GramsPerKwh: opts.gridCo2GramsPerKwh,
    /** Share of the period with telemetry (0–1). */
    coverage: round(Math.min(1, t.seconds / (PERIODS[opts.period] * 3600)), 3)!,
  };
}

/**
 * `energy.stats` for a signed-in caller: the platform's figures and, under
 * `account`, the caller's own share of the load over the same period
 * (per-tenant solar accounting): kWh by source, sunlight share, CO2 avoided.
 */
export async function energyStatsFor(db: Database, opts: { period: Period; now: Date; gridCo2GramsPerKwh: number; userId: string }) {
  const stats = await energyStats(db, opts);
  const account = await accountEnergy(db, { userId: opts.userId, from: new Date(stats.from), to: new Date(stats.to) });
  return { ...stats, account: energyView(account, opts.gridCo2GramsPerKwh) };
}

/** The newest stored window. */
export async function latestSample(db: Database) {
  const [row] = await db.select().from(energyReadings).orderBy(desc(energyReadings.at)).limit(1);
  return row ?? null;
}
