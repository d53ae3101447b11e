import { and, desc, eq, inArray, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyEvents, instanceActions, instances } from "../../db/schema";
import { systemActor } from "../auth/actor";
import { recordAudit } from "../audit";
import { pauseInstance, pauseInstances, resumeInstance, startInstance, stopInstance, throttleInstance, type ComputeDeps } from "../compute/instances";
import { freezeGroupOf, groupFrozen, setGroupFrozen, thawWhenPausesSettled } from "../compute/freezer";
import { POWER_EMERGENCY_REASON, POWER_RESTORED_REASON, PRIORITIES, PRIORITY_SHED_ORDER, type ActionKind, type InstancePriority, type InstanceState } from "../compute/states";
import { AppError, isAppError } from "../errors";
import { mapBounded } from "../billing/counters";
import { backupSignalFor, invokeBackupHook } from "./backup-hook";
import type { EnergyClock } from "./clock";
import { recordEnergyEvent } from "./events";
import type { PowerLevel } from "./levels";
import { lastBackToNormal, noticePowerEpisode, powerEpisodeOf } from "./notices";
import { latestLevelChange, type LevelChange, type PowerEmergencyPayload } from "./power";
import { admits, shedAction, throttledCpuMillis, throttles } from "./restrictions";
import { energyClockOf } from "./telemetry";

/**
 * The power-emergency worker's logic. Every job — a level change, a retry, a
 * duplicate, a stale one, the periodic pass — does the same thing: converge
 * the instances (and the backup-power signal) to what the *current* level
 * requires (LEVEL_RESTRICTIONS). Nothing depends on which job came first, so
 * an out-of-order, repeated or missed job cannot leave the platform wrong.
 *
 * All effects go through compute's request functions with the emergency's
 * system actor: each pause or stop is a checked transition, audited, with
 * POWER_EMERGENCY_REASON in the state history (billing credits that time);
 * recovery brings back only instances whose current pause or stop carries it.
 * The throttle rung (conserve) is a compute `throttle` action too: the CPU
 * limit is recorded on the instance with its reason, and recovery gives it
 * back — with the resume or start when the instance is also held.
 *
 * Time (the recovery stagger, event stamps) is the energy clock's, so a
 * simulated controller running faster than life staggers in simulated time.
 */

export type EmergencyDeps = ComputeDeps;

export const EMERGENCY_ACTOR = systemActor("power-emergency");
/** Recorded on the actions and state changes recovery makes (defined beside POWER_EMERGENCY_REASON, where compute's events read it). */
export { POWER_RESTORED_REASON };

export type EmergencyAction = "throttle" | "pause" | "stop" | "resume" | "start" | "unthrottle";
/** `unthrottle` on a resume or start: give the plan's CPU back in the same action. */
export type EmergencyStep = { instanceId: string; priority: InstancePriority; action: EmergencyAction; unthrottle?: true };

/** What the planner needs to know about an instance. */
export type Candidate = {
  id: string;
  priority: InstancePriority;
  state: InstanceState;
  stateReason: string | null;
  createdAt: Date;
  /** The plan's CPU, and the power policy's limit below it if one is in force. */
  cpuMillis: number;
  throttledByPower: boolean;
  /** The action pending or running on it, if any (there is at most one). */
  openAction: { kind: ActionKind; reason: string } | null;
};

/** Actions whose success leaves the instance running (a throttle leaves it as it was: running, if it was). */
const ENDS_RUNNING: readonly ActionKind[] = ["create", "start", "restart", "resume", "throttle"];
/** The actions the emergency sheds load with. */
const SHEDS: readonly ActionKind[] = ["pause", "stop", "throttle"];
/** States worth looking at: up, held by the emergency, or on the way up. */
const CANDIDATE_STATES: InstanceState[] = ["running", "paused", "stopped", "pending", "provisioning", "stopping"];

const shedRank = (p: InstancePriority) => PRIORITY_SHED_ORDER.indexOf(p);
const byAge = (a: Candidate, b: Candidate) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * What converging to `level` takes, from a snapshot of the instances. Pure.
 * - `shed`: running instances of a priority the level sheds (least important
 *   first), instances the emergency paused that the level now stops, and
 *   running instances the level throttles that are not throttled yet.
 * - `restore`: instances whose pause or stop carries POWER_EMERGENCY_REASON
 *   and whose priority the level admits again, most important first (with
 *   their CPU given back if the level no longer throttles them), and running
 *   instances the power policy throttled that the level no longer throttles.
 * - `waiting`: instances whose action in flight will need undoing once it
 *   lands — on their way to running (a create, start, restart or throttle)
 *   while the level sheds them, or being paused, stopped or throttled by the
 *   emergency while the level already admits them again.
 * Instances with any other action in flight are left to it.
 */
