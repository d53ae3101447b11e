import { and, eq, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { computeQuotas, instances } from "../../db/schema";
import type { Config } from "../config";
import { AppError } from "../errors";

export type Quota = { maxInstances: number; maxCpuMillis: number; maxMemoryMb: number };
export type QuotaOverride = { [K in keyof Quota]?: number | null };

/** The user's limits: their override where set, the configured default elsewhere. */
export async function quotaFor(db: Database, config: Config, userId: string): Promise<Quota> {
  const [row] = await db.select().from(computeQuotas).where(eq(computeQuotas.userId, userId));
  const d = config.compute.defaultQuota;
  return {
    maxInstances: row?.maxInstances ?? d.maxInstances,
    maxCpuMillis: row?.maxCpuMillis ?? d.maxCpuMillis,
    maxMemoryMb: row?.maxMemoryMb ?? d.maxMemoryMb,
  };
}

/** Sets (or, with null, clears) a user's overrides. For operators. */
export async function setUserQuota(db: Database, userId: string, override: QuotaOverride): Promise<void> {
  await db
    .insert(computeQuotas)
    .values({ userId, ...override })
    .onConflictDoUpdate({ target: computeQuotas.userId, set: override });
}

/** What the user's instances reserve: everything not deleted counts. */
export async function usageOf(db: Database, userId: string) {
  const [row] = await db
    .select({
      instances: sql<number>`count(*)::int`,
      cpuMillis: sql<number>`coalesce(sum(${instances.cpuMillis}), 0)::int`,
      memoryMb: sql<number>`coalesce(sum(${instances.memoryMb}), 0)::int`,
    })
    .from(instances)
    .where(and(eq(instances.userId, userId), ne(instances.state, "deleted")));
  return row!;
}

// Any fixed value; it keys the per-user lock of the create path.
const CREATE_LOCK_SPACE = 40_417;

/**
 * Serialises a user's creates until the transaction ends, so concurrent
 * requests cannot each see room for one more instance. An advisory lock keeps
 * the users row (owned by auth) free for everything else.
 */
export async function lockUserForCreate(tx: Database, userId: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${CREATE_LOCK_SPACE}, hashtext(${userId}))`);
}

/** Throws QUOTA_EXCEEDED naming the first limit the request would pass. Call under `lockUserForCreate`. */
export async function assertWithinQuota(tx: Database, config: Config, userId: string, need: { cpuMillis: number; memoryMb: number }): Promise<void> {
  const quota = await quotaFor(tx, config, userId);
  const used = await usageOf(tx, userId);
  const checks = [
    { resource: "instances", limit: quota.maxInstances, used: used.instances, requested: 1 },
    { resource: "cpuMillis", limit: quota.maxCpuMillis, used: used.cpuMillis, requested: need.cpuMillis },
    { resource: "memoryMb", limit: quota.maxMemoryMb, used: used.memoryMb, requested: need.memoryMb },
  ];
  const over = checks.find((c) => c.used + c.requested > c.limit);
  if (over) {
    throw new AppError("QUOTA_EXCEEDED", `This would exceed your ${over.resource} quota (${over.used} used of ${over.limit})`, { details: over });
  }
}
