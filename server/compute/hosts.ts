import { and, asc, eq, inArray, notInArray, sql, type SQL } from "drizzle-orm";
import type { Database } from "../../db/client";
import { hosts, instances, volumes } from "../../db/schema";
import type { Config } from "../config";
import { AppError } from "../errors";
import type { Logger } from "../log";
import type { Engines } from "./engines";
import { POWER_EMERGENCY_REASON } from "./states";
import { volumeSupport } from "./volumes/storage";

export type Host = typeof hosts.$inferSelect;

const MIB = 1024 * 1024;

/**
 * The capacity rule. An instance holds its plan's vCPUs and memory on its
 * host (and against its owner's quota) while its container is, or is about to
 * be, up: pending, provisioning, running, paused, stopping — and while it is
 * stopped by the power policy, so that recovery always finds its room. A
 * stopped (by its owner, an admin, a suspension), failed or deleting
 * instance holds none: its start checks quota and room again, on the host
 * its container and volumes are on (like a stopped cloud VM that may not
 * find capacity to start). Volumes hold their size whatever the state.
 */
export const holdsCapacity = (): SQL =>
  sql`(${instances.state} in ('pending', 'provisioning', 'running', 'paused', 'stopping') or (${instances.state} = 'stopped' and ${instances.stateReason} = ${POWER_EMERGENCY_REASON}))`;

export function instanceHoldsCapacity(instance: { state: string; stateReason: string | null }): boolean {
  return ["pending", "provisioning", "running", "paused", "stopping"].includes(instance.state) || (instance.state === "stopped" && instance.stateReason === POWER_EMERGENCY_REASON);
}

/** The engine's platform facts: `name=userns` in SecurityOptions means container ids are shifted (userns-remap). */
export function usernsOf(info: { SecurityOptions?: unknown; DockerRootDir?: unknown }): { remap: boolean; root: { uid: number; gid: number } | null } {
  const options = Array.isArray(info.SecurityOptions) ? (info.SecurityOptions as unknown[]).map(String) : [];
  const remap = options.some((o) => o.includes("name=userns"));
  // Under remap the daemon's root folder ends in `<uid>.<gid>` of the remapped root.
  const match = remap ? /\/(\d+)\.(\d+)\/?$/.exec(String(info.DockerRootDir ?? "")) : null;
  return { remap, root: match ? { uid: Number(match[1]), gid: Number(match[2]) } : null };
}

/**
 * Brings the hosts table in line with the configured engines: capacity,
 * user-namespace and volume facts, `offline` for an engine that does not
 * answer or is no longer configured (placement skips it; its instances stay).
 */
export async function syncHosts(deps: { db: Database; config: Config; engines: Engines; log: Logger }): Promise<Host[]> {
  const { db, config, engines, log } = deps;
  const configured = config.compute.hosts;
  const existing = new Map((await db.select().from(hosts)).map((host) => [host.name, host]));

  await Promise.all(
    configured.map(async ({ name, endpoint }) => {
      const before = existing.get(name);
      try {
        const info = await engines.get(endpoint).info();
        const userns = usernsOf(info);
        const storage = await volumeSupport(config, endpoint).catch((error: Error) => ({ supported: false, note: error.message.slice(0, 300), capacityMb: 0 }));
        const facts = {
          endpoint,
          status: "active" as const,
          cpuCapacityMillis: Math.floor(Number(info.NCPU) * 1000 * config.compute.overcommit.cpu),
          memoryCapacityMb: Math.floor((Number(info.MemTotal) / MIB) * config.compute.overcommit.memory),
          storageDriver: String(info.Driver ?? "unknown"),
          engineVersion: String(info.ServerVersion ?? ""),
          cgroupDriver: typeof info.CgroupDriver === "string" ? info.CgroupDriver : null,
          usernsRemap: userns.remap,
          usernsRoot: userns.root,
          volumesSupported: storage.supported,
          volumesNote: storage.note,
          volumeCapacityMb: storage.capacityMb,
          lastError: null,
          lastSeenAt: new Date(),
        };
        await db
          .insert(hosts)
          .values({ name, ...facts })
          .onConflictDoUpdate({ target: hosts.name, set: facts });
      } catch (error) {
        if (before?.status !== "offline") log.warn("docker host unreachable", { host: name, error: (error as Error).message });
        const facts = { endpoint, status: "offline" as const, lastError: String((error as Error).message).slice(0, 300) };
        await db
          .insert(hosts)
          .values({ name, ...facts })
          .onConflictDoUpdate({ target: hosts.name, set: facts });
      }
    }),
  );
  await db
    .update(hosts)
    .set({ status: "offline", lastError: "not in DOCKER_HOSTS" })
    .where(
      and(
        notInArray(
          hosts.name,
          configured.map((h) => h.name),
        ),
        eq(hosts.status, "active"),
      ),
    );
  return db.select().from(hosts).orderBy(asc(hosts.name));
}

export async function getHost(db: Database, hostId: string): Promise<Host> {
  const [host] = await db.select().from(hosts).where(eq(hosts.id, hostId));
  if (!host) throw new Error(`host ${hostId} does not exist`);
  return host;
}

/** The host user that owns a volume's files: the instance user, shifted by the engine's user namespace when it remaps. */
export function volumeOwner(config: Config, host: Host): { uid: number; gid: number } {
  const { uid, gid } = config.compute.user;
  return host.usernsRemap && host.usernsRoot ? { uid: host.usernsRoot.uid + uid, gid: host.usernsRoot.gid + gid } : { uid, gid };
}

