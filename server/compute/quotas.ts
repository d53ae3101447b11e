import { and, eq, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { computeQuotas, instances, volumes } from "../../db/schema";
import type { Config } from "../config";
import { AppError } from "../errors";
import { holdsCapacity } from "./hosts";

export type Quota = { maxInstances: number; maxCpuMillis: number; maxMemoryMb: number; maxVolumes: number; maxVolumeMb: number };
export type QuotaOverride = { [K in keyof Quota]?: number | null };

/** The user's limits: their override where set, the configured default elsewhere. */
export async function quotaFor(db: Database, config: Config, userId: string): Promise<Quota> {
  const [row] = await db.select().from(computeQuotas).where(eq(computeQuotas.userId, userId));
  const d = config.compute.defaultQuota;
  return {
    maxInstances: row?.maxInstances ?? d.maxInstances,
    maxCpuMillis: row?.maxCpuMillis ?? d.maxCpuMillis,
    maxMemoryMb: row?.maxMemoryMb ?? d.maxMemoryMb,
    maxVolumes: row?.maxVolumes ?? d.maxVolumes,
    maxVolumeMb: row?.maxVolumeMb ?? d.maxVolumeMb,
  };
}

/** Sets (or, with null, clears) a user's overrides. For operators. */
export async function setUserQuota(db: Database, userId: string, override: QuotaOverride): Promise<void> {
  await db
    .insert(computeQuotas)
    .values({ userId, ...override })
    .onConflictDoUpdate({ target: computeQuotas.userId, set: override });
}

/**
 * What the user holds: every instance that is not deleted counts as one; only
 * instances that hold capacity (see `holdsCapacity`) count their vCPUs and
 * memory; every volume not deleted counts its size.
 */
export async function usageOf(db: Database, userId: string, opts: { excludeInstanceId?: string } = {}) {
  const [compute] = await db
    .select({
      instances: sql<number>`count(*)::int`,
      cpuMillis: sql<number>`coalesce(sum(${instances.cpuMillis}) filter (where ${holdsCapacity()}), 0)::int`,
      memoryMb: sql<number>`coalesce(sum(${instances.memoryMb}) filter (where ${holdsCapacity()}), 0)::int`,
    })
    .from(instances)
    .where(and(eq(instances.userId, userId), ne(instances.state, "deleted"), opts.excludeInstanceId ? ne(instances.id, opts.excludeInstanceId) : undefined));
  const [storage] = await db
    .select({ volumes: sql<number>`count(*)::int`, volumeMb: sql<number>`coalesce(sum(${volumes.sizeMb}), 0)::int` })
    .from(volumes)
    .where(and(eq(volumes.userId, userId), ne(volumes.state, "deleted")));
  return { ...compute!, ...storage! };
}

// Any fixed value; it keys the per-user lock of the create path.
const CREATE_LOCK_SPACE = 40_417;

/**
 * Serialises a user's creates, starts and resizes until the transaction ends,
 * so concurrent requests cannot each see room for one more. An advisory lock
 * keeps the users row (owned by auth) free for everything else.
 */
export async function lockUserForCreate(tx: Database, userId: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${CREATE_LOCK_SPACE}, hashtext(${userId}))`);
}

export type QuotaNeed = { instances?: number; cpuMillis?: number; memoryMb?: number; volumes?: number; volumeMb?: number };

/**
 * Throws QUOTA_EXCEEDED naming the first limit the request would pass. Call
 * under `lockUserForCreate`. `excludeInstanceId` leaves an instance's own
 * holding out (a start or resize counts its new need instead).
 */
export async function assertWithinQuota(tx: Database, config: Config, userId: string, need: QuotaNeed, opts: { excludeInstanceId?: string } = {}): Promise<void> {
  const quota = await quotaFor(tx, config, userId);
  const used = await usageOf(tx, userId, opts);
  const checks = [
    { resource: "instances", limit: quota.maxInstances, used: used.instances, requested: need.instances ?? 0 },
    { resource: "cpuMillis", limit: quota.maxCpuMillis, used: used.cpuMillis, requested: need.cpuMillis ?? 0 },
    { resource: "memoryMb", limit: quota.maxMemoryMb, used: used.memoryMb, requested: need.memoryMb ?? 0 },
    { resource: "volumes", limit: quota.maxVolumes, used: used.volumes, requested: need.volumes ?? 0 },
    { resource: "volumeMb", limit: quota.maxVolumeMb, used: used.volumeMb, requested: need.volumeMb ?? 0 },
  ];
  const over = checks.find((c) => c.requested > 0 && c.used + c.requested > c.limit);
  if (over) {
    throw new AppError("QUOTA_EXCEEDED", `This would exceed your ${over.resource} quota (${over.used} used of ${over.limit})`, { details: over });
  }
}
