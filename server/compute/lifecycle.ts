import type Docker from "dockerode";
import { and, eq, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { images, instanceActions, instancePlans, instances, plans, volumes } from "../../db/schema";
import type { Config } from "../config";
import type { RouteNotifier } from "../ingress/sync";
import type { Logger } from "../log";
import {
  containerName,
  containerSpec,
  ensureContainer,
  ensureRunning,
  ensureTenantNetwork,
  forgetTenantNetwork,
  inspectContainer,
  knownTenantNetwork,
  ipAddressOf,
  LABELS,
  type MadeContainer,
  PermanentFailure,
  publishAddressOf,
  removeContainer,
  removeTenantNetwork,
  statusCode,
  stopContainer,
  cpuLimitMillis,
  upstreamOf,
  type Serialize,
} from "./containers";
import type { Engines } from "./engines";
import { planSegment, planTerms } from "./catalogue";
import { getHost, type Host } from "./hosts";
import { cgroupParentOf, thawWhenPausesSettled } from "./freezer";
import { ensureCatalogueImage, ensureRegistryImage, type PullProgress, type ReadyImage } from "./images";
import { changeState, lockInstance, type Action, type Instance } from "./instances";
import { ACTION_OUTCOME, ACTION_RULES, type InstanceState } from "./states";
import { prepareInstanceVolumes } from "./volumes/worker";
import { removeVolumeStorage } from "./volumes/storage";

export type LifecycleDeps = { db: Database; config: Config; engines: Engines; log: Logger; ingress: { routes: RouteNotifier } };

/** Actions that take a serving instance down: its route goes to the edge before the container stops answering. */
const TAKES_DOWN: readonly Action["kind"][] = ["pause", "stop", "restart", "delete"];
/** How long an action waits for the proxy before it goes ahead regardless. */
const ROUTE_WAIT_MS = 2000;
/** Pull progress is written at most this often. */
const PROGRESS_EVERY_MS = 500;

type Tx = Parameters<Parameters<Database["transaction"]>[0]>[0];
/** What a successful action records with its outcome: instance columns, and other rows in the same transaction. */
type Effect = { set?: Partial<typeof instances.$inferInsert>; after?: (tx: Tx, instance: Instance) => Promise<void> };

/**
 * Carries out one action against the instance's engine. Safe to run any number
 * of times, concurrently or after a crash at any point: each step looks at
 * what exists (by deterministic container name) before acting, and every state
 * change is a checked transition under the instance's row lock.
 *
 * A failure retrying cannot fix, or any failure on the final attempt, fails the
 * action and (for actions with an in-between state) puts the instance in
 * `error` with the reason; other failures are thrown so the job is retried.
 *
 * The ingress proxy follows: before an action takes a serving instance down,
 * its route is switched to the platform's edge (a paused container would
 * accept connections and never answer); after the outcome is committed, the
 * route is brought in line again (the container's new published port, or the
 * edge's answer). The proxy never blocks the action for long, nor fails it.
 */
export async function executeAction(deps: LifecycleDeps, actionId: string, opts: { finalAttempt: boolean }): Promise<{ status: "succeeded" | "failed" | "already-finished"; error?: string }> {
  const claimed = await claimAction(deps.db, actionId);
  if (!claimed) return { status: "already-finished" };
  const { action, instance, host } = claimed;
  const docker = deps.engines.get(host.endpoint);
  const log = deps.log.child({ actionId, instanceId: instance.id, kind: action.kind });
  const routes = deps.ingress.routes;
  if (TAKES_DOWN.includes(action.kind)) await routes.changed(instance.id, { waitMs: ROUTE_WAIT_MS });
  // A new instance's address answers "starting" meanwhile; nothing to wait for.
  else if (action.kind === "create") void routes.changed(instance.id);
  // Anything but a pause must not run into a freeze group the emergency left frozen (a kill or a new process would wait
  // on it); a pause releases the group once it has landed, below.
  const pausing = action.kind === "pause";
  if (!pausing) await releaseFreezeGroup(deps, instance);
  let effect: Effect;
  try {
    effect = await perform(deps, docker, host, action, instance);
  } catch (error) {
    if (!(error instanceof PermanentFailure) && !opts.finalAttempt) throw error;
    const message = (error as Error).message;
    log.warn("lifecycle action failed", { error: message });
    await failAction(deps.db, actionId, message);
    if (pausing) await releaseFreezeGroup(deps, instance);
    await routes.changed(instance.id, { waitMs: ROUTE_WAIT_MS });
    return { status: "failed", error: message };
  }
  await completeAction(deps.db, actionId, effect);
  if (pausing) await releaseFreezeGroup(deps, instance);
  await routes.changed(instance.id, { waitMs: ROUTE_WAIT_MS });
  log.info("lifecycle action succeeded");
  return { status: "succeeded" };
}

/**
 * Thaws the instance's freeze group if the power emergency left it frozen and
 * no pause on the priority is open any more: the last pause to land releases
 * it, and so does any other action before it would wait on it (a delete that
 * cancelled a pending pause among them).
 */
async function releaseFreezeGroup(deps: LifecycleDeps, instance: Instance): Promise<void> {
  if (await thawWhenPausesSettled(deps, instance.priority)) deps.log.info("freeze group thawed: no pause on it is open", { priority: instance.priority });
}

/** Marks the action running (counting the attempt) and, for a create, moves the instance to provisioning. */
async function claimAction(db: Database, actionId: string): Promise<{ action: Action; instance: Instance; host: Host } | null> {
  return db.transaction(async (tx) => {
    const [found] = await tx.select({ instanceId: instanceActions.instanceId }).from(instanceActions).where(eq(instanceActions.id, actionId));
    if (!found) return null;
    let instance = await lockInstance(tx, found.instanceId, null);
    const [action] = await tx.select().from(instanceActions).where(eq(instanceActions.id, actionId));
    if (!action || action.status === "succeeded" || action.status === "failed") return null;
    const [claimed] = await tx
      .update(instanceActions)
      .set({ status: "running", startedAt: action.startedAt ?? new Date(), attempts: action.attempts + 1 })
      .where(eq(instanceActions.id, actionId))
      .returning();
    if (action.kind === "create" && instance.state === "pending") {
      instance = await changeState(tx, instance, "provisioning", { reason: action.reason, by: action, actionId });
    }
    return { action: claimed!, instance, host: await getHost(tx, instance.hostId) };
  });
}

async function completeAction(db: Database, actionId: string, effect: Effect): Promise<void> {
  await db.transaction(async (tx) => {
    const [found] = await tx.select({ instanceId: instanceActions.instanceId }).from(instanceActions).where(eq(instanceActions.id, actionId));
    const instance = await lockInstance(tx, found!.instanceId, null);
    const [action] = await tx.select().from(instanceActions).where(eq(instanceActions.id, actionId));
    // A concurrent run of the same job finished it first.
    if (action!.status !== "running") return;
    const outcome = ACTION_OUTCOME[action!.kind] ?? instance.state;
    let current = instance;
    if (instance.state !== outcome) {
      current = await changeState(tx, instance, outcome, { reason: action!.reason, by: action!, actionId, set: effect.set });
    } else if (effect.set) {
      [current] = (await tx.update(instances).set(effect.set).where(eq(instances.id, instance.id)).returning()) as [Instance];
    }
    await effect.after?.(tx, current);
    await tx.update(instanceActions).set({ status: "succeeded", error: null, finishedAt: new Date() }).where(eq(instanceActions.id, actionId));
  });
}

/** Fails the action; an instance left in an in-between state goes to `error` with the reason. */
export async function failAction(db: Database, actionId: string, message: string): Promise<void> {
  await db.transaction(async (tx) => {
    const [found] = await tx.select({ instanceId: instanceActions.instanceId }).from(instanceActions).where(eq(instanceActions.id, actionId));
    if (!found) return;
    const instance = await lockInstance(tx, found.instanceId, null);
    const [action] = await tx.select().from(instanceActions).where(eq(instanceActions.id, actionId));
    if (action!.status === "succeeded" || action!.status === "failed") return;
    await tx
      .update(instanceActions)
      .set({ status: "failed", error: message.slice(0, 1000), finishedAt: new Date() })
      .where(eq(instanceActions.id, actionId));
    const kind = action!.kind;
    const during: InstanceState[] = kind === "create" ? ["pending", "provisioning"] : kind === "resize" ? [] : [ACTION_RULES[kind].during].filter((s) => s !== null);
    if (during.includes(instance.state)) {
      await changeState(tx, instance, "error", { reason: `${action!.kind} failed: ${message}`.slice(0, 1000), by: action!, actionId });
    }
  });
}

async function perform(deps: LifecycleDeps, docker: Docker, host: Host, action: Action, instance: Instance): Promise<Effect> {
  const { config } = deps;
  const name = containerName(config, instance.id);
  switch (action.kind) {
    case "create":
    case "start":
      return provision(deps, docker, host, action, instance);
    case "stop":
      await stopContainer(docker, config, name);
      return { set: { ipAddress: null, upstream: null } };
    case "restart": {
      const info = await inspectContainer(docker, name);
      if (!info) return provision(deps, docker, host, action, instance);
      const container = docker.getContainer(info.Id);
      await applyCpuLimit(docker, info.Id, info.HostConfig.NanoCpus, instance);
      if (info.State.Paused) await container.unpause();
      await container.restart({ t: config.compute.stopTimeoutS });
      const running = await container.inspect();
      return { set: { containerId: running.Id, ipAddress: ipAddressOf(running), upstream: upstreamOf(running, instance.httpPort, publishAddressOf(config, host)) } };
    }
    case "delete":
      return remove(deps, docker, action, instance);
    case "pause": {
      // Straight to the engine: the usual case (running) costs one call, not an inspect first, which counts when a power
      // emergency pauses a hundred at once. Any refusal (already paused, not running, gone) is sorted out by the inspect below.
      try {
        await docker.getContainer(name).pause();
        return {};
      } catch {}
      const info = await requireContainer(docker, name);
      if (info.State.Paused) return {};
      if (!info.State.Running) throw new PermanentFailure(`the container is ${info.State.Status}, not running`);
      await docker.getContainer(info.Id).pause();
      return {};
    }
    case "resume": {
      const info = await requireContainer(docker, name);
      // The CPU limit first, so the container never runs unthrottled for a moment it should not.
      await applyCpuLimit(docker, info.Id, info.HostConfig.NanoCpus, instance);
      if (info.State.Paused) await docker.getContainer(info.Id).unpause();
      else if (!info.State.Running) throw new PermanentFailure(`the container is ${info.State.Status}, not paused`);
      // Pausing keeps the published port.
      return { set: { upstream: upstreamOf(info, instance.httpPort, publishAddressOf(config, host)) } };
    }
    case "throttle": {
      const info = await requireContainer(docker, name);
      await applyCpuLimit(docker, info.Id, info.HostConfig.NanoCpus, instance);
      return {};
    }
    case "resize":
      return resize(deps, docker, host, action, instance);
  }
}

/** `docker update` of the container's CPU quota when it differs from the instance's limit (works paused or stopped too). */
async function applyCpuLimit(docker: Docker, id: string, current: number | undefined, instance: Instance): Promise<void> {
  const nanoCpus = cpuLimitMillis(instance) * 1_000_000;
  if (current === nanoCpus) return;
  await docker.getContainer(id).update({ NanoCpus: nanoCpus });
}

async function requireContainer(docker: Docker, name: string): Promise<Docker.ContainerInspectInfo> {
  const info = await inspectContainer(docker, name);
  if (!info) throw new PermanentFailure("the container no longer exists");
  return info;
}

/** Writes an image pull's progress on the action, at most every PROGRESS_EVERY_MS, for clients polling it. */
function progressWriter(db: Database, actionId: string) {
  let last = 0;
  let pending: Promise<unknown> = Promise.resolve();
  const report = (progress: PullProgress) => {
    const now = Date.now();
    if (now - last < PROGRESS_EVERY_MS && progress.layersDone < progress.layersTotal && last !== 0) return;
    last = now;
    pending = pending.then(() =>
      db
        .update(instanceActions)
        .set({ progress: { phase: "pulling", ...progress, updatedAt: new Date(now).toISOString() } })
        .where(and(eq(instanceActions.id, actionId), eq(instanceActions.status, "running")))
        .catch(() => undefined),
    );
  };
  /** Resolves when every write so far is done (so a later one cannot be overtaken). */
  return { report, settled: () => pending, wrote: () => last !== 0 };
}

/**
 * Makes sure the image is on the engine (within the limits for an own
 * image), the volumes are ready, the container exists with the current spec,
 * and starts it.
 *
 * The tenant network needs neither the image nor the volumes, so it is
 * ensured meanwhile, or not at all when this process knows it exists (see
 * knownTenantNetwork): a network removed behind its back costs one 404, and
 * the container is made again on a network ensured under the lock.
 */
async function provision(deps: LifecycleDeps, docker: Docker, host: Host, action: Action, instance: Instance): Promise<Effect> {
  const { db, config } = deps;
  const serialize = tenantNetworkLock(db, instance.userId, host.id);
  const ensureNetwork = () => serialize(() => ensureTenantNetwork(docker, config, instance.userId));
  const known = knownTenantNetwork(docker, config, instance.userId);
  const networkReady = known ? Promise.resolve(known) : ensureNetwork();
  // Awaited below; should the image or the volumes fail first, its own failure is not the one to report.
  networkReady.catch(() => undefined);
  const progress = progressWriter(db, action.id);
  const onProgress = progress.report;
  let writablePaths: string[] = [];
  let image: ReadyImage;
  if (instance.imageId) {
    const [entry] = await db.select({ writablePaths: images.writablePaths }).from(images).where(eq(images.id, instance.imageId));
    writablePaths = entry?.writablePaths ?? [];
    image = await ensureCatalogueImage(docker, config, instance.imageReference, onProgress);
  } else {
    image = await ensureRegistryImage(docker, config, instance.imageReference, instance.imageDigest, onProgress);
  }
  await progress.settled();
  // Nothing to move on when no pull was ever reported (an image already on the engine): no write.
  if (progress.wrote() || action.progress !== null) {
    await db
      .update(instanceActions)
      .set({ progress: sql`case when ${instanceActions.progress} is null then null else jsonb_set(${instanceActions.progress}, '{phase}', '"starting"') end` })
      .where(eq(instanceActions.id, action.id));
  }
  const mounts = await prepareInstanceVolumes(deps, docker, host, instance);
  const publishAddress = publishAddressOf(config, host);
  const make = (network: string) =>
    ensureContainer(docker, containerSpec(config, instance, { network, publishAddress, image, writablePaths, volumes: mounts, cgroupParent: cgroupParentOf(config, host, instance.priority) }));
  const remake = async () => {
    forgetTenantNetwork(docker, config, instance.userId);
    return make(await ensureNetwork());
  };
  let created: MadeContainer;
  try {
    created = await make(await networkReady);
  } catch (error) {
    // An engine that checks the network at create: the one this process knew of was removed meanwhile.
    if (!known || statusCode(error) !== 404) throw error;
    created = await remake();
  }
  if (created.labels[LABELS.instance] !== instance.id) {
    throw new PermanentFailure(`container ${created.name} exists but does not belong to this instance`);
  }
  await applyCpuLimit(docker, created.id, created.nanoCpus, instance);
  let running: Docker.ContainerInspectInfo;
  try {
    running = await ensureRunning(docker, created);
  } catch (error) {
    // Created, then its tenant network was removed before it ever ran (or the network this process knew of is gone): make it again.
    if (statusCode(error) !== 404 || (created.everStarted && !known)) throw error;
    await removeContainer(docker, created.id);
    running = await ensureRunning(docker, await remake());
  }
  return {
    set: {
      containerId: running.Id,
      ipAddress: ipAddressOf(running),
      upstream: upstreamOf(running, instance.httpPort, publishAddress),
      imageDigest: image.digest,
      // Read-only root, capped tmpfs, sized volumes: nothing the instance writes reaches the host's disk unbounded.
      diskLimitEnforced: Boolean(running.HostConfig.ReadonlyRootfs),
    },
  };
}

/**
 * Removes the container; the instance's volumes are kept (detached, for
 * another instance) unless the delete asked for `deleteVolumes`.
 */
async function remove(deps: LifecycleDeps, docker: Docker, action: Action, instance: Instance): Promise<Effect> {
  await removeContainer(docker, containerName(deps.config, instance.id));
  await cleanUpTenantNetwork(deps, docker, instance);
  const attached = await deps.db
    .select({ id: volumes.id })
    .from(volumes)
    .where(and(eq(volumes.instanceId, instance.id), ne(volumes.state, "deleted")));
  const deleteVolumes = action.params.deleteVolumes === true;
  if (deleteVolumes) for (const { id } of attached) await removeVolumeStorage(docker, deps.config, id);
  return {
    set: { containerId: null, ipAddress: null, upstream: null, deletedAt: new Date() },
    after: async (tx) => {
      if (!attached.length) return;
      const detached = { instanceId: null, mountPath: null };
      await tx
        .update(volumes)
        .set(deleteVolumes ? { ...detached, state: "deleted", deletedAt: sql`coalesce(${volumes.deletedAt}, now())` } : detached)
        .where(and(eq(volumes.instanceId, instance.id), ne(volumes.state, "deleted")));
    },
  };
}

/**
 * Applies a new plan's limits. A running container is updated live (CPU,
 * memory and swap together); if the engine refuses (e.g. memory below what
 * the processes use now), it is stopped, made again with the new limits and
 * started. A stopped one is made again at its next start (its spec changed).
 * The new plan is recorded, and billed from, when the limits are in force.
 */
async function resize(deps: LifecycleDeps, docker: Docker, host: Host, action: Action, instance: Instance): Promise<Effect> {
  const { db, config } = deps;
  const [plan] = await db
    .select()
    .from(plans)
    .where(eq(plans.id, action.params.planId ?? ""));
  if (!plan) throw new PermanentFailure("the plan to resize to no longer exists");
  const resized: Instance = { ...instance, planId: plan.id, cpuMillis: plan.cpuMillis, memoryMb: plan.memoryMb, diskGb: plan.diskGb };
  const MIB = 1024 * 1024;
  let extra: Partial<typeof instances.$inferInsert> = {};
  const info = await inspectContainer(docker, containerName(config, instance.id));
  if (info?.State.Running && instance.state === "running") {
    try {
      // A power-policy CPU limit in force stays in force (below the new plan's CPU).
      const cpuMillis = Math.min(plan.cpuMillis, cpuLimitMillis(resized));
      await docker.getContainer(info.Id).update({ Memory: plan.memoryMb * MIB, MemorySwap: plan.memoryMb * MIB, NanoCpus: cpuMillis * 1_000_000 });
    } catch (error) {
      // No status: the engine did not answer (retried). Any answer is a refusal of the live update.
      if (statusCode(error) === undefined) throw error;
      deps.log.info("live resize refused; restarting with the new limits", { instanceId: instance.id, error: (error as Error).message });
      await stopContainer(docker, config, info.Id);
      const effect = await provision(deps, docker, host, action, resized);
      extra = effect.set ?? {};
    }
  }
  return {
    set: {
      ...extra,
      planId: plan.id,
      ...planTerms(plan),
      planSeq: instance.planSeq + 1,
    },
    after: async (tx, current) => {
      await tx.insert(instancePlans).values(planSegment(instance.id, current.planSeq, plan));
    },
  };
}

// Any fixed value; it keys the per-tenant, per-host network lock.
const NETWORK_LOCK_SPACE = 40_418;

/**
 * Docker can create two networks with one name when two creates race, so the
 * jobs of one tenant on one host take turns at ensuring the network. A
 * transaction-scoped advisory lock is released however the work ends.
 */
export function tenantNetworkLock(db: Database, userId: string, hostId: string): Serialize {
  return (work) =>
    db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${NETWORK_LOCK_SPACE}, hashtext(${`${userId}/${hostId}`}))`);
      return work();
    });
}

/** The tenant's network goes with its last instance on the host. */
async function cleanUpTenantNetwork(deps: LifecycleDeps, docker: Docker, instance: Instance): Promise<void> {
  const [other] = await deps.db
    .select({ id: instances.id })
    .from(instances)
    .where(and(eq(instances.userId, instance.userId), eq(instances.hostId, instance.hostId), ne(instances.state, "deleted"), ne(instances.id, instance.id)))
    .limit(1);
  if (other) return;
  try {
    await tenantNetworkLock(deps.db, instance.userId, instance.hostId)(() => removeTenantNetwork(docker, deps.config, instance.userId));
  } catch (error) {
    // The delete itself succeeded; the reconciler's pass removes the network later.
    deps.log.warn("tenant network removal failed", { instanceId: instance.id, error: (error as Error).message });
  }
}