export function planConvergence(level: PowerLevel, candidates: readonly Candidate[]) {
  const shed: EmergencyStep[] = [];
  const restore: EmergencyStep[] = [];
  const waiting: string[] = [];
  const ordered = [...candidates].sort((a, b) => shedRank(a.priority) - shedRank(b.priority) || byAge(a, b));
  for (const c of ordered) {
    const held = c.stateReason === POWER_EMERGENCY_REASON && (c.state === "paused" || c.state === "stopped");
    const rule = shedAction(level, c.priority);
    const throttled = throttles(level, c.priority);
    const step = (action: EmergencyAction, extra: Partial<EmergencyStep> = {}): EmergencyStep => ({ instanceId: c.id, priority: c.priority, action, ...extra });
    if (rule) {
      if (c.openAction) {
        if (ENDS_RUNNING.includes(c.openAction.kind)) waiting.push(c.id);
        continue;
      }
      if (c.state === "running") shed.push(step(rule));
      // Paused by an earlier, milder level: a paused container still holds its memory.
      else if (rule === "stop" && c.state === "paused" && held) shed.push(step("stop"));
    } else if (admits(level, c.priority)) {
      if (c.openAction) {
        if (c.openAction.reason === POWER_EMERGENCY_REASON && SHEDS.includes(c.openAction.kind)) waiting.push(c.id);
        continue;
      }
      const giveBack = c.throttledByPower && !throttled;
      if (held) restore.push(step(c.state === "paused" ? "resume" : "start", giveBack ? { unthrottle: true } : {}));
      else if (c.state === "running" && giveBack) restore.push(step("unthrottle"));
      else if (c.state === "running" && throttled && !c.throttledByPower) shed.push(step("throttle"));
    } else if (throttled && c.state === "running" && !c.throttledByPower) {
      // Not admitted, not shed: the first rung of the ladder (interruptible at conserve).
      if (c.openAction) {
        if (ENDS_RUNNING.includes(c.openAction.kind)) waiting.push(c.id);
        continue;
      }
      shed.push(step("throttle"));
    }
  }
  restore.sort((a, b) => shedRank(b.priority) - shedRank(a.priority));
  return { shed, restore, waiting };
}

async function candidates(db: Database): Promise<Candidate[]> {
  return db
    .select({
      id: instances.id,
      priority: instances.priority,
      state: instances.state,
      stateReason: instances.stateReason,
      createdAt: instances.createdAt,
      cpuMillis: instances.cpuMillis,
      throttleReason: instances.cpuThrottleReason,
      openKind: instanceActions.kind,
      openReason: instanceActions.reason,
    })
    .from(instances)
    .leftJoin(instanceActions, and(eq(instanceActions.instanceId, instances.id), inArray(instanceActions.status, ["pending", "running"])))
    .where(inArray(instances.state, CANDIDATE_STATES))
    .then((rows) =>
      rows.map(({ openKind, openReason, throttleReason, ...c }) => ({
        ...c,
        throttledByPower: throttleReason === POWER_EMERGENCY_REASON,
        openAction: openKind && openReason !== null ? { kind: openKind, reason: openReason } : null,
      })),
    );
}

/** The compute request each step makes. */
function request(deps: EmergencyDeps, step: EmergencyStep, candidate: Candidate | undefined, reason: string) {
  const opts = { reason, actor: EMERGENCY_ACTOR };
  const giveBack = { ...opts, cpuThrottle: { millis: null, reason } };
  switch (step.action) {
    case "pause":
      return pauseInstance(deps, step.instanceId, opts);
    case "stop":
      return stopInstance(deps, step.instanceId, opts);
    case "resume":
      return resumeInstance(deps, step.instanceId, step.unthrottle ? giveBack : opts);
    case "start":
      return startInstance(deps, step.instanceId, step.unthrottle ? giveBack : opts);
    case "throttle":
      return throttleInstance(deps, step.instanceId, { ...opts, millis: throttledCpuMillis(candidate?.cpuMillis ?? 1000, deps.config.energy.emergency.throttlePercent) });
    case "unthrottle":
      return throttleInstance(deps, step.instanceId, { ...opts, millis: null });
  }
}

