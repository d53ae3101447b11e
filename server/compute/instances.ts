import { createHash } from "node:crypto";
import { and, asc, desc, eq, inArray, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instanceActions, instances, instanceStateHistory } from "../../db/schema";
import { jobId, type Queues } from "../../workers/queues";
import { actorUserId, systemActor, type Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import type { Config, IngressConfig } from "../config";
import { assertPowerAdmits } from "../energy/restrictions";
import { AppError } from "../errors";
import { instanceUrl } from "../ingress/addresses";
import { recordEvents } from "../events/outbox";
import { cursorTime, decodeCursor, page } from "../pagination";
import type { Logger } from "../log";
import type { RequestInfo } from "../trpc";
import { findImage, findPlan } from "./catalogue";
import { stateChangeEvents, type FailureCause } from "./customer-events";
import { placeInstance } from "./hosts";
import { assertWithinQuota, lockUserForCreate } from "./quotas";
import { assertNoOverdueInvoices } from "./standing";
import { ACTION_RULES, assertTransition, PRIORITY_SHED_ORDER, type ActionKind, type InstancePriority, type InstanceState } from "./states";

export type Instance = typeof instances.$inferSelect;
export type Action = typeof instanceActions.$inferSelect;

/** What the request side needs: it records intent and enqueues; it never talks to Docker. */
export type ComputeDeps = { db: Database; queues: Queues; config: Config; log: Logger };
export type Who = { actor: Actor; request?: RequestInfo | null };

export type CreateInstanceInput = {
  name: string;
  planId: string;
  imageId: string;
  priority?: InstancePriority | undefined;
  env?: Record<string, string> | undefined;
  idempotencyKey?: string | undefined;
  /** The port to serve at the instance's URL: absent for the image's, null for no URL. */
  httpPort?: number | null | undefined;
};

/**
 * Accepts a new instance: checks plan, image, that the power level admits
 * its priority, the owner's quota and host capacity, then records the instance, its first state, the create action and
 * the audit row in one transaction and enqueues the lifecycle job. Answers at
 * once; the client polls the action. A repeated `idempotencyKey` returns the
 * first instance and action (`replayed: true`).
 */
export async function createInstance(deps: ComputeDeps, who: Who & { ownerId: string }, input: CreateInstanceInput) {
  const { db, config } = deps;
  const userId = who.ownerId;
  const priority = input.priority ?? "standard";
  const env = input.env ?? {};
  const requestHash = hashRequest({ name: input.name, planId: input.planId, imageId: input.imageId, priority, env, httpPort: input.httpPort });

  const result = await db.transaction(async (tx) => {
    await lockUserForCreate(tx, userId);

    if (input.idempotencyKey) {
      const [earlier] = await tx
        .select()
        .from(instances)
        .where(and(eq(instances.userId, userId), eq(instances.idempotencyKey, input.idempotencyKey)));
      if (earlier) {
        if (earlier.requestHash !== requestHash) {
          throw new AppError("IDEMPOTENCY_KEY_REUSED", "This idempotency key was used for a different request", { details: { instanceId: earlier.id } });
        }
        const [first] = await tx
          .select({ id: instanceActions.id })
          .from(instanceActions)
          .where(and(eq(instanceActions.instanceId, earlier.id), eq(instanceActions.kind, "create")));
        return { instance: earlier, actionId: first!.id, replayed: true };
      }
    }

    const plan = await findPlan(tx, input.planId);
    const image = await findImage(tx, input.imageId);
    const httpPort = resolveHttpPort(image, input.httpPort);
    await assertPowerAdmits(tx, priority);
    await assertNoOverdueInvoices(tx, config, userId);
    await assertWithinQuota(tx, config, userId, plan);
    const [sameName] = await tx
      .select({ id: instances.id })
      .from(instances)
      .where(and(eq(instances.userId, userId), eq(instances.name, input.name), ne(instances.state, "deleted")));
    if (sameName) throw new AppError("CONFLICT", `You already have an instance named ${input.name}`, { details: { instanceId: sameName.id } });
    const host = await placeInstance(tx, plan);

    const [instance] = await tx
      .insert(instances)
      .values({
        userId,
        hostId: host.id,
        name: input.name,
        planId: plan.id,
        imageId: image.id,
        imageReference: image.reference,
        cpuMillis: plan.cpuMillis,
        memoryMb: plan.memoryMb,
        diskGb: plan.diskGb,
        priceHourlyMinor: plan.priceHourlyMinor,
        priceMonthlyMinor: plan.priceMonthlyMinor,
        currency: plan.currency,
        httpPort,
        priority,
        env,
        state: "pending",
        stateReason: "created",
        idempotencyKey: input.idempotencyKey ?? null,
        requestHash,
      })
      .returning();
    const [action] = await tx
      .insert(instanceActions)
      .values({ instanceId: instance!.id, userId, kind: "create", reason: "requested", actorType: who.actor.kind, actorId: actorUserId(who.actor) })
      .returning({ id: instanceActions.id });
    await tx.insert(instanceStateHistory).values({
      instanceId: instance!.id,
      fromState: null,
      toState: "pending",
      reason: "created",
      actorType: who.actor.kind,
      actorId: actorUserId(who.actor),
      actionId: action!.id,
    });
    await recordAudit(tx, who, {
      action: "compute.instance.create",
      targetType: "instance",
      targetId: instance!.id,
      metadata: { actionId: action!.id, plan: plan.slug, image: image.reference, hostId: host.id },
    });
    return { instance: instance!, actionId: action!.id, replayed: false };
  }).catch((error: unknown) => {
    // Two live instances named alike whose ids start with the same 8 hex digits would share a host name.
    if (violates(error, "instances_live_host_label_key")) throw new AppError("CONFLICT", "Another instance holds this instance's host name; retry the request", { cause: error });
    throw error;
  });

  if (!result.replayed) await enqueueAction(deps, result.actionId);
  return { instance: instanceView(result.instance, config.ingress), actionId: result.actionId, replayed: result.replayed };
}

/**
 * The container port the instance's URL serves: the image's by default (a
 * catalogue image serves on the port it declares), none when asked for none.
 * Asking for a port the image does not serve is refused, naming the field.
 */
function resolveHttpPort(image: { reference: string; httpPort: number | null }, requested: number | null | undefined): number | null {
  if (requested === undefined) return image.httpPort;
  if (requested === null) return null;
  if (image.httpPort === null) {
    throw new AppError("HTTP_PORT_INVALID", `${image.reference} serves no HTTP, so its instances cannot have a URL; leave out httpPort`, { details: { field: "httpPort", imageHttpPort: null } });
  }
  if (requested !== image.httpPort) {
    throw new AppError("HTTP_PORT_INVALID", `${image.reference} serves HTTP on port ${image.httpPort}; catalogue images serve on the port they declare`, {
      details: { field: "httpPort", imageHttpPort: image.httpPort },
    });
  }
  return requested;
}

function violates(error: unknown, constraint: string): boolean {
  for (let e = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === "23505" && (e as { constraint_name?: unknown; constraint?: unknown }).constraint_name === constraint) return true;
    if ((e as { code?: unknown }).code === "23505" && (e as { constraint?: unknown }).constraint === constraint) return true;
  }
  return false;
}

