import { and, asc, eq, inArray, ne, notInArray, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { hosts, instances } from "../../db/schema";
import type { Config } from "../config";
import { AppError } from "../errors";
import type { Logger } from "../log";
import type { Engines } from "./engines";

export type Host = typeof hosts.$inferSelect;

const MIB = 1024 * 1024;

/**
 * Storage drivers that can cap a container's writable layer (`StorageOpt
 * size`). overlay2 can only on xfs mounted with pquota, which `docker info`
 * does not reveal, so xfs stays "unknown" until the first create tells.
 */
function diskLimitCandidate(driver: string, backingFs: string | undefined): boolean | null {
  if (driver === "overlay2") return backingFs === "xfs" ? null : false;
  if (["btrfs", "zfs", "devicemapper", "windowsfilter"].includes(driver)) return null;
  return false;
}

/**
 * Brings the hosts table in line with the configured engines: capacity and
 * storage facts from `docker info`, `offline` for an engine that does not
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
        const driver = String(info.Driver ?? "unknown");
        const backingFs = (info.DriverStatus as [string, string][] | undefined)?.find(([key]) => key === "Backing Filesystem")?.[1];
        const candidate = diskLimitCandidate(driver, backingFs);
        const facts = {
          endpoint,
          status: "active" as const,
          cpuCapacityMillis: Math.floor(Number(info.NCPU) * 1000 * config.compute.overcommit.cpu),
          memoryCapacityMb: Math.floor((Number(info.MemTotal) / MIB) * config.compute.overcommit.memory),
          storageDriver: driver,
          diskLimitSupported: candidate === false ? false : before?.storageDriver === driver ? (before.diskLimitSupported ?? null) : null,
          engineVersion: String(info.ServerVersion ?? ""),
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

/** Remembers what the engine said about disk limits when a container was first created with one. */
export async function recordDiskLimitSupport(db: Database, hostId: string, supported: boolean): Promise<void> {
  await db.update(hosts).set({ diskLimitSupported: supported }).where(eq(hosts.id, hostId));
}

export async function getHost(db: Database, hostId: string): Promise<Host> {
  const [host] = await db.select().from(hosts).where(eq(hosts.id, hostId));
  if (!host) throw new Error(`host ${hostId} does not exist`);
  return host;
}

/** Capacity and what the instances placed there reserve, per host. */
export async function hostUsage(db: Database) {
  const rows = await db.select().from(hosts).orderBy(asc(hosts.name));
  const allocated = await allocations(
    db,
    rows.map((h) => h.id),
  );
  return rows.map((host) => ({ host, allocated: allocated.get(host.id) ?? { cpuMillis: 0, memoryMb: 0, instances: 0 } }));
}

async function allocations(db: Database, hostIds: string[]) {
  if (!hostIds.length) return new Map<string, { cpuMillis: number; memoryMb: number; instances: number }>();
  const rows = await db
    .select({
      hostId: instances.hostId,
      cpuMillis: sql<number>`coalesce(sum(${instances.cpuMillis}), 0)::int`,
      memoryMb: sql<number>`coalesce(sum(${instances.memoryMb}), 0)::int`,
      instances: sql<number>`count(*)::int`,
    })
    .from(instances)
    .where(and(inArray(instances.hostId, hostIds), ne(instances.state, "deleted")))
    .groupBy(instances.hostId);
  return new Map(rows.map((row) => [row.hostId, row]));
}

/**
 * Picks the active host with the most free memory that fits the request.
 * Call inside the create transaction: the host rows stay locked until it
 * commits, so two concurrent creates cannot both take the last slot.
 * An instance reserves its plan until it is deleted, stopped or not, so a
 * stopped instance can always start again where it is.
 */
export async function placeInstance(tx: Database, need: { cpuMillis: number; memoryMb: number }): Promise<Host> {
  const candidates = await tx.select().from(hosts).where(eq(hosts.status, "active")).orderBy(asc(hosts.name)).for("update");
  if (!candidates.length) throw new AppError("CAPACITY_EXHAUSTED", "No compute host is available right now; retry later");
  const used = await allocations(
    tx,
    candidates.map((h) => h.id),
  );
  let best: { host: Host; freeMemoryMb: number } | undefined;
  for (const host of candidates) {
    const taken = used.get(host.id) ?? { cpuMillis: 0, memoryMb: 0 };
    const freeCpu = host.cpuCapacityMillis - taken.cpuMillis;
    const freeMemoryMb = host.memoryCapacityMb - taken.memoryMb;
    if (freeCpu >= need.cpuMillis && freeMemoryMb >= need.memoryMb && (!best || freeMemoryMb > best.freeMemoryMb)) best = { host, freeMemoryMb };
  }
  if (!best) {
    throw new AppError("CAPACITY_EXHAUSTED", "No host has room for this plan right now; try a smaller plan or retry later", {
      details: { requested: need },
    });
  }
  return best.host;
}
