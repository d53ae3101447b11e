import type Docker from "dockerode";
import type { Config } from "../config";
import type { Instance } from "./instances";

/**
 * Everything the platform asks of a Docker engine about one instance. Names
 * are deterministic (namespace + instance id) so any retry finds what an
 * earlier attempt made instead of making a second one.
 */

export const LABELS = {
  namespace: "sahary.namespace",
  instance: "sahary.instance",
  owner: "sahary.owner",
  kind: "sahary.kind",
} as const;

const MIB = 1024 * 1024;

/** Runs `work` while holding a lock that other processes honour (see lifecycle.ts). */
export type Serialize = <T>(work: () => Promise<T>) => Promise<T>;

/** A failure retrying cannot fix (bad image, a request the engine refuses). */
export class PermanentFailure extends Error {
  override name = "PermanentFailure";
}

/** The CPU the instance may use now (thousandths of a vCPU): the power policy's throttle, or its plan's. */
export const cpuLimitMillis = (instance: Pick<Instance, "cpuMillis" | "cpuThrottleMillis">) => instance.cpuThrottleMillis ?? instance.cpuMillis;

export const containerName = (config: Config, instanceId: string) => `${config.docker.namespace}-${instanceId}`;
export const tenantNetworkName = (config: Config, userId: string) => `${config.docker.namespace}-tenant-${userId}`;

export function statusCode(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown })?.statusCode;
  return typeof code === "number" ? code : undefined;
}

function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } })?.json;
  return typeof json?.message === "string" ? json.message : (error as Error)?.message ?? String(error);
}

export async function inspectContainer(docker: Docker, name: string): Promise<Docker.ContainerInspectInfo | null> {
  try {
    return await docker.getContainer(name).inspect();
  } catch (error) {
    if (statusCode(error) === 404) return null;
    throw error;
  }
}

/**
 * Makes sure the image is on the engine. Never waits on a registry longer than
 * IMAGE_PULL_TIMEOUT_MS, and with IMAGE_PULL=never does not try at all.
 */
export async function ensureImage(docker: Docker, config: Config, reference: string): Promise<void> {
  try {
    await docker.getImage(reference).inspect();
    return;
  } catch (error) {
    if (statusCode(error) !== 404) throw error;
  }
  if (config.compute.imagePull === "never") {
    throw new PermanentFailure(`image ${reference} is not present on this host and pulling is disabled (IMAGE_PULL=never)`);
  }
  try {
    const signal = AbortSignal.timeout(config.compute.imagePullTimeoutMs);
    const stream = await docker.pull(reference, { abortSignal: signal });
    await new Promise<void>((resolve, reject) => {
      signal.addEventListener("abort", () => reject(new Error(`no progress within ${config.compute.imagePullTimeoutMs} ms`)), { once: true });
      docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve()));
    });
  } catch (error) {
    throw new PermanentFailure(`image ${reference} is not present on this host and could not be pulled: ${engineMessage(error).slice(0, 200)}`);
  }
}

/** The engine's networks named exactly `name` (its name filter also matches substrings), oldest first. */
async function networksNamed(docker: Docker, name: string) {
  const found = await docker.listNetworks({ filters: { name: [name] } });
  return found.filter((n) => n.Name === name).sort((a, b) => Date.parse(a.Created) - Date.parse(b.Created));
}

/**
 * The tenant's bridge network on this engine, by id: its containers reach each
 * other and nobody else's. Docker does not make a create-by-name atomic, so
 * callers serialise this per tenant (`serialize`); should duplicates exist all
 * the same, the oldest is used and the unused others are removed.
 */
export async function ensureTenantNetwork(docker: Docker, config: Config, userId: string): Promise<string> {
  const name = tenantNetworkName(config, userId);
  let networks = await networksNamed(docker, name);
  if (!networks.length) {
    await docker.createNetwork({
      Name: name,
      Driver: "bridge",
      CheckDuplicate: true,
      Internal: false,
      Options: { "com.docker.network.bridge.enable_icc": "true" },
      Labels: { [LABELS.namespace]: config.docker.namespace, [LABELS.owner]: userId, [LABELS.kind]: "tenant-network" },
    });
    networks = await networksNamed(docker, name);
  }
  const [kept, ...duplicates] = networks;
  if (!kept) throw new Error(`network ${name} vanished right after creation`);
  for (const duplicate of duplicates) await ignoreStatus(docker.getNetwork(duplicate.Id).remove(), 403, 404, 409);
  return kept.Id;
}

