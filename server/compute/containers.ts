import { createHash } from "node:crypto";
import type Docker from "dockerode";
import type { Config } from "../config";
import type { ReadyImage } from "./images";
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
  /** A hash of the create options: a stopped container made from other options is made again. */
  spec: "sahary.spec",
  volume: "sahary.volume",
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

const UNREACHABLE = new Set(["ECONNREFUSED", "ENOENT", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EACCES", "EHOSTUNREACH", "ENETUNREACH", "ConnectionRefused", "FailedToOpenSocket"]);

/** Whether a failed engine call means the engine is not answering (as opposed to answering with an error). */
export function engineUnavailable(error: unknown): boolean {
  const e = error as { code?: unknown; name?: unknown; message?: unknown } | null;
  if (!e || statusCode(error) !== undefined) return false;
  if (typeof e.code === "string" && UNREACHABLE.has(e.code)) return true;
  if (e.name === "AbortError" || e.name === "TimeoutError") return true;
  return typeof e.message === "string" && /socket hang up|timeout|connect/i.test(e.message);
}

export function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } })?.json;
  return typeof json?.message === "string" ? json.message : ((error as Error)?.message ?? String(error));
}

export async function inspectContainer(docker: Docker, name: string): Promise<Docker.ContainerInspectInfo | null> {
  try {
    return await docker.getContainer(name).inspect();
  } catch (error) {
    if (statusCode(error) === 404) return null;
    throw error;
  }
}

/** The engine's networks named exactly `name` (its name filter also matches substrings), oldest first. */
async function networksNamed(docker: Docker, name: string) {
  const found = await docker.listNetworks({ filters: { name: [name] } });
  return found.filter((n) => n.Name === name).sort((a, b) => Date.parse(a.Created) - Date.parse(b.Created));
}

/**
 * Tenant networks this process ensured, by engine client and name: a create on
 * a known network goes straight to the container, without the lock and the
 * engine's list. Removing a tenant network forgets it here; one removed by
 * another process shows as a 404 when the container is started (or, on engines
 * that check it then, created), and the caller forgets it and ensures it again.
 */
const knownNetworks = new WeakMap<Docker, Map<string, string>>();

/** The tenant network's id if this process ensured it on this engine (and has not removed it since). */
export function knownTenantNetwork(docker: Docker, config: Config, userId: string): string | undefined {
  return knownNetworks.get(docker)?.get(tenantNetworkName(config, userId));
}

export function forgetTenantNetwork(docker: Docker, config: Config, userId: string): void {
  knownNetworks.get(docker)?.delete(tenantNetworkName(config, userId));
}

function rememberTenantNetwork(docker: Docker, name: string, id: string): void {
  const known = knownNetworks.get(docker) ?? new Map<string, string>();
  knownNetworks.set(docker, known);
  known.set(name, id);
}

/**
 * The tenant's bridge network on this engine, by id: its containers reach each
 * other and nobody else's. Docker does not make a create-by-name atomic, so
 * callers serialise this per tenant (`serialize`). The create comes first (a
 * tenant's first instance on the host is the case that pays): with
 * CheckDuplicate the engine refuses a name it has (409), and only then are the
 * networks listed; should duplicates exist all the same, the oldest is used
 * and the unused others are removed.
 */
export async function ensureTenantNetwork(docker: Docker, config: Config, userId: string): Promise<string> {
  const name = tenantNetworkName(config, userId);
  let id: string;
  try {
    const created = await docker.createNetwork({
      Name: name,
      Driver: "bridge",
      CheckDuplicate: true,
      Internal: false,
      Options: { "com.docker.network.bridge.enable_icc": "true" },
      Labels: { [LABELS.namespace]: config.docker.namespace, [LABELS.owner]: userId, [LABELS.kind]: "tenant-network" },
    });
    id = created.id;
  } catch (error) {
    if (statusCode(error) !== 409) throw error;
    const [kept, ...duplicates] = await networksNamed(docker, name);
    if (!kept) throw new Error(`network ${name} was refused as existing but is not there`);
    for (const duplicate of duplicates) await ignoreStatus(docker.getNetwork(duplicate.Id).remove(), 403, 404, 409);
    id = kept.Id;
  }
  rememberTenantNetwork(docker, name, id);
  return id;
}

