import { and, desc, eq, inArray, ne } from "drizzle-orm";
import type { Database } from "../../../db/client";
import { instances, volumes } from "../../../db/schema";
import type { Queues } from "../../../workers/queues";
import { recordAudit } from "../../audit";
import type { Actor } from "../../auth/actor";
import type { Config } from "../../config";
import { AppError } from "../../errors";
import type { Logger } from "../../log";
import { after, cursorTime, decodeCursor, page } from "../../pagination";
import type { RequestInfo } from "../../trpc";
import { placeInstance, type Host } from "../hosts";
import { assertWithinQuota, lockUserForCreate } from "../quotas";
import { mountPathProblem, overlapping } from "./mount-path";

export type Volume = typeof volumes.$inferSelect;
type Deps = { db: Database; config: Config; queues: Queues; log: Logger };
type Who = { actor: Actor; request?: RequestInfo | null };

/** Smallest volume: ext4's journal and metadata take a few MiB of any filesystem. */
export const MIN_VOLUME_MB = 32;
export const MAX_VOLUME_MB = 1024 * 1024;

export function volumeView(volume: Volume) {
  return {
    id: volume.id,
    name: volume.name,
    sizeMb: volume.sizeMb,
    state: volume.state,
    stateReason: volume.stateReason,
    hostId: volume.hostId,
    instanceId: volume.instanceId,
    mountPath: volume.mountPath,
    priceGbMonthMinor: volume.priceGbMonthMinor,
    currency: volume.currency,
    createdAt: volume.createdAt.toISOString(),
    availableAt: volume.availableAt?.toISOString() ?? null,
    deletedAt: volume.deletedAt?.toISOString() ?? null,
  };
}

/** Hands a volume to the lifecycle worker (make its storage, or remove it). The row is the outbox: the reconciler re-enqueues what was lost. */
export async function enqueueVolume(deps: Pick<Deps, "queues" | "log">, volumeId: string, op: "ensure" | "remove"): Promise<void> {
  try {
    await deps.queues.enqueue("lifecycle", "volume", { volumeId }, { jobId: `volume.${op}.${volumeId}`, attempts: 8 });
  } catch (error) {
    deps.log.warn("volume enqueue failed; the reconciler will retry", { volumeId, error: (error as Error).message });
  }
}

async function assertFreeName(tx: Database, userId: string, name: string): Promise<void> {
  const [same] = await tx
    .select({ id: volumes.id })
    .from(volumes)
    .where(and(eq(volumes.userId, userId), eq(volumes.name, name), ne(volumes.state, "deleted")));
  if (same) throw new AppError("CONFLICT", `You already have a volume named ${name}`, { details: { volumeId: same.id } });
}

/**
 * A volume on its own (to attach to an instance created later): quota and a
 * host with room checked in one transaction, the storage made by the worker.
 * Poll `compute.volumes.get` until `available`.
 */
export async function createVolume(deps: Deps, who: Who & { ownerId: string }, input: { name: string; sizeMb: number }) {
  const { db, config } = deps;
  const volume = await db.transaction(async (tx) => {
    await lockUserForCreate(tx, who.ownerId);
    await assertFreeName(tx, who.ownerId, input.name);
    await assertWithinQuota(tx, config, who.ownerId, { volumes: 1, volumeMb: input.sizeMb });
    const host = await placeInstance(tx, { cpuMillis: 0, memoryMb: 0, volumeMb: input.sizeMb });
    const [row] = await tx
      .insert(volumes)
      .values(newVolume(config, who.ownerId, host, input))
      .returning();
    await recordAudit(tx, who, { action: "compute.volume.create", targetType: "volume", targetId: row!.id, metadata: { sizeMb: input.sizeMb, hostId: host.id } });
    return row!;
  });
  await enqueueVolume(deps, volume.id, "ensure");
  return volumeView(volume);
}

function newVolume(config: Config, userId: string, host: Host, input: { name: string; sizeMb: number; instanceId?: string; mountPath?: string }) {
  return {
    userId,
    hostId: host.id,
    name: input.name,
    sizeMb: input.sizeMb,
    state: "creating" as const,
    instanceId: input.instanceId ?? null,
    mountPath: input.mountPath ?? null,
    priceGbMonthMinor: config.billing.volumePricePerGbMonthMinor,
    currency: config.billing.currency,
  };
}

export type VolumeRequest = { mountPath: string } & ({ volumeId: string } | { name: string; sizeMb?: number | undefined });

/**
 * Checks the volumes an instance create asks for (mount paths, ownership,
 * that existing ones are free, quota for new ones) and says where the
 * instance must go: on the host of its existing volumes, if any. Call inside
 * the create transaction, under the user's lock.
 */