/** Removes the tenant's network when none of its containers remain on it; a network in use is left alone. */
export async function removeTenantNetwork(docker: Docker, config: Config, userId: string): Promise<boolean> {
  let removed = true;
  for (const { Id } of await networksNamed(docker, tenantNetworkName(config, userId))) {
    const network = docker.getNetwork(Id);
    try {
      const info = (await network.inspect()) as { Containers?: Record<string, unknown> };
      if (Object.keys(info.Containers ?? {}).length > 0) {
        removed = false;
        continue;
      }
      await network.remove();
    } catch (error) {
      const code = statusCode(error);
      if (code === 404) continue;
      // 403/409: a container attached meanwhile; the network is still needed.
      if (code === 403 || code === 409) {
        removed = false;
        continue;
      }
      throw error;
    }
  }
  return removed;
}

/**
 * The instance's HTTP port is published on the engine host at `publishAddress`
 * (loopback for the local engine, the host's private address for a remote
 * one) on a port the engine picks at each start; the ingress proxy dials it.
 * Containers cannot reach their host's loopback, and Docker's rules drop
 * traffic from one tenant's bridge to another's even when it is addressed to
 * a published port, so tenants stay isolated (tests/integration/ingress-isolation).
 */
export function containerSpec(
  config: Config,
  instance: Instance,
  opts: { network: string; capAdd: string[]; diskLimit: boolean; publishAddress: string },
): Docker.ContainerCreateOptions {
  const httpPort = instance.httpPort === null ? null : `${instance.httpPort}/tcp`;
  return {
    name: containerName(config, instance.id),
    Image: instance.imageReference,
    ...(httpPort ? { ExposedPorts: { [httpPort]: {} } } : {}),
    Hostname: instance.name,
    Env: Object.entries(instance.env).map(([key, value]) => `${key}=${value}`),
    Labels: {
      [LABELS.namespace]: config.docker.namespace,
      [LABELS.instance]: instance.id,
      [LABELS.owner]: instance.userId,
      [LABELS.kind]: "instance",
    },
    HostConfig: {
      Memory: instance.memoryMb * MIB,
      // Equal to Memory: no swap on top of the plan's memory.
      MemorySwap: instance.memoryMb * MIB,
      NanoCpus: cpuLimitMillis(instance) * 1_000_000,
      PidsLimit: config.compute.pidsLimit,
      SecurityOpt: ["no-new-privileges:true"],
      CapDrop: ["ALL"],
      CapAdd: opts.capAdd,
      // An init reaps zombies and forwards SIGTERM, so stop does not wait out the grace period.
      Init: true,
      Privileged: false,
      NetworkMode: opts.network,
      // The platform, not the engine, decides what runs: a crash is reported, not silently restarted.
      RestartPolicy: { Name: "no" },
      LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
      ...(httpPort ? { PortBindings: { [httpPort]: [{ HostIp: opts.publishAddress, HostPort: "" }] } } : {}),
      ...(opts.diskLimit ? { StorageOpt: { size: `${instance.diskGb}G` } } : {}),
    },
  };
}

const STORAGE_OPT_REFUSED = /storage-?opt|storage option|quota|size option/i;

/**
 * Returns the instance's container, creating it if no earlier attempt did.
 * With a disk limit requested on an engine that refuses it, creates it without
 * and says so (`diskLimitEnforced: false`).
 */