export type Convergence = {
  level: PowerLevel;
  /** The level change converged to (null: none was ever recorded, the level is `normal`). */
  changeId: string | null;
  shed: Array<EmergencyStep & { actionId: string }>;
  restored: Array<EmergencyStep & { actionId: string }>;
  /** Instances that could not be acted on yet (busy, or on their way to running); a later pass gets them. */
  deferred: string[];
  /** The level changed while recovery was staggering; the newer change's job takes over. */
  superseded: boolean;
};

/** Shedding requests in flight at once: below the database pool (DATABASE_POOL_MAX, 10 by default), which the lifecycle workers share. */
const SHED_CONCURRENCY = 6;

/**
 * Brings the instances to what the level of `latest` requires: sheds at once,
 * then restores one instance every EMERGENCY_RESUME_STAGGER_MS, most important
 * first, stopping as soon as the level changes again. One busy instance never
 * blocks the others: it is reported in `deferred`.
 */
export async function convergeInstances(deps: EmergencyDeps, latest: LevelChange | null, clock?: EnergyClock): Promise<Convergence> {
  const { db, config, log } = deps;
  const level = latest?.toLevel ?? "normal";
  const snapshot = await candidates(db);
  const byId = new Map(snapshot.map((c) => [c.id, c]));
  const plan = planConvergence(level, snapshot);
  const energyClock = clock ?? (await energyClockOf(db));
  const result: Convergence = { level, changeId: latest?.id ?? null, shed: [], restored: [], deferred: [...plan.waiting], superseded: false };

  type Outcome = { done: EmergencyStep & { actionId: string } } | "deferred" | "skipped" | "restricted";
  const apply = async (step: EmergencyStep, reason: string): Promise<Outcome> => {
    try {
      const { actionId } = await request(deps, step, byId.get(step.instanceId), reason);
      return { done: { ...step, actionId } };
    } catch (error) {
      // Changed since the snapshot: another action got there first (retry later), or it was deleted.
      if (isAppError(error, "INVALID_TRANSITION")) return "deferred";
      if (isAppError(error, "POWER_RESTRICTED")) return "restricted";
      if (!isAppError(error, "NOT_FOUND")) throw error;
      return "skipped";
    }
  };
  const record = (step: EmergencyStep, outcome: Outcome, into: Convergence["shed"]) => {
    if (typeof outcome === "object") into.push(outcome.done);
    else if (outcome === "deferred") result.deferred.push(step.instanceId);
  };

  const shedding = plan.shed.filter((step) => step.action === "pause" || step.action === "stop");
  const pauses = plan.shed.filter((step) => step.action === "pause");
  await releaseFreezeGroups(deps, level);
  // The pauses' priorities' freeze groups first: their containers stop in microseconds, before any action is recorded.
  const frozen = [...new Set(pauses.map((step) => step.priority))].filter((priority) => setGroupFrozen(freezeGroupOf(config, priority), true));
  if (frozen.length) log.info("power emergency: freeze groups frozen", { level, priorities: frozen });
  // The pauses (the bulk of a shed: every interruptible instance at once) go out as one batch, one
  // transaction and one queue round trip; stops and throttles alongside, SHED_CONCURRENCY at a time.
  // The owners' notices are recorded meanwhile: they reach owners through the outbox well before the
  // pauses' own events, which are written when the engine has done them.
  const others = plan.shed.filter((step) => step.action !== "pause");
  const [paused, shedOthers] = await Promise.all([
    pauses.length
      ? pauseInstances(
          deps,
          pauses.map((step) => step.instanceId),
          { reason: POWER_EMERGENCY_REASON, actor: EMERGENCY_ACTOR },
        )
      : new Map<string, never>(),
    mapBounded(others, SHED_CONCURRENCY, (step) => apply(step, POWER_EMERGENCY_REASON)),
    shedding.length && latest ? noticeOwners(deps, latest, shedding) : undefined,
  ]);
  const outcomes = new Map<EmergencyStep, Outcome>(others.map((step, i) => [step, shedOthers[i]!]));
  for (const step of pauses) {
    const outcome = paused.get(step.instanceId);
    if (!outcome || outcome instanceof AppError) {
      if (outcome && !isAppError(outcome, "INVALID_TRANSITION") && !isAppError(outcome, "NOT_FOUND")) throw outcome;
      outcomes.set(step, outcome && isAppError(outcome, "INVALID_TRANSITION") ? "deferred" : "skipped");
    } else outcomes.set(step, { done: { ...step, actionId: outcome.actionId } });
  }
  for (const step of plan.shed) record(step, outcomes.get(step)!, result.shed);
  // With no pause recorded after all (every instance busy or gone), nothing would thaw the group: do it now.
  for (const priority of frozen) await thawWhenPausesSettled(deps, priority);

  for (const [i, step] of plan.restore.entries()) {
    if (i > 0 && !(await stillCurrent(db, latest, config.energy.emergency.resumeStaggerMs, energyClock))) {
      result.superseded = true;
      break;
    }
    const outcome = await apply(step, POWER_RESTORED_REASON);
    // The level moved between the read and the request: leave the rest to the newer change's job.
    if (outcome === "restricted") {
      result.superseded = true;
      break;
    }
    record(step, outcome, result.restored);
  }

  await recordEffects(db, result, latest, energyClock);
  if (result.shed.length || result.restored.length || result.deferred.length) {
    log.info("power emergency: instances converged", {
      level,
      shed: result.shed.map((s) => `${s.action} ${s.instanceId}`),
      restored: result.restored.map((s) => `${s.action} ${s.instanceId}`),
      deferred: result.deferred,
      superseded: result.superseded,
    });
  }
  return result;
}