export type RequestActionInput = {
  instanceId: string;
  kind: Exclude<ActionKind, "create">;
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
 * that admits the instance's priority (POWER_RESTRICTED otherwise).
 */
export async function requestAction(deps: ComputeDeps, who: Who, input: RequestActionInput) {
  const { db } = deps;
  const reason = input.reason ?? "requested";
  const result = await db.transaction(async (tx) => {
    const instance = await lockInstance(tx, input.instanceId, input.ownerId);
    const rule = ACTION_RULES[input.kind];
    if (!rule.from.includes(instance.state)) {
      throw new AppError("INVALID_TRANSITION", `Cannot ${input.kind} an instance that is ${instance.state}`, {
        details: { state: instance.state, action: input.kind },
      });
    }
    // Starting or resuming adds load; a user's request and the power-emergency recovery alike wait for a level that admits it.
    if (input.kind === "start" || input.kind === "resume") await assertPowerAdmits(tx, instance.priority);
    if (input.kind === "throttle" ? !input.cpuThrottle : input.cpuThrottle && !TAKES_CPU_LIMIT.includes(input.kind)) {
      throw new AppError("VALIDATION_FAILED", `A CPU limit goes with throttle, start or resume, not ${input.kind}`, { details: { action: input.kind } });
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
      .values({ instanceId: instance.id, userId: instance.userId, kind: input.kind, reason, actorType: who.actor.kind, actorId })
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
      metadata,
    });
    return { instance: current, actionId: action!.id };
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
 * the instance row locked (`lockInstance`). `cause` names a failure that has
 * an event of its own (an OOM kill).
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
    cause?: FailureCause;
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
  await recordEvents(tx, stateChangeEvents(instance, to, opts.reason, opts.cause));
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

export async function getInstance(deps: ViewDeps, ownerId: string | null, instanceId: string) {
  return instanceView(await findInstance(deps.db, ownerId, instanceId), deps.config.ingress);
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
      .select({ instance: instances, id: instances.id, cursorAt: cursorTime(instances.createdAt) })
      .from(instances)
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
    instance: db.select().from(instances).where(eq(instances.id, sql.placeholder("id"))).prepare("compute_instance_by_id"),
    action: db.select().from(instanceActions).where(eq(instanceActions.id, sql.placeholder("id"))).prepare("compute_action_by_id"),
    list: [list(false, false), list(false, true), list(true, false), list(true, true)] as const,
  };
}
function reads(db: Database) {
  let statements = prepared.get(db);
  if (!statements) prepared.set(db, (statements = prepareReads(db)));
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
export async function listInstances(deps: ViewDeps, ownerId: string, opts: { state?: InstanceState | undefined; cursor?: string | undefined; limit?: number | undefined }) {
  const { db } = deps;
  const limit = opts.limit ?? 20;
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const statement = reads(db).list[(opts.state ? 2 : 0) + (cursor ? 1 : 0)]!;
  const rows = await statement.execute({ ownerId, state: opts.state, cursorAt: cursor?.at, cursorId: cursor?.id, limit: limit + 1 });
  return page(rows, limit, (row) => instanceView(row.instance, deps.config.ingress));
}

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

export function resumeInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & WithCpuLimit) {
  return requestAction(deps, opts.actor ? { actor: opts.actor } : platform("compute"), { instanceId, kind: "resume", reason: opts.reason, ownerId: null, ...cpuLimit(opts) });
}

/** Sets the instance's CPU limit (`millis` null: the plan's) and applies it to the container. */
export function throttleInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & { millis: number | null }) {
  return requestAction(deps, opts.actor ? { actor: opts.actor } : platform("compute"), { instanceId, kind: "throttle", reason: opts.reason, ownerId: null, cpuThrottle: { millis: opts.millis, reason: opts.reason } });
}

const cpuLimit = (opts: WithCpuLimit) => (opts.cpuThrottle ? { cpuThrottle: opts.cpuThrottle } : {});

export function stopInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & { request?: RequestInfo | null }) {
  const who = opts.actor ? { actor: opts.actor, request: opts.request ?? null } : platform("compute");
  return requestAction(deps, who, { instanceId, kind: "stop", reason: opts.reason, ownerId: null, ...(opts.note === undefined ? {} : { note: opts.note }) });
}

