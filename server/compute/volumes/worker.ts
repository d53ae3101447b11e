import type Docker from "dockerode";
import { and, eq, inArray, lt, ne, sql } from "drizzle-orm";
import type { Database } from "../../../db/client";
import { volumes } from "../../../db/schema";
import type { Config } from "../../config";
import type { Logger } from "../../log";
import { containerName, inspectContainer, PermanentFailure, removeContainer, statusCode } from "../containers";
import type { Engines } from "../engines";
import { getHost, volumeOwner, type Host } from "../hosts";
import type { Instance } from "../instances";
import { enqueueVolume, type Volume } from "./service";
import { ensureVolumeStorage, reattachVolume, removeVolumeStorage } from "./storage";

type Deps = { db: Database; config: Config; engines: Engines; log: Logger };

// Any fixed value; it keys the per-volume lock that serialises work on its storage.
const VOLUME_LOCK_SPACE = 40_419;

function withVolumeLock<T>(db: Database, volumeId: string, work: () => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${VOLUME_LOCK_SPACE}, hashtext(${volumeId}))`);
    return work();
  });
}

async function markAvailable(db: Database, volumeId: string): Promise<void> {
  await db
    .update(volumes)
    .set({ state: "available", stateReason: null, availableAt: sql`coalesce(${volumes.availableAt}, now())` })
    .where(and(eq(volumes.id, volumeId), inArray(volumes.state, ["creating", "available", "error"])));
}

async function ensureOne(deps: Deps, docker: Docker, host: Host, volume: Volume) {
  if (!host.volumesSupported) throw new PermanentFailure(`host ${host.name} cannot make volumes: ${host.volumesNote ?? "unknown reason"}`);
  const made = await withVolumeLock(deps.db, volume.id, () => ensureVolumeStorage(docker, deps.config, volume, volumeOwner(deps.config, host)));
  await markAvailable(deps.db, volume.id);
  return made;
}

/**
 * The `lifecycle.volume` job: makes a standalone volume's storage, or removes
 * a deleted one's. A failure retrying cannot fix leaves the volume in `error`
 * with the reason.
 */
export async function runVolumeJob(deps: Deps, volumeId: string, opts: { finalAttempt: boolean }): Promise<{ state: Volume["state"] }> {
  const [volume] = await deps.db.select().from(volumes).where(eq(volumes.id, volumeId));
  if (!volume) return { state: "deleted" };
  const host = await getHost(deps.db, volume.hostId);
  const docker = deps.engines.get(host.endpoint);
  try {
    if (volume.state === "creating") {
      await ensureOne(deps, docker, host, volume);
      return { state: "available" };
    }
    if (volume.state === "deleting") {
      await withVolumeLock(deps.db, volume.id, () => removeVolumeStorage(docker, deps.config, volume.id));
      await deps.db
        .update(volumes)
        .set({ state: "deleted" })
        .where(and(eq(volumes.id, volumeId), eq(volumes.state, "deleting")));
      return { state: "deleted" };
    }
  } catch (error) {
    if (!(error instanceof PermanentFailure) && !opts.finalAttempt) throw error;
    await deps.db
      .update(volumes)
      .set({ state: volume.state === "deleting" ? "deleting" : "error", stateReason: (error as Error).message.slice(0, 1000) })
      .where(eq(volumes.id, volumeId));
    deps.log.warn("volume job failed", { volumeId, error: (error as Error).message });
    return { state: volume.state === "deleting" ? "deleting" : "error" };
  }
  return { state: volume.state };
}

/**
 * The volumes an instance mounts, ready on its host (made, attached, the
 * engine's volume pointing at the right device). Called while provisioning,
 * when the container is not running: if a volume must be re-pointed (a
 * reboot) and the engine says the instance's stopped container still
 * references it, that container is removed (it is made again from its spec).
 */
export async function prepareInstanceVolumes(deps: Deps, docker: Docker, host: Host, instance: Instance): Promise<Array<{ dockerName: string; mountPath: string }>> {
  const attached = await deps.db
    .select()
    .from(volumes)
    .where(and(eq(volumes.instanceId, instance.id), ne(volumes.state, "deleted")))
    .orderBy(volumes.mountPath);
  const mounts: Array<{ dockerName: string; mountPath: string }> = [];
  for (const volume of attached) {
    if (volume.state === "deleting") throw new PermanentFailure(`volume ${volume.name} is being deleted`);
    let made: Awaited<ReturnType<typeof ensureOne>>;
    try {
      made = await ensureOne(deps, docker, host, volume);
    } catch (error) {
      if (statusCode(error) !== 409) throw error;
      const container = await inspectContainer(docker, containerName(deps.config, instance.id));
      if (container?.State.Running) throw error;
      if (container) await removeContainer(docker, container.Id);
      made = await ensureOne(deps, docker, host, volume);
    }
    mounts.push({ dockerName: made.dockerName, mountPath: volume.mountPath! });
  }
  return mounts;
}

/**
 * The reconciler's share: after a reboot the volume files are attached to
 * loop devices again (the engine's volumes are re-pointed when their
 * instances start), and volume jobs lost on the way are enqueued again.
 */
export async function reconcileVolumes(deps: Deps & { queues: Parameters<typeof enqueueVolume>[0]["queues"] }, host: Host): Promise<{ reattached: number; requeued: number }> {
  let reattached = 0;
  if (host.volumesSupported) {
    const live = await deps.db
      .select({ id: volumes.id })
      .from(volumes)
      .where(and(eq(volumes.hostId, host.id), inArray(volumes.state, ["available", "creating"])));
    for (const { id } of live) {
      if (await withVolumeLock(deps.db, id, () => reattachVolume(deps.config, id))) reattached += 1;
    }
  }
  const stuck = await deps.db
    .select({ id: volumes.id, state: volumes.state })
    .from(volumes)
    .where(and(eq(volumes.hostId, host.id), inArray(volumes.state, ["creating", "deleting"]), lt(volumes.updatedAt, new Date(Date.now() - 2 * 60_000))));
  for (const volume of stuck) await enqueueVolume(deps, volume.id, volume.state === "deleting" ? "remove" : "ensure");
  return { reattached, requeued: stuck.length };
}