export async function planVolumes(tx: Database, config: Config, ownerId: string, requests: readonly VolumeRequest[], defaultSizeMb: number) {
  for (const [i, request] of requests.entries()) {
    const problem = mountPathProblem(request.mountPath);
    if (problem) throw new AppError("MOUNT_PATH_INVALID", `volumes[${i}].mountPath ${problem}`, { details: { field: `volumes.${i}.mountPath`, mountPath: request.mountPath } });
  }
  const clash = overlapping(requests.map((r) => r.mountPath));
  if (clash) throw new AppError("MOUNT_PATH_INVALID", `Two volumes are mounted at ${clash[0]} and ${clash[1]}: one would hide the other`, { details: { field: "volumes", mountPaths: clash } });

  const existingIds = requests.flatMap((r) => ("volumeId" in r ? [r.volumeId] : []));
  if (new Set(existingIds).size !== existingIds.length) throw new AppError("CONFLICT", "The same volume is listed twice", { details: { field: "volumes" } });
  const existing = existingIds.length ? await tx.select().from(volumes).where(inArray(volumes.id, existingIds)).for("update") : [];
  for (const id of existingIds) {
    const volume = existing.find((v) => v.id === id);
    if (!volume || volume.userId !== ownerId || volume.state === "deleted") throw new AppError("NOT_FOUND", "No such volume", { details: { volumeId: id } });
    if (volume.instanceId) throw new AppError("CONFLICT", `Volume ${volume.name} is attached to another instance`, { details: { volumeId: id, instanceId: volume.instanceId } });
    if (volume.state === "deleting" || volume.state === "error") throw new AppError("CONFLICT", `Volume ${volume.name} is ${volume.state}`, { details: { volumeId: id, state: volume.state } });
  }
  const hostIds = [...new Set(existing.map((v) => v.hostId))];
  if (hostIds.length > 1) throw new AppError("CONFLICT", "The volumes are on different hosts; an instance can only use volumes of one host", { details: { field: "volumes" } });

  const fresh = requests.flatMap((r) => ("volumeId" in r ? [] : [{ name: r.name, sizeMb: r.sizeMb ?? defaultSizeMb, mountPath: r.mountPath }]));
  for (const v of fresh) {
    if (v.sizeMb < MIN_VOLUME_MB || v.sizeMb > MAX_VOLUME_MB)
      throw new AppError("VALIDATION_FAILED", `A volume is ${MIN_VOLUME_MB} to ${MAX_VOLUME_MB} MiB`, { details: { field: "volumes", sizeMb: v.sizeMb } });
    await assertFreeName(tx, ownerId, v.name);
  }
  if (new Set(fresh.map((v) => v.name)).size !== fresh.length) throw new AppError("CONFLICT", "Two new volumes have the same name", { details: { field: "volumes" } });
  const volumeMb = fresh.reduce((sum, v) => sum + v.sizeMb, 0);
  if (fresh.length) await assertWithinQuota(tx, config, ownerId, { volumes: fresh.length, volumeMb });
  return { hostId: hostIds[0], volumeMb, existing: requests.flatMap((r) => ("volumeId" in r ? [{ id: r.volumeId, mountPath: r.mountPath }] : [])), fresh };
}

/** Records the planned volumes against the new instance (new ones start `creating`; its provisioning makes them). */
export async function attachVolumes(tx: Database, config: Config, instance: { id: string; userId: string }, host: Host, planned: Awaited<ReturnType<typeof planVolumes>>): Promise<void> {
  for (const v of planned.existing) await tx.update(volumes).set({ instanceId: instance.id, mountPath: v.mountPath }).where(eq(volumes.id, v.id));
  if (planned.fresh.length) await tx.insert(volumes).values(planned.fresh.map((v) => newVolume(config, instance.userId, host, { ...v, instanceId: instance.id })));
}

export async function findVolume(db: Database, ownerId: string | null, volumeId: string): Promise<Volume> {
  const [volume] = await db.select().from(volumes).where(eq(volumes.id, volumeId));
  if (!volume || (ownerId !== null && volume.userId !== ownerId)) throw new AppError("NOT_FOUND", "No such volume", { details: { volumeId } });
  return volume;
}

export async function getVolume(db: Database, ownerId: string, volumeId: string) {
  return volumeView(await findVolume(db, ownerId, volumeId));
}

/** The owner's volumes, newest first; deleted ones only when asked for by state. */
export async function listVolumes(db: Database, ownerId: string, opts: { state?: Volume["state"] | undefined; cursor?: string | undefined; limit?: number | undefined }) {
  const limit = opts.limit ?? 20;
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const rows = await db
    .select({ volume: volumes, id: volumes.id, cursorAt: cursorTime(volumes.createdAt) })
    .from(volumes)
    .where(and(eq(volumes.userId, ownerId), opts.state ? eq(volumes.state, opts.state) : ne(volumes.state, "deleted"), cursor ? after(volumes.createdAt, volumes.id, cursor) : undefined))
    .orderBy(desc(volumes.createdAt), desc(volumes.id))
    .limit(limit + 1);
  return page(rows, limit, (row) => volumeView(row.volume));
}

/**
 * Deletes a volume that no instance uses (its data is gone for good). One
 * attached to an instance is CONFLICT: delete the instance first (with
 * `deleteVolumes`, or without to keep the volume for another instance).
 */
export async function deleteVolume(deps: Deps, who: Who & { ownerId: string }, volumeId: string) {
  const volume = await deps.db.transaction(async (tx) => {
    const [row] = await tx.select().from(volumes).where(eq(volumes.id, volumeId)).for("update");
    if (!row || row.userId !== who.ownerId || row.state === "deleted") throw new AppError("NOT_FOUND", "No such volume", { details: { volumeId } });
    if (row.instanceId) {
      const [instance] = await tx.select({ state: instances.state }).from(instances).where(eq(instances.id, row.instanceId));
      if (instance && instance.state !== "deleted") {
        throw new AppError("CONFLICT", "The volume is attached to an instance; delete the instance first", { details: { volumeId, instanceId: row.instanceId } });
      }
    }
    if (row.state === "deleting") throw new AppError("CONFLICT", "The volume is being deleted", { details: { volumeId } });
    const [updated] = await tx.update(volumes).set({ state: "deleting", deletedAt: new Date(), instanceId: null, mountPath: null }).where(eq(volumes.id, volumeId)).returning();
    await recordAudit(tx, who, { action: "compute.volume.delete", targetType: "volume", targetId: volumeId });
    return updated!;
  });
  await enqueueVolume(deps, volume.id, "remove");
  return volumeView(volume);
}