/** Removes the tenant's network when none of its containers remain on it; a network in use is left alone. */
export async function removeTenantNetwork(docker: Docker, config: Config, userId: string): Promise<boolean> {
  forgetTenantNetwork(docker, config, userId);
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

export type ContainerInputs = {
  network: string;
  publishAddress: string;
  image: ReadyImage;
  /** Folders the catalogue entry says the image writes to besides /tmp. */
  writablePaths: readonly string[];
  volumes: ReadonlyArray<{ dockerName: string; mountPath: string }>;
  /** The priority's freeze group on engines that take one (server/compute/freezer.ts). */
  cgroupParent: string | null;
};

/** Whether `path` is `base` or inside it. */
const within = (path: string, base: string) => path === base || path.startsWith(base === "/" ? "/" : `${base}/`);

/**
 * The container an instance runs as. Hardened whatever the image says:
 *
 * - read-only root; scratch space is tmpfs (noexec, nosuid, nodev, owned by the instance user)
 *   at /tmp, at the catalogue entry's writable folders and at every VOLUME
 *   folder of the image — so a VOLUME line never makes an anonymous volume on
 *   the host's disk. Each is capped at INSTANCE_TMP_PERCENT of the plan's
 *   memory, and its pages count against the plan's memory limit;
 * - a numeric non-root user (INSTANCE_USER) instead of the image's USER;
 * - every capability dropped and none given back (a non-root process would
 *   not hold them anyway); unprivileged ports start at 0 in the container's
 *   own network namespace, so binding :80 needs no capability;
 * - no-new-privileges, a pids limit, memory == memory+swap, private IPC;
 * - the engine restarts a crashed container up to INSTANCE_RESTART_MAX times
 *   (on-failure; a stop or kill from outside is never restarted), then the
 *   reconciler reports the instance in `error`.
 *
 * The command and args are argv arrays handed to the engine as such (no
 * shell). The instance's HTTP port is published on the engine host at
 * `publishAddress` (loopback for the local engine) on a port the engine picks
 * at each start; the ingress proxy dials it. Containers cannot reach their
 * host's loopback, and Docker's rules drop traffic from one tenant's bridge to
 * another's even when addressed to a published port (tests/integration/ingress-isolation).
 */
export function containerSpec(config: Config, instance: Instance, inputs: ContainerInputs): Docker.ContainerCreateOptions {
  const httpPort = instance.httpPort === null ? null : `${instance.httpPort}/tcp`;
  const tmpfsMb = Math.max(1, Math.floor((instance.memoryMb * config.compute.tmpPercent) / 100));
  const scratch = [...new Set(["/tmp", ...inputs.writablePaths, ...inputs.image.volumePaths])]
    // A volume mounted at (or above) the folder serves it instead.
    .filter((path) => !inputs.volumes.some((volume) => within(path, volume.mountPath)))
    .sort();
  const { uid, gid } = config.compute.user;
  const spec: Docker.ContainerCreateOptions = {
    name: containerName(config, instance.id),
    Image: inputs.image.run,
    ...(instance.command ? { Entrypoint: instance.command } : {}),
    ...(instance.args ? { Cmd: instance.args } : {}),
    User: `${uid}:${gid}`,
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
      ReadonlyRootfs: true,
      // Owned by the instance user: runc gives a tmpfs over a folder the image has that folder's mode (0755 root is common), whatever mode= says.
      Tmpfs: Object.fromEntries(scratch.map((path) => [path, `rw,noexec,nosuid,nodev,size=${tmpfsMb}m,mode=1777,uid=${uid},gid=${gid}`])),
      // NoCopy: the image's files at the mount path are not copied into the volume (they would count against it, owned by the image's users).
      Mounts: inputs.volumes.map((volume) => ({ Type: "volume", Source: volume.dockerName, Target: volume.mountPath, ReadOnly: false, VolumeOptions: { NoCopy: true } }) as Docker.MountSettings),
      SecurityOpt: ["no-new-privileges:true"],
      CapDrop: ["ALL"],
      Sysctls: { "net.ipv4.ip_unprivileged_port_start": "0" },
      IpcMode: "private",
      // An init reaps zombies and forwards SIGTERM, so stop does not wait out the grace period.
      Init: true,
      Privileged: false,
      ...(inputs.cgroupParent ? { CgroupParent: inputs.cgroupParent } : {}),
      NetworkMode: inputs.network,
      RestartPolicy: config.compute.restartMax > 0 ? { Name: "on-failure", MaximumRetryCount: config.compute.restartMax } : { Name: "no" },
      LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
      ...(httpPort ? { PortBindings: { [httpPort]: [{ HostIp: inputs.publishAddress, HostPort: "" }] } } : {}),
    },
  };
  spec.Labels![LABELS.spec] = createHash("sha256").update(JSON.stringify(spec)).digest("hex").slice(0, 32);
  return spec;
}

/** What bringing a container up needs to know of it: read from the engine, or known from the spec it was just created with. */
export type MadeContainer = {
  id: string;
  name: string;
  labels: Record<string, string>;
  nanoCpus: number | undefined;
  running: boolean;
  paused: boolean;
  /** Whether it ever ran (one created and never started has not). */
  everStarted: boolean;
};

