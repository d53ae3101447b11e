import { and, asc, eq, gte, inArray, isNotNull, lt, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instancePlans, instances, meterCursors, usageRecords, volumes } from "../../db/schema";
import { findInstance } from "../compute/instances";
import { POWER_EMERGENCY_REASON } from "../compute/states";
import type { Config } from "../config";
import { accountEnergy, energyByInstance } from "../energy/accounting";
import { addEnergy, energyView, noEnergy } from "../energy/attribution";
import { AppError } from "../errors";
import { HOUR_MS, hourFloor, periodOf } from "./periods";
import { invoiceTotals, pricingRules } from "./pricing";
import { priceSegments, priceStorage, segmentColumns, segmentUsage, storageUsage, sum, type SegmentRow, type StorageRow } from "./segments";

/** What pricing needs to know of an instance: its identity and its copy of the plan's prices. */
export const pricedInstance = {
  instanceId: instances.id,
  name: instances.name,
  priority: instances.priority,
  priceHourlyMinor: instances.priceHourlyMinor,
  priceMonthlyMinor: instances.priceMonthlyMinor,
  currency: instances.currency,
};

/** Metered usage per instance of one owner, over whole UTC hours in [from, to). */
export async function usageByInstance(db: Database, opts: { userId: string; from: Date; to: Date; instanceId?: string | undefined }) {
  return db
    .select({
      ...pricedInstance,
      state: instances.state,
      stateReason: instances.stateReason,
      runningMs: sum(usageRecords.runningMs),
      pausedMs: sum(usageRecords.pausedMs),
      emergencyPausedMs: sum(usageRecords.emergencyPausedMs),
      cpuNs: sum(usageRecords.cpuNs),
      memoryByteMs: sum(usageRecords.memoryByteMs),
      rxBytes: sum(usageRecords.rxBytes),
      txBytes: sum(usageRecords.txBytes),
    })
    .from(usageRecords)
    .innerJoin(instances, eq(instances.id, usageRecords.instanceId))
    .where(
      and(
        eq(usageRecords.userId, opts.userId),
        gte(usageRecords.hour, new Date(hourFloor(opts.from.getTime()))),
        lt(usageRecords.hour, opts.to),
        opts.instanceId ? eq(usageRecords.instanceId, opts.instanceId) : undefined,
      ),
    )
    .groupBy(instances.id)
    .orderBy(asc(instances.createdAt), asc(instances.id));
}

const MAX_RANGE_MS = 366 * 24 * HOUR_MS;

/**
 * `billing.usage`: what the owner's instances used between `from` and `to`
 * (default: the current period so far), by instance and in total. Usage is
 * kept by UTC hour, so `from` counts from the start of its hour. `energy` is
 * each instance's share of the measured load (per-tenant solar accounting):
 * kWh by source, the sunlight share and the CO2 it avoided.
 */
export async function usageReport(deps: { db: Database; config: Config }, ownerId: string, input: { from?: string | undefined; to?: string | undefined; instanceId?: string | undefined }) {
  const { db } = deps;
  const co2 = deps.config.energy.gridCo2GramsPerKwh;
  const now = new Date();
  const from = input.from ? new Date(input.from) : periodOf(now).start;
  const to = input.to ? new Date(input.to) : now;
  if (!(from < to)) throw new AppError("VALIDATION_FAILED", "`from` must be before `to`", { details: { from: from.toISOString(), to: to.toISOString() } });
  if (to.getTime() - from.getTime() > MAX_RANGE_MS) throw new AppError("VALIDATION_FAILED", "A usage range spans at most 366 days", { details: { from: from.toISOString(), to: to.toISOString() } });
  if (input.instanceId) await findInstance(db, ownerId, input.instanceId);

  const rows = await usageByInstance(db, { userId: ownerId, from, to, instanceId: input.instanceId });
  const energy = await energyByInstance(db, { userId: ownerId, from, to, instanceId: input.instanceId });
  const items = rows.map((row) => ({ instanceId: row.instanceId, name: row.name, ...measures(row), energy: energyView(energy.get(row.instanceId) ?? noEnergy(), co2) }));
  const totals = items.reduce(
    (acc, item) => {
      for (const key of Object.keys(acc) as Array<keyof typeof acc>) acc[key] += item[key];
      return acc;
    },
    { runningSeconds: 0, pausedSeconds: 0, emergencyPausedSeconds: 0, cpuSeconds: 0, memoryByteSeconds: 0, rxBytes: 0, txBytes: 0 },
  );
  const energyTotal = [...energy.values()].reduce(addEnergy, noEnergy());
  return {
    from: new Date(hourFloor(from.getTime())).toISOString(),
    to: to.toISOString(),
    meteredUntil: await meteredUntil(db, ownerId),
    instances: items,
    totals: { ...totals, energy: energyView(energyTotal, co2) },
  };
}

function measures(row: { runningMs: number; pausedMs: number; emergencyPausedMs: number; cpuNs: number; memoryByteMs: number; rxBytes: number; txBytes: number }) {
  return {
    runningSeconds: row.runningMs / 1000,
    pausedSeconds: row.pausedMs / 1000,
    emergencyPausedSeconds: row.emergencyPausedMs / 1000,
    cpuSeconds: Math.round(row.cpuNs / 1e6) / 1000,
    memoryByteSeconds: Math.round(row.memoryByteMs / 1000),
    rxBytes: row.rxBytes,
    txBytes: row.txBytes,
  };
}

