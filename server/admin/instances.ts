import { and, desc, eq, ne } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instances, users } from "../../db/schema";
import { hostUsage } from "../compute/hosts";
import { stopInstance, type ComputeDeps, type ViewDeps } from "../compute/instances";
import { instanceView, type InstanceView } from "../compute/views";
import type { InstancePriority, InstanceState } from "../compute/states";
import { after, cursorTime, decodeCursor, page } from "../pagination";
import type { AdminCaller } from "./users";

/** The reason code a forced stop leaves in the state history (the admin's own words go to the audit row). */
export const FORCE_STOP_REASON = "admin_force_stop";

export type InstanceFilters = {
  state?: InstanceState | undefined;
  userId?: string | undefined;
  hostId?: string | undefined;
  priority?: InstancePriority | undefined;
  cursor?: string | undefined;
  limit: number;
};

/** Every user's instances, newest first, a page at a time; deleted ones only when asked for by state. */
export async function listAllInstances(deps: ViewDeps, filters: InstanceFilters) {
  const { db } = deps;
  const cursor = filters.cursor ? decodeCursor(filters.cursor) : null;
  const rows = await db
    .select({ instance: instances, ownerEmail: users.email, id: instances.id, cursorAt: cursorTime(instances.createdAt) })
    .from(instances)
    .innerJoin(users, eq(users.id, instances.userId))
    .where(
      and(
        filters.state ? eq(instances.state, filters.state) : ne(instances.state, "deleted"),
        filters.userId ? eq(instances.userId, filters.userId) : undefined,
        filters.hostId ? eq(instances.hostId, filters.hostId) : undefined,
        filters.priority ? eq(instances.priority, filters.priority) : undefined,
        cursor ? after(instances.createdAt, instances.id, cursor) : undefined,
      ),
    )
    .orderBy(desc(instances.createdAt), desc(instances.id))
    .limit(filters.limit + 1);
  return page(rows, filters.limit, ({ instance, ownerEmail }) => ({ ...withoutEnvValues(instanceView(instance, deps.config.ingress)), userId: instance.userId, ownerEmail }));
}

/** Staff see which environment variables a customer set, never their values (they are often credentials). */
function withoutEnvValues({ env, ...instance }: InstanceView) {
  return { ...instance, envNames: Object.keys(env).sort() };
}

/**
 * Stops anyone's instance through the lifecycle queue, like its owner's stop.
 * The state history says `admin_force_stop`; the audit row carries the admin
 * and their reason. An instance busy with another action is INVALID_TRANSITION.
 */
export async function forceStopInstance(deps: ComputeDeps, caller: AdminCaller, input: { id: string; reason: string }) {
  const stopped = await stopInstance(deps, input.id, { reason: FORCE_STOP_REASON, note: input.reason, actor: caller.actor, request: caller.request });
  return { instance: withoutEnvValues(stopped.instance), actionId: stopped.actionId };
}

/** Each host with its capacity (after overcommit) and what its instances reserve. */
export async function listHosts(db: Database) {
  const rows = await hostUsage(db);
  return rows.map(({ host, allocated }) => ({
    id: host.id,
    name: host.name,
    endpoint: host.endpoint,
    status: host.status,
    capacity: { vcpus: host.cpuCapacityMillis / 1000, memoryMb: host.memoryCapacityMb },
    allocated: { vcpus: allocated.cpuMillis / 1000, memoryMb: allocated.memoryMb, instances: allocated.instances, volumeMb: allocated.volumeMb },
    free: { vcpus: (host.cpuCapacityMillis - allocated.cpuMillis) / 1000, memoryMb: host.memoryCapacityMb - allocated.memoryMb },
    storageDriver: host.storageDriver,
    volumeCapacityMb: host.volumeCapacityMb,
    volumesSupported: host.volumesSupported,
    volumesNote: host.volumesNote,
    /** The engine remaps container users (userns-remap); volume files are then owned by the shifted ids. */
    usernsRemap: host.usernsRemap,
    engineVersion: host.engineVersion,
    lastError: host.lastError,
    lastSeenAt: host.lastSeenAt?.toISOString() ?? null,
  }));
}
