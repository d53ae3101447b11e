import type Docker from "dockerode";
import type { Database } from "../../db/client";
import type { Config } from "../config";
import { AppError } from "../errors";
import { containerName, engineUnavailable, statusCode } from "./containers";
import type { Engines } from "./engines";
import { getHost, hostUnreachable } from "./hosts";
import { findInstance, type Instance } from "./instances";
import { LIVE_STATES } from "./states";

// One `stream: false` sample takes about a second (the engine waits for a second reading to give CPU a delta).
const STATS_TIMEOUT_MS = 5000;

export type StatsDeps = { db: Database; config: Config; engines: Engines };

/** Live CPU, memory, network, block I/O and pids of the owner's running or paused instance. */
export async function instanceStats(deps: StatsDeps, ownerId: string | null, instanceId: string) {
  const instance = await findInstance(deps.db, ownerId, instanceId);
  if (!LIVE_STATES.includes(instance.state)) {
    throw new AppError("CONFLICT", `The instance is ${instance.state}; stats are available while it is running or paused`, { details: { state: instance.state } });
  }
  const stats = await sampleStats(deps, instance);
  if (!stats) throw new AppError("CONFLICT", "The instance's container is not available; it will be reconciled shortly", { details: { state: instance.state } });
  return stats;
}

/**
 * One sample from the engine, bounded by a timeout (stack-pitfalls K-2/K-3:
 * never a stream). Null when the container does not exist. For metering too.
 */
export async function sampleStats(deps: StatsDeps, instance: Instance) {
  const host = await getHost(deps.db, instance.hostId);
  if (host.status !== "active") throw hostUnreachable(host);
  const container = deps.engines.get(host.endpoint).getContainer(containerName(deps.config, instance.id));
  let raw: Docker.ContainerStats;
  try {
    raw = await container.stats({ stream: false, abortSignal: AbortSignal.timeout(STATS_TIMEOUT_MS) } as { stream: false });
  } catch (error) {
    if (statusCode(error) === 404) return null;
    if (engineUnavailable(error)) throw new AppError("DEPENDENCY_UNAVAILABLE", "The container engine did not answer", { cause: error });
    throw error;
  }
  return { instanceId: instance.id, ...summarizeStats(raw, instance.cpuMillis / 1000) };
}

type RawStats = {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number; percpu_usage?: number[] }; system_cpu_usage?: number; online_cpus?: number };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number; rx_packets?: number; tx_packets?: number }>;
  blkio_stats?: { io_service_bytes_recursive?: Array<{ op?: string; value?: number }> | null };
  pids_stats?: { current?: number; limit?: number };
};

/**
 * The engine's raw sample reduced to what customers and billing read. CPU is
 * computed as the docker CLI does (share of the host's CPU time over the
 * sample, times the online CPUs); memory excludes the reclaimable page cache.
 */
export function summarizeStats(sample: unknown, vcpus: number) {
  const raw = sample as RawStats;
  const cpuTotal = raw.cpu_stats?.cpu_usage?.total_usage ?? 0;
  const cpuDelta = cpuTotal - (raw.precpu_stats?.cpu_usage?.total_usage ?? 0);
  const systemDelta = (raw.cpu_stats?.system_cpu_usage ?? 0) - (raw.precpu_stats?.system_cpu_usage ?? 0);
  const onlineCpus = raw.cpu_stats?.online_cpus || raw.cpu_stats?.cpu_usage?.percpu_usage?.length || 1;
  const percent = systemDelta > 0 && cpuDelta >= 0 && raw.precpu_stats?.system_cpu_usage ? (cpuDelta / systemDelta) * onlineCpus * 100 : 0;

  const memStats = raw.memory_stats?.stats ?? {};
  const reclaimable = memStats.total_inactive_file ?? memStats.inactive_file ?? 0;
  const usage = Math.max(0, (raw.memory_stats?.usage ?? 0) - reclaimable);
  const limit = raw.memory_stats?.limit ?? 0;

  const network = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 };
  for (const iface of Object.values(raw.networks ?? {})) {
    network.rxBytes += iface.rx_bytes ?? 0;
    network.txBytes += iface.tx_bytes ?? 0;
    network.rxPackets += iface.rx_packets ?? 0;
    network.txPackets += iface.tx_packets ?? 0;
  }
  const blockIo = { readBytes: 0, writeBytes: 0 };
  for (const entry of raw.blkio_stats?.io_service_bytes_recursive ?? []) {
    if (entry.op?.toLowerCase() === "read") blockIo.readBytes += entry.value ?? 0;
    if (entry.op?.toLowerCase() === "write") blockIo.writeBytes += entry.value ?? 0;
  }
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    at: raw.read && !raw.read.startsWith("0001") ? new Date(raw.read).toISOString() : new Date().toISOString(),
    cpu: { percent: round(percent), percentOfPlan: round(percent / vcpus), vcpus, totalUsageNs: cpuTotal },
    memory: { usageBytes: usage, limitBytes: limit, percent: limit ? round((usage / limit) * 100) : 0 },
    network,
    blockIo,
    pids: { current: raw.pids_stats?.current ?? 0, limit: raw.pids_stats?.limit ?? null },
  };
}