export async function ensureContainer(
  docker: Docker,
  config: Config,
  instance: Instance,
  opts: { capAdd: string[]; tryDiskLimit: boolean; serialize: Serialize; publishAddress: string },
): Promise<{ info: Docker.ContainerInspectInfo; diskLimitEnforced: boolean; diskLimitRefused: boolean }> {
  const name = containerName(config, instance.id);
  const existing = await inspectContainer(docker, name);
  if (existing) return { info: existing, diskLimitEnforced: Boolean(existing.HostConfig.StorageOpt?.size), diskLimitRefused: false };

  await ensureImage(docker, config, instance.imageReference);
  let diskLimitRefused = false;
  const create = async (diskLimit: boolean) => {
    const network = await opts.serialize(() => ensureTenantNetwork(docker, config, instance.userId));
    await docker.createContainer(containerSpec(config, instance, { network, capAdd: opts.capAdd, diskLimit, publishAddress: opts.publishAddress }));
  };
  try {
    try {
      await create(opts.tryDiskLimit);
    } catch (error) {
      if (opts.tryDiskLimit && STORAGE_OPT_REFUSED.test(engineMessage(error)) && statusCode(error) !== 409) {
        diskLimitRefused = true;
        await create(false);
      } else if (statusCode(error) === 404 && /network/i.test(engineMessage(error))) {
        // The tenant's network was removed between ensuring it and creating (its last other instance was deleted).
        await create(opts.tryDiskLimit);
      } else {
        throw error;
      }
    }
  } catch (error) {
    // 409: a concurrent attempt created it under the same name; use that one.
    if (statusCode(error) !== 409) {
      if (statusCode(error) === 400) throw new PermanentFailure(`the engine refused the container: ${engineMessage(error).slice(0, 200)}`);
      throw error;
    }
  }
  // After a 409 the engine may hold the name for a create still in flight: give it a moment to appear.
  for (let waited = 0; ; waited += 50) {
    const info = await inspectContainer(docker, name);
    if (info) return { info, diskLimitEnforced: Boolean(info.HostConfig.StorageOpt?.size), diskLimitRefused };
    if (waited >= 5000) throw new Error(`container ${name} did not appear after its creation`);
    await Bun.sleep(50);
  }
}

/** Brings an existing container to running (starting or unpausing it). */
export async function ensureRunning(docker: Docker, info: Docker.ContainerInspectInfo): Promise<Docker.ContainerInspectInfo> {
  const container = docker.getContainer(info.Id);
  if (info.State.Paused) await container.unpause();
  else if (!info.State.Running) await ignoreStatus(container.start(), 304);
  return container.inspect();
}

export async function stopContainer(docker: Docker, config: Config, name: string): Promise<void> {
  const info = await inspectContainer(docker, name);
  if (!info) return;
  const container = docker.getContainer(info.Id);
  // A frozen process cannot act on SIGTERM.
  if (info.State.Paused) await ignoreStatus(container.unpause(), 409);
  if (info.State.Running) await ignoreStatus(container.stop({ t: config.compute.stopTimeoutS }), 304, 404);
}

export async function removeContainer(docker: Docker, name: string): Promise<void> {
  await ignoreStatus(docker.getContainer(name).remove({ force: true, v: true }), 404);
}

/**
 * `ip:port` where the engine published the instance's HTTP port in this run
 * of the container (the port changes at every start); null when nothing is
 * published (no HTTP port, or the container is not running).
 */
export function upstreamOf(info: Docker.ContainerInspectInfo, httpPort: number | null, publishAddress: string): string | null {
  if (httpPort === null || !info.State.Running) return null;
  const binding = info.NetworkSettings.Ports?.[`${httpPort}/tcp`]?.[0];
  if (!binding?.HostPort) return null;
  const ip = binding.HostIp && binding.HostIp !== "0.0.0.0" ? binding.HostIp : publishAddress;
  return `${ip}:${binding.HostPort}`;
}

/** Where instances on this engine publish their HTTP port (INGRESS_UPSTREAM_ADDRESSES; loopback by default). */
export function publishAddressOf(config: Config, host: { name: string }): string {
  return config.ingress.publishAddresses[host.name] ?? "127.0.0.1";
}

/** The address on the tenant network, the container's only network. */
export function ipAddressOf(info: Docker.ContainerInspectInfo): string | null {
  return Object.values(info.NetworkSettings.Networks ?? {})[0]?.IPAddress || null;
}

export async function ignoreStatus<T>(call: Promise<T>, ...codes: number[]): Promise<T | undefined> {
  try {
    return await call;
  } catch (error) {
    const code = statusCode(error);
    if (code !== undefined && codes.includes(code)) return undefined;
    throw error;
  }
}
