import { and, asc, desc, eq, inArray, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { hosts, instanceActions, instances, instanceStateHistory, volumes, type ActionParams } from "../../db/schema";
import { jobId, type Queues } from "../../workers/queues";
import { actorUserId, systemActor, type Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import type { Config } from "../config";
import { assertPowerAdmits } from "../energy/restrictions";
import { AppError } from "../errors";
import { recordEvents } from "../events/outbox";
import { cursorTime, decodeCursor, page } from "../pagination";
import type { Logger } from "../log";
import type { RequestInfo } from "../trpc";
import { findPlan } from "./catalogue";
import { stateChangeEvents } from "./customer-events";
import { assertHostRoom, hostUnreachable, instanceHoldsCapacity } from "./hosts";
import type { InstanceListCache } from "./list-cache";
import { assertWithinQuota, lockUserForCreate } from "./quotas";
import { ACTION_RULES, assertTransition, PRIORITY_SHED_ORDER, type ActionKind, type InstanceState } from "./states";
import { actionView, instanceView } from "./views";
import { volumeView } from "./volumes/service";

export type Instance = typeof instances.$inferSelect;
export type Action = typeof instanceActions.$inferSelect;

/** What the request side needs: it records intent and enqueues; it never talks to Docker. */
export type ComputeDeps = { db: Database; queues: Queues; config: Config; log: Logger };
export type Who = { actor: Actor; request?: RequestInfo | null };

export type RequestActionInput = {
  instanceId: string;
  kind: Exclude<ActionKind, "create" | "resize">;
  /** A delete's: also delete the instance's volumes (kept by default). */
  params?: ActionParams;
  /** Recorded on the action and in the state history, e.g. "requested" or "power_emergency". */
  reason?: string;
  /** Restricts the request to this owner's instances (NOT_FOUND otherwise); null for platform actors. */
  ownerId: string | null;
  /**
   * Free text for the audit row only (an admin's explanation), kept out of
   * the state history, whose reasons are codes that billing and recovery
   * match on and that the owner sees.
   */
  note?: string;
  /**
   * A new CPU limit for the instance (the power policy's throttle; `millis`
   * null gives the plan's CPU back), recorded with the action and applied to
   * the container by it: required for `throttle`, allowed with `start` and
   * `resume` so recovery restores CPU and service in one step.
   */
  cpuThrottle?: { millis: number | null; reason: string };
};

const TAKES_CPU_LIMIT: ReadonlyArray<RequestActionInput["kind"]> = ["throttle", "start", "resume"];

/**
 * Requests start, stop, restart, delete, pause or resume. The instance must be
 * in a state the action may start from and have no other action in flight
 * (INVALID_TRANSITION otherwise), except that a delete cancels an action the
 * worker has not picked up yet. Start and resume also need a power level
 * that admits the instance's priority (POWER_RESTRICTED otherwise); a start
 * of an instance that gave its capacity back (stopped, failed) needs quota
 * and room on its host again. While the instance's host is unreachable,
 * every action is DEPENDENCY_UNAVAILABLE (503): nothing could carry it out.
 */
export async function requestAction(deps: ComputeDeps, who: Who, input: RequestActionInput) {
  const { db, config } = deps;
  const reason = input.reason ?? "requested";
  const result = await db.transaction(async (tx) => {
    // The quota lock comes first, as in create: a start takes capacity back.
    if (input.kind === "start") {
      const [owner] = await tx.select({ userId: instances.userId }).from(instances).where(eq(instances.id, input.instanceId));
      if (owner) await lockUserForCreate(tx, owner.userId);
    }
    const instance = await lockInstance(tx, input.instanceId, input.ownerId);
    const rule = ACTION_RULES[input.kind];
    if (!rule.from.includes(instance.state)) {
      throw new AppError("INVALID_TRANSITION", `Cannot ${input.kind} an instance that is ${instance.state}`, {
        details: { state: instance.state, action: input.kind },
      });
    }
    await assertHostReachable(tx, instance.hostId);
    // Starting or resuming adds load; a user's request and the power-emergency recovery alike wait for a level that admits it.
    if (input.kind === "start" || input.kind === "resume") await assertPowerAdmits(tx, instance.priority);
    if (input.kind === "throttle" ? !input.cpuThrottle : input.cpuThrottle && !TAKES_CPU_LIMIT.includes(input.kind)) {
      throw new AppError("VALIDATION_FAILED", `A CPU limit goes with throttle, start or resume, not ${input.kind}`, { details: { action: input.kind } });
    }
    if (input.kind === "start" && !instanceHoldsCapacity(instance)) {
      const need = { cpuMillis: instance.cpuMillis, memoryMb: instance.memoryMb };
      await assertWithinQuota(tx, config, instance.userId, need, { excludeInstanceId: instance.id });
      await assertHostRoom(tx, instance.hostId, instance.id, { ...need, volumeMb: 0 });
    }
    const [open] = await tx
      .select()
      .from(instanceActions)
      .where(and(eq(instanceActions.instanceId, instance.id), inArray(instanceActions.status, ["pending", "running"])));
    if (open) {
      if (input.kind !== "delete" || open.status !== "pending") {
        throw new AppError("INVALID_TRANSITION", `Another action (${open.kind}) is in progress on this instance; retry when it has finished`, {
          details: { state: instance.state, action: input.kind, actionInProgress: open.id },
        });
      }
      await tx
        .update(instanceActions)
        .set({ status: "failed", error: "cancelled by a delete request", finishedAt: new Date() })
        .where(and(eq(instanceActions.id, open.id), eq(instanceActions.status, "pending")));
    }
    const actorId = actorUserId(who.actor);
    const [action] = await tx
      .insert(instanceActions)
      .values({ instanceId: instance.id, userId: instance.userId, kind: input.kind, reason, params: input.params ?? {}, actorType: who.actor.kind, actorId })
      .returning();
    let current = rule.during ? await changeState(tx, instance, rule.during, { reason, by: attributionOf(who.actor), actionId: action!.id }) : instance;
    if (input.cpuThrottle) {
      const limit = input.cpuThrottle.millis;
      const [updated] = await tx
        .update(instances)
        .set({ cpuThrottleMillis: limit, cpuThrottleReason: limit === null ? null : input.cpuThrottle.reason })
        .where(eq(instances.id, instance.id))
        .returning();
      current = updated!;
    }
    const metadata: Record<string, unknown> = { actionId: action!.id };
    if (input.note !== undefined) metadata.stateReason = reason;
    if (input.cpuThrottle) metadata.cpuLimitMillis = { from: instance.cpuThrottleMillis ?? instance.cpuMillis, to: input.cpuThrottle.millis ?? instance.cpuMillis };
    await recordAudit(tx, who, {
      action: `compute.instance.${input.kind}`,
      targetType: "instance",
      targetId: instance.id,
      reason: input.note ?? reason,
      metadata: input.params && Object.keys(input.params).length ? { ...metadata, params: input.params } : metadata,
    });
    return { instance: current, actionId: action!.id };
  });
  await enqueueAction(deps, result.actionId);
  return { instance: instanceView(result.instance, deps.config.ingress), actionId: result.actionId };
}

/** DEPENDENCY_UNAVAILABLE while the host's engine is recorded offline (the reconciler's host sync decides). */
export async function assertHostReachable(tx: Database, hostId: string): Promise<void> {
  const [host] = await tx.select().from(hosts).where(eq(hosts.id, hostId));
  if (host && host.status !== "active") throw hostUnreachable(host);
}

/**
 * Moves a running or stopped instance to another plan, as an action the
 * worker carries out: live (`docker update`) where the engine can, else by
 * stopping and starting the container with the new limits; a stopped one's
 * new limits apply at its next start. Quota and the host's room are checked
 * for the difference when the instance holds capacity. Billing switches to
 * the new plan when the worker has applied it (metering splits the hour
 * there); until then the instance keeps its plan.
 */
export async function resizeInstance(deps: ComputeDeps, who: Who, input: { instanceId: string; planId: string; ownerId: string | null }) {
  const { db, config } = deps;
  const result = await db.transaction(async (tx) => {
    const [owner] = await tx.select({ userId: instances.userId }).from(instances).where(eq(instances.id, input.instanceId));
    if (owner) await lockUserForCreate(tx, owner.userId);
    const instance = await lockInstance(tx, input.instanceId, input.ownerId);
    if (instance.state !== "running" && instance.state !== "stopped") {
      throw new AppError("INVALID_TRANSITION", `Cannot resize an instance that is ${instance.state}; resize it while it is running or stopped`, {
        details: { state: instance.state, action: "resize" },
      });
    }
    await assertHostReachable(tx, instance.hostId);
    const plan = await findPlan(tx, input.planId);
    if (plan.id === instance.planId) throw new AppError("CONFLICT", `The instance is already on plan ${plan.slug}`, { details: { planId: plan.id } });
    if (plan.currency !== instance.currency) throw new AppError("CONFLICT", `Plan ${plan.slug} is priced in ${plan.currency}, the instance in ${instance.currency}`, { details: { planId: plan.id } });
    if (instanceHoldsCapacity(instance)) {
      const need = { cpuMillis: plan.cpuMillis, memoryMb: plan.memoryMb };
      await assertWithinQuota(tx, config, instance.userId, need, { excludeInstanceId: instance.id });
      await assertHostRoom(tx, instance.hostId, instance.id, { ...need, volumeMb: 0 });
    }
    const [open] = await tx
      .select()
      .from(instanceActions)
      .where(and(eq(instanceActions.instanceId, instance.id), inArray(instanceActions.status, ["pending", "running"])));
    if (open) throw new AppError("INVALID_TRANSITION", `Another action (${open.kind}) is in progress on this instance; retry when it has finished`, { details: { actionInProgress: open.id } });
    const [action] = await tx
      .insert(instanceActions)
      .values({ instanceId: instance.id, userId: instance.userId, kind: "resize", reason: "requested", params: { planId: plan.id }, actorType: who.actor.kind, actorId: actorUserId(who.actor) })
      .returning();
    await recordAudit(tx, who, {
      action: "compute.instance.resize",
      targetType: "instance",
      targetId: instance.id,
      metadata: { actionId: action!.id, fromPlanId: instance.planId, toPlan: plan.slug },
    });
    return { instance, actionId: action!.id };
  });
  await enqueueAction(deps, result.actionId);
  return { instance: instanceView(result.instance, deps.config.ingress), actionId: result.actionId };
}

/** Locks the instance row for the rest of the transaction; every state change goes through this lock. */
export async function lockInstance(tx: Database, instanceId: string, ownerId: string | null): Promise<Instance> {
  const [instance] = await tx.select().from(instances).where(eq(instances.id, instanceId)).for("update");
  if (!instance || (ownerId !== null && instance.userId !== ownerId)) throw new AppError("NOT_FOUND", "No such instance", { details: { instanceId } });
  return instance;
}

/**
 * Moves an instance along an edge of the state machine and records it in the
 * state history and the customer event stream (customer-events.ts). Call with
 * the instance row locked (`lockInstance`).
 */
export async function changeState(
  tx: Database,
  instance: Instance,
  to: InstanceState,
  opts: {
    reason: string;
    by: Attribution;
    actionId?: string | null;
    set?: Partial<typeof instances.$inferInsert>;
    /**
     * When the change happened, if it is recorded late (the reconciler dating
     * a container's death at its finish). Billing reads the history by time:
     * only a moment metering has not yet passed for this instance may be given
     * (server/billing/metering.ts holds the cursors of containers it cannot
     * see running).
     */
    at?: Date;
  },
): Promise<Instance> {
  assertTransition(instance.state, to, `move to ${to}`);
  const at = opts.at && opts.at.getTime() < Date.now() ? new Date(Math.max(opts.at.getTime(), instance.stateChangedAt.getTime())) : undefined;
  const [updated] = await tx
    .update(instances)
    .set({ ...opts.set, state: to, stateReason: opts.reason, stateChangedAt: at ?? new Date() })
    .where(and(eq(instances.id, instance.id), eq(instances.state, instance.state)))
    .returning();
  if (!updated) throw new Error(`instance ${instance.id} changed state concurrently (expected ${instance.state})`);
  await tx.insert(instanceStateHistory).values({
    instanceId: instance.id,
    fromState: instance.state,
    toState: to,
    reason: opts.reason,
    actorType: opts.by.actorType,
    actorId: opts.by.actorId,
    actionId: opts.actionId ?? null,
    ...(at ? { at } : {}),
  });
  await recordEvents(tx, stateChangeEvents(instance, to, opts.reason));
  return updated;
}

/** Who a state change is attributed to: the actor who asked, even when a worker carries it out. */
export type Attribution = { actorType: string; actorId: string | null };
export const attributionOf = (actor: Actor): Attribution => ({ actorType: actor.kind, actorId: actorUserId(actor) });

/**
 * Hands an action to the lifecycle worker. The stable job id makes a second
 * enqueue a no-op. The action row is the outbox: if Redis refuses now, the
 * reconciler's sweep enqueues it later, so the request still succeeds.
 */
export async function enqueueAction(deps: Pick<ComputeDeps, "queues" | "log">, actionId: string): Promise<void> {
  try {
    // More attempts than the default: the backoff then spans about two minutes, long enough to ride out an engine restart.
    await deps.queues.enqueue("lifecycle", "run", { actionId }, { jobId: actionJobId(actionId), attempts: 8 });
  } catch (error) {
    deps.log.warn("lifecycle enqueue failed; the sweep will retry", { actionId, error: (error as Error).message });
  }
}

export const actionJobId = (actionId: string) => jobId("action", actionId);

/** For views: instance addresses depend on the ingress settings. */
export type ViewDeps = { db: Database; config: Pick<Config, "ingress"> };

/** The instance with its host's reachability (state `unknown` while its engine does not answer) and its volumes. */
export async function getInstance(deps: ViewDeps, ownerId: string | null, instanceId: string) {
  const instance = await findInstance(deps.db, ownerId, instanceId);
  const [host] = await deps.db.select({ status: hosts.status }).from(hosts).where(eq(hosts.id, instance.hostId));
  const attached = await deps.db
    .select()
    .from(volumes)
    .where(and(eq(volumes.instanceId, instance.id), ne(volumes.state, "deleted")))
    .orderBy(asc(volumes.mountPath));
  return { ...instanceView(instance, deps.config.ingress, host ?? null), volumes: attached.map(volumeView) };
}

/**
 * The reads clients poll (an action until it finishes, an instance until it
 * runs, the instance list), prepared once per database handle.
 */
const prepared = new WeakMap<Database, ReturnType<typeof prepareReads>>();
function prepareReads(db: Database) {
  /** The list, in its four shapes: with or without a state filter, first page or after a cursor. */
  const list = (byState: boolean, fromCursor: boolean) =>
    db
      .select({ instance: instances, hostStatus: hosts.status, id: instances.id, cursorAt: cursorTime(instances.createdAt) })
      .from(instances)
      .innerJoin(hosts, eq(hosts.id, instances.hostId))
      .where(
        and(
          eq(instances.userId, sql.placeholder("ownerId")),
          byState ? eq(instances.state, sql.placeholder("state")) : ne(instances.state, "deleted"),
          fromCursor ? sql`(${instances.createdAt}, ${instances.id}) < (${sql.placeholder("cursorAt")}::timestamptz, ${sql.placeholder("cursorId")}::uuid)` : undefined,
        ),
      )
      .orderBy(desc(instances.createdAt), desc(instances.id))
      .limit(sql.placeholder("limit"))
      .prepare(`compute_instances_list${byState ? "_state" : ""}${fromCursor ? "_after" : ""}`);
  return {
    instance: db
      .select()
      .from(instances)
      .where(eq(instances.id, sql.placeholder("id")))
      .prepare("compute_instance_by_id"),
    action: db
      .select()
      .from(instanceActions)
      .where(eq(instanceActions.id, sql.placeholder("id")))
      .prepare("compute_action_by_id"),
    list: [list(false, false), list(false, true), list(true, false), list(true, true)] as const,
  };
}
function reads(db: Database) {
  let statements = prepared.get(db);
  if (!statements) {
    statements = prepareReads(db);
    prepared.set(db, statements);
  }
  return statements;
}

export async function findInstance(db: Database, ownerId: string | null, instanceId: string): Promise<Instance> {
  const [instance] = await reads(db).instance.execute({ id: instanceId });
  if (!instance || (ownerId !== null && instance.userId !== ownerId)) throw new AppError("NOT_FOUND", "No such instance", { details: { instanceId } });
  return instance;
}

/**
 * The owner's instances, newest first, a page at a time. Deleted instances
 * are listed only when asked for by state.
 */
export async function listInstances(
  deps: ViewDeps & { instanceLists?: InstanceListCache },
  ownerId: string,
  opts: { state?: InstanceState | undefined; cursor?: string | undefined; limit?: number | undefined },
) {
  const { db, instanceLists } = deps;
  const limit = opts.limit ?? 20;
  const key = `${opts.state ?? ""}|${limit}|${opts.cursor ?? ""}`;
  const now = Date.now();
  const cached = instanceLists?.get<InstanceListPage>(ownerId, key, now);
  if (cached) return cached;
  const ticket = instanceLists?.ticket() ?? null;
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const statement = reads(db).list[(opts.state ? 2 : 0) + (cursor ? 1 : 0)]!;
  const rows = await statement.execute({ ownerId, state: opts.state, cursorAt: cursor?.at, cursorId: cursor?.id, limit: limit + 1 });
  const result = page(rows, limit, (row) => instanceView(row.instance, deps.config.ingress, { status: row.hostStatus }));
  instanceLists?.put(ticket, ownerId, key, result, now);
  return result;
}
type InstanceListPage = { items: Array<ReturnType<typeof instanceView>>; nextCursor: string | null };

export async function getAction(db: Database, ownerId: string | null, actionId: string) {
  const [action] = await reads(db).action.execute({ id: actionId });
  if (!action || (ownerId !== null && action.userId !== ownerId)) throw new AppError("NOT_FOUND", "No such action", { details: { actionId } });
  return actionView(action);
}

/**
 * Instances in the given states (running by default), least important first
 * (interruptible, standard, critical), oldest first within a priority: the
 * order in which the power policy sheds load. Optionally for one host.
 */
export async function listInstancesByPriority(deps: ViewDeps, opts: { states?: InstanceState[]; hostId?: string } = {}) {
  const { db } = deps;
  const order = sql`array_position(${sql.raw(`array[${PRIORITY_SHED_ORDER.map((p) => `'${p}'`).join(",")}]::instance_priority[]`)}, ${instances.priority})`;
  const rows = await db
    .select()
    .from(instances)
    .where(and(inArray(instances.state, opts.states ?? ["running"]), opts.hostId ? eq(instances.hostId, opts.hostId) : undefined))
    .orderBy(order, asc(instances.createdAt), asc(instances.id));
  return rows.map((row) => instanceView(row, deps.config.ingress));
}

/** The instance's state changes in order, for billing (running and paused time) and audits. */
export async function stateHistory(db: Database, instanceId: string) {
  const rows = await db.select().from(instanceStateHistory).where(eq(instanceStateHistory.instanceId, instanceId)).orderBy(asc(instanceStateHistory.seq));
  return rows.map((row) => ({ from: row.fromState, to: row.toState, reason: row.reason, actorType: row.actorType, actionId: row.actionId, at: row.at.toISOString() }));
}

// The platform's own requests, for the power-emergency worker and operators.
// Each records `reason` on the action and in the state history.
const platform = (name: string): Who => ({ actor: systemActor(name) });
export type PlatformRequest = { reason: string; actor?: Actor; note?: string };
type WithCpuLimit = { cpuThrottle?: RequestActionInput["cpuThrottle"] };

export function pauseInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest) {
  return requestAction(deps, opts.actor ? { actor: opts.actor } : platform("compute"), { instanceId, kind: "pause", reason: opts.reason, ownerId: null });
}

/**
 * Pauses many running instances at once (the power emergency's shedding):
 * per instance the same checks and records as a single `pause` request
 * (`requestAction`), but in one transaction with the rows locked in id order,
 * and the lifecycle jobs added in one queue round trip, so the first pause
 * reaches a worker a few milliseconds after the request rather than after a
 * hundred transactions. Each instance gets its action id, or the error a
 * pause of it alone would have met (NOT_FOUND, INVALID_TRANSITION,
 * DEPENDENCY_UNAVAILABLE); one instance's error never holds up the others.
 */
export async function pauseInstances(deps: ComputeDeps, instanceIds: readonly string[], opts: PlatformRequest): Promise<Map<string, { actionId: string } | AppError>> {
  const who: Who = opts.actor ? { actor: opts.actor } : platform("compute");
  const outcomes = new Map<string, { actionId: string } | AppError>();
  if (instanceIds.length === 0) return outcomes;
  const actionIds = await deps.db.transaction(async (tx) => {
    const rows = await tx
      .select()
      .from(instances)
      .where(inArray(instances.id, [...instanceIds]))
      .orderBy(asc(instances.id))
      .for("update");
    const hostIds = [...new Set(rows.map((r) => r.hostId))];
    const hostRows = hostIds.length ? await tx.select().from(hosts).where(inArray(hosts.id, hostIds)) : [];
    const hostOf = new Map(hostRows.map((h) => [h.id, h]));
    const open = new Map(
      (
        await tx
          .select()
          .from(instanceActions)
          .where(and(inArray(instanceActions.instanceId, [...instanceIds]), inArray(instanceActions.status, ["pending", "running"])))
      ).map((a) => [a.instanceId, a]),
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    const pausable: Instance[] = [];
    for (const id of instanceIds) {
      const instance = byId.get(id);
      const host = instance && hostOf.get(instance.hostId);
      const busy = open.get(id);
      if (!instance) outcomes.set(id, new AppError("NOT_FOUND", "No such instance", { details: { instanceId: id } }));
      else if (!ACTION_RULES.pause.from.includes(instance.state)) {
        outcomes.set(id, new AppError("INVALID_TRANSITION", `Cannot pause an instance that is ${instance.state}`, { details: { state: instance.state, action: "pause" } }));
      } else if (host && host.status !== "active") outcomes.set(id, hostUnreachable(host));
      else if (busy) {
        outcomes.set(
          id,
          new AppError("INVALID_TRANSITION", `Another action (${busy.kind}) is in progress on this instance; retry when it has finished`, {
            details: { state: instance.state, action: "pause", actionInProgress: busy.id },
          }),
        );
      } else pausable.push(instance);
    }
    if (pausable.length === 0) return [];
    const actorId = actorUserId(who.actor);
    const actions = await tx
      .insert(instanceActions)
      .values(pausable.map((instance) => ({ instanceId: instance.id, userId: instance.userId, kind: "pause" as const, reason: opts.reason, params: {}, actorType: who.actor.kind, actorId })))
      .returning({ id: instanceActions.id, instanceId: instanceActions.instanceId });
    await recordAudit(
      tx,
      who,
      actions.map((a) => ({
        action: "compute.instance.pause",
        targetType: "instance",
        targetId: a.instanceId,
        reason: opts.note ?? opts.reason,
        metadata: { actionId: a.id, ...(opts.note !== undefined ? { stateReason: opts.reason } : {}) },
      })),
    );
    return actions;
  });
  for (const a of actionIds) outcomes.set(a.instanceId, { actionId: a.id });
  try {
    // More attempts than the default, as enqueueAction: the backoff then rides out an engine restart.
    await deps.queues.enqueueMany(
      "lifecycle",
      "run",
      actionIds.map((a) => ({ payload: { actionId: a.id }, opts: { jobId: actionJobId(a.id), attempts: 8 } })),
    );
  } catch (error) {
    deps.log.warn("lifecycle enqueue failed; the sweep will retry", { actions: actionIds.length, error: (error as Error).message });
  }
  return outcomes;
}

export function resumeInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & WithCpuLimit) {
  return requestAction(deps, opts.actor ? { actor: opts.actor } : platform("compute"), { instanceId, kind: "resume", reason: opts.reason, ownerId: null, ...cpuLimit(opts) });
}

/** Sets the instance's CPU limit (`millis` null: the plan's) and applies it to the container. */
export function throttleInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & { millis: number | null }) {
  return requestAction(deps, opts.actor ? { actor: opts.actor } : platform("compute"), {
    instanceId,
    kind: "throttle",
    reason: opts.reason,
    ownerId: null,
    cpuThrottle: { millis: opts.millis, reason: opts.reason },
  });
}

const cpuLimit = (opts: WithCpuLimit) => (opts.cpuThrottle ? { cpuThrottle: opts.cpuThrottle } : {});

export function stopInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & { request?: RequestInfo | null }) {
  const who = opts.actor ? { actor: opts.actor, request: opts.request ?? null } : platform("compute");
  return requestAction(deps, who, { instanceId, kind: "stop", reason: opts.reason, ownerId: null, ...(opts.note === undefined ? {} : { note: opts.note }) });
}

export function startInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & WithCpuLimit) {
  return requestAction(deps, opts.actor ? { actor: opts.actor } : platform("compute"), { instanceId, kind: "start", reason: opts.reason, ownerId: null, ...cpuLimit(opts) });
}