/**
 * Thaws the freeze groups this pass does not need: those of priorities the
 * level does not pause (recovery: before any resume, which the group would
 * hold), and those whose pauses have all landed but whose last pause's
 * release never ran (its worker died).
 */
async function releaseFreezeGroups(deps: EmergencyDeps, level: PowerLevel): Promise<void> {
  for (const priority of PRIORITIES) {
    const group = freezeGroupOf(deps.config, priority);
    if (!groupFrozen(group)) continue;
    const thawed = shedAction(level, priority) === "pause" ? await thawWhenPausesSettled(deps, priority) : setGroupFrozen(group, false);
    if (thawed) deps.log.info("power emergency: freeze group thawed", { level, priority });
  }
}

/**
 * Owners hear before their instances are shed (power.notice, once per
 * episode and instance): ahead of time when the runway forecast saw it coming
 * (server/energy/forecast-warning.ts), else here, at the level change itself.
 * A failure to notify never holds up the shedding.
 */
async function noticeOwners(deps: EmergencyDeps, latest: LevelChange, shed: readonly EmergencyStep[]): Promise<void> {
  try {
    const episodeId = await powerEpisodeOf(deps.db, latest);
    const coveredSince = await lastBackToNormal(deps.db, latest.seq);
    await noticePowerEpisode(deps.db, { level: latest.toLevel, expectedAt: new Date(), instanceIds: shed.map((s) => s.instanceId), episodeId, coveredSince });
  } catch (error) {
    deps.log.warn("power notices could not be recorded; shedding anyway", { changeId: latest.id, error: (error as Error).message });
  }
}

/** Waits `ms` of energy time, checking that no newer level change has been recorded meanwhile. */
async function stillCurrent(db: Database, latest: LevelChange | null, ms: number, clock: EnergyClock): Promise<boolean> {
  const until = clock.now() + ms;
  for (;;) {
    const now = await latestLevelChange(db);
    if ((now?.id ?? null) !== (latest?.id ?? null)) return false;
    const left = until - clock.now();
    if (left <= 0) return true;
    await clock.sleep(Math.min(left, 250 * clock.speed));
  }
}

const counted = (n: number, what: string) => `${what} ${n} instance${n === 1 ? "" : "s"}`;

const PAST: Record<EmergencyAction, string> = { throttle: "throttled", pause: "paused", stop: "stopped", resume: "resumed", start: "started", unthrottle: "unthrottled" };

/** One event per pass that did something, for the operators' energy event log. */
async function recordEffects(db: Database, result: Convergence, latest: LevelChange | null, clock: EnergyClock): Promise<void> {
  const ids = (steps: Convergence["shed"], action: EmergencyAction) => steps.filter((s) => s.action === action).map((s) => s.instanceId);
  const summary = (steps: Convergence["shed"], actions: EmergencyAction[]) =>
    actions
      .map((a) => [a, ids(steps, a).length] as const)
      .filter(([, n]) => n > 0)
      .map(([a, n]) => counted(n, PAST[a]))
      .join(", ");
  if (result.shed.length) {
    await recordEnergyEvent(db, {
      at: new Date(clock.now()),
      kind: "instances_shed",
      severity: "warning",
      message: `Power level ${result.level}: ${summary(result.shed, ["throttle", "pause", "stop"])}`,
      levelChangeId: latest?.id ?? null,
      details: { level: result.level, throttled: ids(result.shed, "throttle"), paused: ids(result.shed, "pause"), stopped: ids(result.shed, "stop") },
    });
  }
  if (result.restored.length) {
    const unthrottled = [...ids(result.restored, "unthrottle"), ...result.restored.filter((s) => s.unthrottle).map((s) => s.instanceId)];
    await recordEnergyEvent(db, {
      at: new Date(clock.now()),
      kind: "instances_restored",
      severity: "info",
      message: `Power level ${result.level}: ${summary(result.restored, ["resume", "start", "unthrottle"])}`,
      levelChangeId: latest?.id ?? null,
      details: { level: result.level, resumed: ids(result.restored, "resume"), started: ids(result.restored, "start"), unthrottled, superseded: result.superseded },
    });
  }
}