export function startInstance(deps: ComputeDeps, instanceId: string, opts: PlatformRequest & WithCpuLimit) {
  return requestAction(deps, opts.actor ? { actor: opts.actor } : platform("compute"), { instanceId, kind: "start", reason: opts.reason, ownerId: null, ...cpuLimit(opts) });
}

function hashRequest(request: { name: string; planId: string; imageId: string; priority: string; env: Record<string, string>; httpPort: number | null | undefined }): string {
  const env = Object.fromEntries(Object.entries(request.env).sort(([a], [b]) => (a < b ? -1 : 1)));
  return createHash("sha256")
    .update(JSON.stringify({ ...request, env }))
    .digest("hex");
}

/** An instance as clients see it. `url` is where visitors reach it (null without an HTTP port, and `urlNote` says why). */
export function instanceView(instance: Instance, ingress: Pick<IngressConfig, "domain" | "tls" | "httpPort" | "httpsPort">) {
  const url = instanceUrl(ingress, instance);
  return {
    id: instance.id,
    name: instance.name,
    state: instance.state,
    stateReason: instance.stateReason,
    stateChangedAt: instance.stateChangedAt.toISOString(),
    priority: instance.priority,
    planId: instance.planId,
    imageId: instance.imageId,
    imageReference: instance.imageReference,
    vcpus: instance.cpuMillis / 1000,
    /** The power policy's CPU limit below the plan, while it lasts. */
    cpuThrottle: instance.cpuThrottleMillis === null ? null : { vcpus: instance.cpuThrottleMillis / 1000, reason: instance.cpuThrottleReason },
    memoryMb: instance.memoryMb,
    diskGb: instance.diskGb,
    diskLimitEnforced: instance.diskLimitEnforced,
    priceHourlyMinor: instance.priceHourlyMinor,
    priceMonthlyMinor: instance.priceMonthlyMinor,
    currency: instance.currency,
    env: instance.env,
    hostId: instance.hostId,
    ipAddress: instance.ipAddress,
    httpPort: instance.httpPort,
    url,
    urlNote: url ? null : "no URL: the image serves no HTTP, or the instance was created with httpPort null",
    createdAt: instance.createdAt.toISOString(),
    updatedAt: instance.updatedAt.toISOString(),
    deletedAt: instance.deletedAt?.toISOString() ?? null,
  };
}

export type InstanceView = ReturnType<typeof instanceView>;

export function actionView(action: Action) {
  return {
    id: action.id,
    instanceId: action.instanceId,
    kind: action.kind,
    status: action.status,
    reason: action.reason,
    error: action.error,
    createdAt: action.createdAt.toISOString(),
    startedAt: action.startedAt?.toISOString() ?? null,
    finishedAt: action.finishedAt?.toISOString() ?? null,
  };
}