type Allocation = { cpuMillis: number; memoryMb: number; instances: number; volumeMb: number };
const NONE: Allocation = { cpuMillis: 0, memoryMb: 0, instances: 0, volumeMb: 0 };

/** Capacity and what is held on it, per host. */
export async function hostUsage(db: Database) {
  const rows = await db.select().from(hosts).orderBy(asc(hosts.name));
  const allocated = await allocations(
    db,
    rows.map((h) => h.id),
  );
  return rows.map((host) => ({ host, allocated: allocated.get(host.id) ?? NONE }));
}

async function allocations(db: Database, hostIds: string[], excludeInstanceId?: string): Promise<Map<string, Allocation>> {
  const result = new Map<string, Allocation>();
  if (!hostIds.length) return result;
  const compute = await db
    .select({
      hostId: instances.hostId,
      cpuMillis: sql<number>`coalesce(sum(${instances.cpuMillis}) filter (where ${holdsCapacity()}), 0)::int`,
      memoryMb: sql<number>`coalesce(sum(${instances.memoryMb}) filter (where ${holdsCapacity()}), 0)::int`,
      instances: sql<number>`count(*)::int`,
    })
    .from(instances)
    .where(and(inArray(instances.hostId, hostIds), sql`${instances.state} <> 'deleted'`, excludeInstanceId ? sql`${instances.id} <> ${excludeInstanceId}` : undefined))
    .groupBy(instances.hostId);
  for (const row of compute) result.set(row.hostId, { ...NONE, ...row });
  const storage = await db
    .select({ hostId: volumes.hostId, volumeMb: sql<number>`coalesce(sum(${volumes.sizeMb}), 0)::int` })
    .from(volumes)
    .where(and(inArray(volumes.hostId, hostIds), sql`${volumes.state} <> 'deleted'`))
    .groupBy(volumes.hostId);
  for (const row of storage) result.set(row.hostId, { ...(result.get(row.hostId) ?? NONE), volumeMb: row.volumeMb });
  return result;
}

export type Need = { cpuMillis: number; memoryMb: number; volumeMb: number };

function fits(host: Host, used: Allocation, need: Need): boolean {
  const volumesFit = need.volumeMb === 0 || (host.volumesSupported && host.volumeCapacityMb - used.volumeMb >= need.volumeMb);
  return host.cpuCapacityMillis - used.cpuMillis >= need.cpuMillis && host.memoryCapacityMb - used.memoryMb >= need.memoryMb && volumesFit;
}

/**
 * Picks the active host with the most free memory that fits the request (a
 * given host when the instance's volumes already live there). Call inside
 * the create transaction: the host rows stay locked until it commits, so two
 * concurrent creates cannot both take the last slot. No active host at all
 * is ENGINE_OFFLINE (the engines are down), not CAPACITY_EXHAUSTED.
 */
export async function placeInstance(tx: Database, need: Need, opts: { hostId?: string | undefined } = {}): Promise<Host> {
  const candidates = await tx.select().from(hosts).where(eq(hosts.status, "active")).orderBy(asc(hosts.name)).for("update");
  if (!candidates.length) throw new AppError("ENGINE_OFFLINE", "No container engine is reachable right now; nothing can be created until one is. Retry later");
  const pool = opts.hostId ? candidates.filter((h) => h.id === opts.hostId) : candidates;
  if (opts.hostId && !pool.length) throw new AppError("ENGINE_OFFLINE", "The host this instance's volumes are on is unreachable right now; retry later", { details: { hostId: opts.hostId } });
  if (need.volumeMb > 0 && !pool.some((h) => h.volumesSupported)) {
    throw new AppError("VOLUMES_UNAVAILABLE", "No host here can make sized volumes", { details: { notes: pool.map((h) => ({ host: h.name, note: h.volumesNote })) } });
  }
  const used = await allocations(
    tx,
    pool.map((h) => h.id),
  );
  let best: { host: Host; freeMemoryMb: number } | undefined;
  for (const host of pool) {
    const taken = used.get(host.id) ?? NONE;
    const freeMemoryMb = host.memoryCapacityMb - taken.memoryMb;
    if (fits(host, taken, need) && (!best || freeMemoryMb > best.freeMemoryMb)) best = { host, freeMemoryMb };
  }
  if (!best) {
    throw new AppError("CAPACITY_EXHAUSTED", "No host has room for this plan right now; try a smaller plan or retry later", { details: { requested: need } });
  }
  return best.host;
}

/**
 * Checks that the instance's own host has room for `need` on top of what
 * else it holds (a start after a stop, a resize), locking the host row until
 * the transaction ends. An unreachable host is DEPENDENCY_UNAVAILABLE.
 */
export async function assertHostRoom(tx: Database, hostId: string, instanceId: string, need: Need): Promise<void> {
  const [host] = await tx.select().from(hosts).where(eq(hosts.id, hostId)).for("update");
  if (!host) throw new Error(`host ${hostId} does not exist`);
  if (host.status !== "active") throw hostUnreachable(host);
  const used = (await allocations(tx, [hostId], instanceId)).get(hostId) ?? NONE;
  if (!fits(host, used, need)) {
    throw new AppError("CAPACITY_EXHAUSTED", "The instance's host has no room for it right now (stopped instances give their CPU and memory back); retry later or choose a smaller plan", {
      details: { requested: need, hostId },
    });
  }
}

export function hostUnreachable(host: Pick<Host, "id" | "name" | "lastError">): AppError {
  return new AppError("DEPENDENCY_UNAVAILABLE", "The instance's host is unreachable right now; retry shortly", { details: { hostId: host.id, host: host.name, error: host.lastError } });
}