/**
 * Tells the backup power system (BACKUP_HOOK_URL) to take over or hand back,
 * when the current level is on the other side of BACKUP_HOOK_LEVEL from the
 * last signal sent. Comparing with what was last *sent* rather than with the
 * job's `from` keeps it right when jobs arrive late, twice or not at all.
 * Rejects when the hook fails, so the job is retried.
 */
export async function signalBackupPower(deps: EmergencyDeps, latest: LevelChange | null) {
  const { db, config } = deps;
  const hook = config.energy.backupHook;
  if (!hook.url || !latest) return null;
  // Passes in other worker processes take turns, so each crossing is signalled once.
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${BACKUP_SIGNAL_LOCK})`);
    const [last] = await tx
      .select({ details: energyEvents.details })
      .from(energyEvents)
      .where(eq(energyEvents.kind, "backup_signalled"))
      .orderBy(desc(energyEvents.at), desc(energyEvents.id))
      .limit(1);
    const onBackup = last?.details?.signal === "switch-to-backup";
    const signal = backupSignalFor(onBackup ? hook.level : "normal", latest.toLevel, hook.level);
    if (!signal) return null;
    const answer = await invokeBackupHook(hook, { signal, changeId: latest.id, from: latest.fromLevel, to: latest.toLevel, at: latest.at.toISOString(), soc: latest.soc });
    const details = { signal, level: latest.toLevel, status: answer?.status ?? null };
    await recordEnergyEvent(tx, {
      at: new Date((await energyClockOf(tx)).now()),
      kind: "backup_signalled",
      severity: signal === "switch-to-backup" ? "warning" : "info",
      message: `Backup power hook told to ${signal} (power level ${latest.toLevel})`,
      levelChangeId: latest.id,
      details,
    });
    await recordAudit(tx, { actor: EMERGENCY_ACTOR }, { action: "energy.backup.signalled", targetType: "energy_level_change", targetId: latest.id, metadata: details });
    deps.log.warn("backup power signalled", { ...details, changeId: latest.id });
    return signal;
  });
}

// Any fixed value; it keys the lock around reading, sending and recording the backup signal.
const BACKUP_SIGNAL_LOCK = 40_420;

/**
 * Converges instances and the backup signal to the current level, both at
 * once: a slow or failing hook must not delay shedding load. Rejects (after
 * the instances are done) when the hook failed.
 */
export async function enforcePowerLevel(deps: EmergencyDeps, latest?: LevelChange | null) {
  const change = latest === undefined ? await latestLevelChange(deps.db) : latest;
  const [backup, converged] = await Promise.allSettled([signalBackupPower(deps, change), convergeInstances(deps, change)]);
  if (converged.status === "rejected") throw converged.reason;
  if (backup.status === "rejected") throw backup.reason;
  return { ...converged.value, backupSignal: backup.value };
}

export class InstancesBusyError extends Error {
  override name = "InstancesBusyError";
}

/**
 * The power-emergency job. Whatever change it carries, it converges to the
 * latest recorded one; a job older than that (lower `seq`) is stale and only
 * logged as such. Throws when instances had to be deferred, so the job is
 * retried soon with backoff (the periodic pass catches any left after that).
 */
export async function handlePowerEmergency(deps: EmergencyDeps, job: PowerEmergencyPayload) {
  const latest = await latestLevelChange(deps.db);
  const stale = !latest || job.seq < latest.seq || latest.id !== job.changeId;
  if (stale) {
    deps.log.info("stale power-emergency job: converging to the current level instead", {
      changeId: job.changeId,
      seq: job.seq,
      to: job.to,
      current: latest?.toLevel ?? "normal",
      currentSeq: latest?.seq ?? 0,
    });
  }
  const result = await enforcePowerLevel(deps, latest);
  if (result.deferred.length && !result.superseded) {
    throw new InstancesBusyError(`${result.deferred.length} instance(s) could not be acted on yet (busy or starting): ${result.deferred.join(", ")}`);
  }
  return { stale, ...result };
}
