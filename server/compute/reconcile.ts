import type Docker from "dockerode";
import { and, eq, inArray, lt, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { hosts, instanceActions, instances } from "../../db/schema";
import type { Queues } from "../../workers/queues";
import type { Config } from "../config";
import { recordEvent } from "../events/outbox";
import type { RouteNotifier } from "../ingress/sync";
import type { Logger } from "../log";
import { containerName, inspectContainer, LABELS, publishAddressOf, removeContainer, removeTenantNetwork, stopContainer, upstreamOf } from "./containers";
import type { Engines } from "./engines";
import { getHost, syncHosts, type Host } from "./hosts";
import { actionJobId, changeState, enqueueAction, lockInstance, type Instance } from "./instances";
import { failAction, tenantNetworkLock } from "./lifecycle";
import { reconcileVolumes } from "./volumes/worker";
import { LIVE_STATES, type InstanceState } from "./states";

export type ReconcileDeps = { db: Database; config: Config; engines: Engines; log: Logger; queues: Queues; ingress: { routes: RouteNotifier } };

const RECONCILER = { actorType: "system", actorId: null };

/** 128 + SIGTERM: the init forwarded a SIGTERM and the program ended on it, as a `docker stop` does. */
const EXIT_SIGTERM = 143;

/**
 * What the container says the instance's state should be, and why; null when
 * it agrees. A container the engine is restarting after a crash (its
 * on-failure policy) is still up. One that ended on SIGTERM or with code 0
 * was stopped (from outside the platform, or by itself): `stopped`, not
 * `error`. Anything else that ended it is an error with the reason.
 */
export function drift(instance: Pick<Instance, "state">, info: Docker.ContainerInspectInfo | null): { to: InstanceState; reason: string; at?: Date } | null {
  if (!info) return { to: "error", reason: "container vanished" };
  const state = info.State;
  if (state.Running && state.Paused) return instance.state === "paused" ? null : { to: "paused", reason: "container was paused outside the platform" };
  if (state.Running || state.Restarting) return instance.state === "running" ? null : { to: "running", reason: "container was unpaused outside the platform" };
  // The instance stopped when its container did, not when the platform noticed (after an engine restart, minutes
  // later): billing counts it so.
  const finished = Date.parse(state.FinishedAt);
  const at = Number.isFinite(finished) && finished > 0 ? new Date(finished) : undefined;
  const restarts = info.RestartCount ? `, after ${info.RestartCount} automatic restart${info.RestartCount === 1 ? "" : "s"}` : "";
  if (state.OOMKilled && state.ExitCode !== EXIT_SIGTERM && state.ExitCode !== 0)
    return { to: "error", reason: `container was killed for exceeding its memory limit (exit code ${state.ExitCode}${restarts})`, at };
  if (state.ExitCode === EXIT_SIGTERM) return { to: "stopped", reason: "container was stopped outside the platform (SIGTERM, exit code 143)", at };
  if (state.ExitCode === 0) return { to: "stopped", reason: "container exited (exit code 0)", at };
  return { to: "error", reason: `container died (exit code ${state.ExitCode}${state.Error ? `: ${state.Error}` : ""}${restarts})`, at };
}

/**
 * Counts an out-of-memory kill inside the instance (PID 1 or any child: the
 * engine's `oom` event fires for either), shown to its owner as `oom`. The
 * event's job id makes a replayed event count once.
 */
export async function recordOomKill(deps: Pick<ReconcileDeps, "db" | "log">, instanceId: string, at: Date): Promise<void> {
  await deps.db.transaction(async (tx) => {
    const [updated] = await tx
      .update(instances)
      .set({ oomKills: sql`${instances.oomKills} + 1`, lastOomKilledAt: sql`greatest(${instances.lastOomKilledAt}, ${at.toISOString()}::timestamptz)` })
      .where(and(eq(instances.id, instanceId), ne(instances.state, "deleted")))
      .returning();
    if (!updated) return;
    // Its owner hears of each kill (the container may live on when a child was killed); a death it causes is instance.failed.
    await recordEvent(tx, {
      type: "instance.oom_killed",
      userId: updated.userId,
      occurredAt: at,
      data: {
        instanceId,
        name: updated.name,
        memoryMb: updated.memoryMb,
        reason: `a process in the instance was killed for exceeding its ${updated.memoryMb} MB memory limit (${updated.oomKills} so far)`,
      },
    });
    deps.log.warn("out-of-memory kill in instance", { instanceId, kills: updated.oomKills });
  });
}

/**
 * Corrects one instance that should be up (running or paused) from what its
 * engine reports: died or vanished → stopped/error with the reason. Instances
 * with an action in flight belong to the lifecycle worker and are left alone.
 * Returns the state it moved the instance to, if any; the ingress proxy's
 * route follows (a dead container's visitors get the edge's answer).
 */
export async function reconcileInstance(deps: ReconcileDeps, instanceId: string): Promise<InstanceState | null> {
  const { db, config } = deps;
  const [instance] = await db.select().from(instances).where(eq(instances.id, instanceId));
  if (!instance || !LIVE_STATES.includes(instance.state)) return null;
  const host = await getHost(db, instance.hostId);
  const info = await inspectContainer(deps.engines.get(host.endpoint), containerName(config, instance.id));
  const observed = drift(instance, info);
  if (!observed) return null;

  const moved = await db.transaction(async (tx) => {
    const locked = await lockInstance(tx, instanceId, null);
    // Re-checked under the lock: the state may have moved since the engine was asked.
    if (locked.state !== instance.state) return null;
    const [open] = await tx
      .select({ id: instanceActions.id })
      .from(instanceActions)
      .where(and(eq(instanceActions.instanceId, instanceId), inArray(instanceActions.status, ["pending", "running"])));
    if (open) return null;
    const set =
      observed.to === "running" || observed.to === "paused"
        ? { upstream: info ? upstreamOf(info, locked.httpPort, publishAddressOf(config, host)) : null }
        : { ipAddress: null, upstream: null, ...(info ? {} : { containerId: null }) };
    await changeState(tx, locked, observed.to, {
      reason: observed.reason,
      by: RECONCILER,
      set,
      ...(observed.at ? { at: observed.at } : {}),
    });
    deps.log.warn("instance reconciled", { instanceId, from: locked.state, to: observed.to, reason: observed.reason });
    return observed.to;
  });
  if (moved) await deps.ingress.routes.changed(instanceId, { waitMs: 2000 });
  return moved;
}

/** States whose container must not run. */
const HELD_DOWN: readonly InstanceState[] = ["stopped", "error"];

/**
 * Stops a container that runs for an instance the platform holds stopped or
 * failed. The engine starts such containers on its own: on its restart it
 * brings back every container whose on-failure policy its own shutdown
 * triggered, after the platform had recorded them stopped. Left running, it
 * would serve, use capacity the instance no longer holds, and go unbilled; the
 * recorded state wins, and its owner starts it again. An instance with an
 * action in flight belongs to the lifecycle worker.
 */
async function stopStrayContainer(deps: ReconcileDeps, host: Host, instanceId: string): Promise<boolean> {
  const { db, config } = deps;
  return db.transaction(async (tx) => {
    const locked = await lockInstance(tx, instanceId, null);
    if (!HELD_DOWN.includes(locked.state)) return false;
    const [open] = await tx
      .select({ id: instanceActions.id })
      .from(instanceActions)
      .where(and(eq(instanceActions.instanceId, instanceId), inArray(instanceActions.status, ["pending", "running"])));
    if (open) return false;
    // Under the instance's lock: a start asked for meanwhile waits for the stop, then starts it again.
    await stopContainer(deps.engines.get(host.endpoint), config, containerName(config, instanceId));
    deps.log.warn("stray container stopped", { instanceId, state: locked.state });
    return true;
  });
}

/**
 * One full pass over every active host: refresh host facts, reconcile every
 * instance that should be up, remove containers and networks of this
 * namespace that no live instance owns, and recover actions whose job was lost.
 */
export async function reconcileAll(deps: ReconcileDeps, opts: { staleActionMs?: number } = {}) {
  const { log } = deps;
  const hostRows = await syncHosts(deps);
  let reconciled = 0;
  let orphansRemoved = 0;
  let volumesReattached = 0;
  for (const host of hostRows.filter((h) => h.status === "active")) {
    try {
      // Volumes first: after a reboot their files must be attached before anything starts.
      volumesReattached += (await reconcileVolumes(deps, host)).reattached;
      const found = await reconcileHost(deps, host);
      reconciled += found.reconciled;
      orphansRemoved += found.orphansRemoved;
    } catch (error) {
      // One engine failing must not stop the pass over the others.
      log.warn("host reconciliation failed", { host: host.name, error: (error as Error).message });
    }
  }
  const actions = await recoverStaleActions(deps, opts.staleActionMs ?? 2 * 60_000);
  return { hosts: hostRows.length, reconciled, orphansRemoved, volumesReattached, ...actions };
}

async function reconcileHost(deps: ReconcileDeps, host: Host) {
  const { db, config, log } = deps;
  let reconciled = 0;
  let orphansRemoved = 0;
  const docker = deps.engines.get(host.endpoint);
  const containers = await docker.listContainers({ all: true, filters: { label: [`${LABELS.namespace}=${config.docker.namespace}`] } });
  // Every host record on this engine: two names for one engine must not take each other's containers for orphans.
  const sameEngine = (await db.select({ id: hosts.id }).from(hosts).where(eq(hosts.endpoint, host.endpoint))).map((h) => h.id);
  const hostInstances = await db
    .select()
    .from(instances)
    .where(and(inArray(instances.hostId, sameEngine), ne(instances.state, "deleted")));
  const owned = new Map(hostInstances.map((i) => [i.id, i]));

  for (const instance of hostInstances) {
    const container = containers.find((c) => c.Labels[LABELS.instance] === instance.id);
    if (HELD_DOWN.includes(instance.state)) {
      if (container && container.State !== "exited" && container.State !== "created" && container.State !== "dead" && (await stopStrayContainer(deps, host, instance.id))) reconciled += 1;
      continue;
    }
    if (!LIVE_STATES.includes(instance.state)) continue;
    const agrees = container && (instance.state === "running" ? container.State === "running" || container.State === "restarting" : container.State === "paused");
    if (!agrees && (await reconcileInstance(deps, instance.id))) reconciled += 1;
  }

  for (const container of containers) {
    const instanceId = container.Labels[LABELS.instance];
    // Only containers this platform made for an instance; the name check guards against a copied label.
    if (!instanceId || !container.Names.includes(`/${containerName(config, instanceId)}`)) continue;
    if (owned.has(instanceId)) continue;
    await removeContainer(docker, container.Id);
    orphansRemoved += 1;
    log.warn("orphan container removed", { host: host.name, container: container.Names[0], instanceId });
  }

  const networks = await docker.listNetworks({ filters: { label: [`${LABELS.namespace}=${config.docker.namespace}`, `${LABELS.kind}=tenant-network`] } });
  const owners = new Set(hostInstances.map((i) => i.userId));
  for (const network of networks) {
    const owner = network.Labels?.[LABELS.owner];
    if (owner && !owners.has(owner)) await tenantNetworkLock(db, owner, host.id)(() => removeTenantNetwork(docker, config, owner)).catch(() => false);
  }
  return { reconciled, orphansRemoved };
}

/**
 * Actions still pending or running after `olderThanMs`: the job is enqueued
 * again when it is missing (a lost enqueue), and the action is failed when its
 * job has ended without finishing it (a worker killed on the last attempt).
 */
export async function recoverStaleActions(deps: ReconcileDeps, olderThanMs: number) {
  const stale = await deps.db
    .select({ id: instanceActions.id })
    .from(instanceActions)
    .where(and(inArray(instanceActions.status, ["pending", "running"]), lt(instanceActions.createdAt, new Date(Date.now() - olderThanMs))))
    .limit(500);
  let requeued = 0;
  let failed = 0;
  const queue = deps.queues.queue("lifecycle");
  for (const { id } of stale) {
    const job = await queue.getJob(actionJobId(id));
    const state = job ? await job.getState() : "missing";
    if (state === "missing" || state === "unknown") {
      await enqueueAction(deps, id);
      requeued += 1;
    } else if (state === "completed" || state === "failed") {
      await failAction(deps.db, id, `the lifecycle job ended without finishing the action${job?.failedReason ? `: ${job.failedReason}` : ""}`);
      failed += 1;
    }
  }
  return { requeued, failedActions: failed };
}
