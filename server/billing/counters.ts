import { readFile } from "node:fs/promises";
import type Docker from "dockerode";
import { containerName, statusCode } from "../compute/containers";
import { summarizeStats } from "../compute/stats";
import { freezeGroupOf } from "../compute/freezer";
import type { InstancePriority } from "../compute/states";
import type { Config } from "../config";

/**
 * A container's cumulative counters at one moment, as metering needs them.
 * CPU time, received and sent bytes only grow while the container lives and
 * start again from zero when it is (re)started; memory is a gauge.
 */
export type CounterSample = { containerId: string; cpuNs: number; memoryBytes: number; rxBytes: number; txBytes: number; via: "cgroup" | "docker" };

export type SampleTarget = { instanceId: string; containerId: string | null; endpoint: string; priority: InstancePriority };

// A one-shot sample answers in about a second; an engine slower than this is treated as unavailable for this tick.
const DOCKER_SAMPLE_TIMEOUT_MS = 5000;

/** The container exists but is not running: its counters say nothing about the time since the last sample. */
export class ContainerNotRunningError extends Error {
  override name = "ContainerNotRunningError";
}

/**
 * Reads the counters of one container: from its cgroup v1 files when the
 * engine is on this machine and they are visible (microseconds, no engine
 * round trip; they exist only while it runs), otherwise from the engine's
 * one-shot stats (about a second). Null when the container no longer exists;
 * throws ContainerNotRunningError when it exists and is not running, and the
 * engine's error when the engine cannot tell.
 */
export async function sampleCounters(docker: Docker, config: Config, target: SampleTarget): Promise<CounterSample | null> {
  if (target.containerId && target.endpoint.startsWith("unix://")) {
    const local = await readCgroupCounters(target.containerId, freezeGroupOf(config, target.priority));
    if (local) return local;
  }
  return readDockerCounters(docker, config, target);
}

export async function readDockerCounters(docker: Docker, config: Config, target: SampleTarget): Promise<CounterSample | null> {
  const container = docker.getContainer(target.containerId ?? containerName(config, target.instanceId));
  let raw: Docker.ContainerStats;
  try {
    raw = await container.stats({ stream: false, "one-shot": true, abortSignal: AbortSignal.timeout(DOCKER_SAMPLE_TIMEOUT_MS) } as { stream: false });
  } catch (error) {
    if (statusCode(error) === 404) return null;
    throw error;
  }
  // The engine answers for a container that is not running with zero counters read at the zero time.
  if (String((raw as { read?: unknown }).read ?? "").startsWith("0001-01-01")) throw new ContainerNotRunningError(`container of instance ${target.instanceId} is not running`);
  const stats = summarizeStats(raw, 1);
  return {
    containerId: (raw as { id?: string }).id ?? target.containerId ?? "",
    cpuNs: stats.cpu.totalUsageNs,
    memoryBytes: stats.memory.usageBytes,
    rxBytes: stats.network.rxBytes,
    txBytes: stats.network.txBytes,
    via: "docker",
  };
}

// Where dockerd puts a container's cgroups on cgroup v1: under its freeze group (the cgroup parent the platform gives
// it, server/compute/freezer.ts), else the cgroupfs driver's default parent, then the systemd driver's.
const cgroupV1Layouts = (group: string | null) => [
  ...(group ? [(controller: string, id: string) => `/sys/fs/cgroup/${controller}${group}/${id}`] : []),
  (controller: string, id: string) => `/sys/fs/cgroup/${controller}/docker/${id}`,
  (controller: string, id: string) => `/sys/fs/cgroup/${controller}/system.slice/docker-${id}.scope`,
];

/** Counters from the cgroup v1 files and the container's network namespace; null when they are not visible here. */
export async function readCgroupCounters(containerId: string, group: string | null): Promise<CounterSample | null> {
  if (!/^[0-9a-f]{64}$/.test(containerId)) return null;
  for (const layout of cgroupV1Layouts(group)) {
    const cpuDir = layout("cpuacct", containerId);
    let cpuText: string;
    try {
      cpuText = await readFile(`${cpuDir}/cpuacct.usage`, "utf8");
    } catch {
      continue;
    }
    const memoryDir = layout("memory", containerId);
    const [usageText, statText, procsText] = await Promise.all([
      readFile(`${memoryDir}/memory.usage_in_bytes`, "utf8").catch(() => "0"),
      readFile(`${memoryDir}/memory.stat`, "utf8").catch(() => ""),
      readFile(`${cpuDir}/cgroup.procs`, "utf8").catch(() => ""),
    ]);
    // Any process of the container shares its network namespace; the first is its init.
    const pid = procsText.split("\n", 1)[0]?.trim();
    const net = pid ? parseNetDev(await readFile(`/proc/${pid}/net/dev`, "utf8").catch(() => "")) : { rxBytes: 0, txBytes: 0 };
    return { containerId, cpuNs: Number(cpuText.trim()), memoryBytes: workingSetBytes(Number(usageText.trim()), statText), ...net, via: "cgroup" };
  }
  return null;
}

/** Memory in use less the reclaimable page cache, as `docker stats` reports it. */
export function workingSetBytes(usageInBytes: number, memoryStat: string): number {
  const inactive = /^total_inactive_file (\d+)$/m.exec(memoryStat) ?? /^inactive_file (\d+)$/m.exec(memoryStat);
  return Math.max(0, usageInBytes - (inactive ? Number(inactive[1]) : 0));
}

/** Received and sent bytes summed over a network namespace's interfaces, loopback excluded. */
export function parseNetDev(text: string): { rxBytes: number; txBytes: number } {
  let rxBytes = 0;
  let txBytes = 0;
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    if (line.slice(0, colon).trim() === "lo") continue;
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    rxBytes += fields[0] ?? 0;
    txBytes += fields[8] ?? 0;
  }
  return { rxBytes, txBytes };
}

/** Runs `work` over `items` with at most `limit` in flight, keeping the order of results. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  });
  await Promise.all(lanes);
  return results;
}