const NEVER_STARTED = "0001-01-01T00:00:00Z";

function madeFrom(info: Docker.ContainerInspectInfo): MadeContainer {
  return {
    id: info.Id,
    name: info.Name,
    labels: info.Config.Labels ?? {},
    nanoCpus: info.HostConfig.NanoCpus,
    running: info.State.Running,
    paused: info.State.Paused,
    everStarted: info.State.StartedAt !== NEVER_STARTED,
  };
}

/**
 * Returns the instance's container, creating it if no earlier attempt did. A
 * container that is not running and was made from another spec (a resize, an
 * image re-pulled, volumes re-created after a reboot, a platform upgrade) is
 * made again: its root is read-only, so nothing but scratch space is lost.
 *
 * The create comes first, so a first provision costs the engine one call (its
 * answer says all the caller needs: the spec is what was asked for); a name
 * already taken (409: an earlier or a concurrent attempt, a stopped instance)
 * is looked at then.
 */
export async function ensureContainer(docker: Docker, spec: Docker.ContainerCreateOptions): Promise<MadeContainer> {
  const name = spec.name!;
  const created = await createNamed(docker, spec);
  if (created) return created;
  const existing = await appeared(docker, name);
  if (existing.State.Running || existing.Config.Labels?.[LABELS.spec] === spec.Labels![LABELS.spec]) return madeFrom(existing);
  await removeContainer(docker, existing.Id);
  // 409 again: a concurrent attempt created it under the same name meanwhile; use that one.
  return (await createNamed(docker, spec)) ?? madeFrom(await appeared(docker, name));
}

/** Creates the container; null when the name is taken (409). */
async function createNamed(docker: Docker, spec: Docker.ContainerCreateOptions): Promise<MadeContainer | null> {
  try {
    const container = await docker.createContainer(spec);
    return { id: container.id, name: `/${spec.name}`, labels: { ...spec.Labels }, nanoCpus: spec.HostConfig?.NanoCpus, running: false, paused: false, everStarted: false };
  } catch (error) {
    const code = statusCode(error);
    if (code === 409) return null;
    if (code === 400) throw new PermanentFailure(`the engine refused the container: ${engineMessage(error).slice(0, 200)}`);
    throw error;
  }
}

/** The container named `name`: after a 409 the engine may hold the name for a create still in flight, so it gets a moment to appear. */
async function appeared(docker: Docker, name: string): Promise<Docker.ContainerInspectInfo> {
  for (let waited = 0; ; waited += 50) {
    const info = await inspectContainer(docker, name);
    if (info) return info;
    if (waited >= 5000) throw new Error(`container ${name} did not appear after its creation`);
    await Bun.sleep(50);
  }
}

/** Brings an existing container to running (starting or unpausing it); the one inspect after gives its address and ports. */
export async function ensureRunning(docker: Docker, made: Pick<MadeContainer, "id" | "running" | "paused">): Promise<Docker.ContainerInspectInfo> {
  const container = docker.getContainer(made.id);
  if (made.paused) await container.unpause();
  else if (!made.running) await ignoreStatus(container.start(), 304);
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

/** The publish address of an engine on the proxy's own host. */
const LOOPBACK = "127.0.0.1";

/**
 * `ip:port` where the proxy reaches the instance's HTTP port in this run of
 * the container (its address and published port change at every start); null
 * when there is none (no HTTP port, or the container is not running).
 */
export function upstreamOf(info: Docker.ContainerInspectInfo, httpPort: number | null, publishAddress: string): string | null {
  if (httpPort === null || !info.State.Running) return null;
  // An engine that publishes on loopback shares its host with the proxy: the proxy dials the container on its tenant
  // network, without the engine's userland proxy in between, which costs a connection per request (servers that close
  // every connection, as BusyBox httpd does, paid ~4 ms each and a third of their throughput). Containers still reach
  // only their own tenant's network; a remote engine's containers are dialled on their published port.
  if (publishAddress === LOOPBACK) {
    const ip = ipAddressOf(info);
    if (ip) return `${ip}:${httpPort}`;
  }
  const binding = info.NetworkSettings.Ports?.[`${httpPort}/tcp`]?.[0];
  if (!binding?.HostPort) return null;
  const ip = binding.HostIp && binding.HostIp !== "0.0.0.0" ? binding.HostIp : publishAddress;
  return `${ip}:${binding.HostPort}`;
}

/** Where instances on this engine publish their HTTP port (INGRESS_UPSTREAM_ADDRESSES; loopback by default). */
export function publishAddressOf(config: Config, host: { name: string }): string {
  return config.ingress.publishAddresses[host.name] ?? LOOPBACK;
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