/** The earliest point metering has reached among the owner's live instances: usage before it is complete. */
async function meteredUntil(db: Database, ownerId: string): Promise<string | null> {
  const [row] = await db
    .select({ at: sql<Date | null>`min(${meterCursors.meteredUntil})`.mapWith((v) => (v === null ? null : new Date(v))) })
    .from(meterCursors)
    .innerJoin(instances, eq(instances.id, meterCursors.instanceId))
    .where(and(eq(instances.userId, ownerId), ne(instances.state, "deleted")));
  return row?.at ? row.at.toISOString() : null;
}

/**
 * `billing.estimate`: the current period's charges so far (as an invoice
 * would price them today, per plan segment and volume) and projected to the
 * period's end, assuming every instance stays in the state and on the plan it
 * is on now and every volume stays.
 */
export async function estimate(deps: { db: Database; config: Config }, ownerId: string) {
  const { db, config } = deps;
  const rules = pricingRules(config);
  const now = new Date();
  const period = periodOf(now);
  const rows = (await segmentUsage(db, { from: period.start, to: period.end, where: eq(instances.userId, ownerId) })).filter((row) => row.currency === rules.currency);
  const storage = (await storageUsage(db, { from: period.start, to: period.end, where: eq(volumes.userId, ownerId) })).filter((row) => row.currency === rules.currency);

  // Instances that will accrue time but have no usage yet this period (just created) are projected too, on their current plan.
  const live = await db
    .select({
      ...segmentColumns,
      state: instances.state,
      stateReason: instances.stateReason,
      meteredUntil: meterCursors.meteredUntil,
    })
    .from(instances)
    .innerJoin(instancePlans, and(eq(instancePlans.instanceId, instances.id), eq(instancePlans.seq, instances.planSeq)))
    .leftJoin(meterCursors, eq(meterCursors.instanceId, instances.id))
    .where(and(eq(instances.userId, ownerId), inArray(instances.state, ["running", "paused"]), eq(instances.currency, rules.currency)));
  const liveVolumes = await db
    .select()
    .from(volumes)
    .where(and(eq(volumes.userId, ownerId), ne(volumes.state, "deleted"), isNotNull(volumes.availableAt), eq(volumes.currency, rules.currency)));

  const key = (row: { instanceId: string; planSeq: number }) => `${row.instanceId}/${row.planSeq}`;
  const projected = new Map(rows.map((row) => [key(row), { ...row }]));
  for (const instance of live) {
    const from = Math.max(instance.meteredUntil?.getTime() ?? now.getTime(), period.start.getTime());
    const rest = Math.max(0, period.end.getTime() - from);
    let entry = projected.get(key(instance));
    if (!entry) {
      entry = { ...instance, runningMs: 0, pausedMs: 0, emergencyPausedMs: 0, txBytes: 0 };
      projected.set(key(instance), entry);
    }
    if (instance.state === "running") entry.runningMs += rest;
    else if (instance.stateReason === POWER_EMERGENCY_REASON) entry.emergencyPausedMs += rest;
    else entry.pausedMs += rest;
  }
  const projectedStorage = new Map(storage.map((row) => [row.volumeId, { ...row }]));
  for (const volume of liveVolumes) {
    const from = Math.max(volume.meteredUntil?.getTime() ?? volume.availableAt!.getTime(), period.start.getTime());
    const rest = Math.max(0, period.end.getTime() - from);
    let entry = projectedStorage.get(volume.id);
    if (!entry) {
      entry = { userId: volume.userId, volumeId: volume.id, name: volume.name, sizeMb: volume.sizeMb, priceGbMonthMinor: volume.priceGbMonthMinor, currency: volume.currency, mbMs: 0 };
      projectedStorage.set(volume.id, entry);
    }
    entry.mbMs += volume.sizeMb * rest;
  }

  const price = (segments: SegmentRow[], volumeRows: StorageRow[]) => {
    const compute = priceSegments(segments, period, rules);
    const stored = priceStorage(volumeRows);
    const totals = invoiceTotals(compute.charges, rules.taxRateBps, stored.amounts);
    const lines = [...compute.lines, ...stored.lines].map(({ instanceId, kind, description, quantity, unit, unitPriceMinor, amountMinor }) => ({
      instanceId,
      kind,
      description,
      quantity,
      unit,
      unitPriceMinor,
      amountMinor,
    }));
    return { ...totals, lines };
  };

  return {
    period: period.name,
    periodStart: period.start.toISOString(),
    periodEnd: period.end.toISOString(),
    currency: rules.currency,
    meteredUntil: await meteredUntil(db, ownerId),
    soFar: price(rows, storage),
    projected: price([...projected.values()], [...projectedStorage.values()]),
    /** This period's share of the measured load so far (informational: energy is not priced). */
    energy: energyView(await accountEnergy(db, { userId: ownerId, from: period.start, to: period.end }), config.energy.gridCo2GramsPerKwh),
  };
}
