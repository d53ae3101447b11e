import { instanceState, instancePriority, type actionKind } from "../../db/schema";
import { AppError } from "../errors";

export type InstanceState = (typeof instanceState.enumValues)[number];
export type InstancePriority = (typeof instancePriority.enumValues)[number];
export type ActionKind = (typeof actionKind.enumValues)[number];

export const INSTANCE_STATES = instanceState.enumValues;
export const PRIORITIES = instancePriority.enumValues;

/**
 * The instance state machine: every state change, by request, by a lifecycle
 * job or by the reconciler, must be an edge of this graph.
 *
 * provisioning → deleting and stopping → deleting exist for one case only: a
 * delete that cancels a start or stop the worker has not picked up yet.
 */
const TRANSITIONS: Record<InstanceState, readonly InstanceState[]> = {
  pending: ["provisioning", "deleting", "error"],
  provisioning: ["running", "deleting", "error"],
  running: ["stopping", "paused", "stopped", "deleting", "error"],
  // stopping → running is a restart completing.
  stopping: ["stopped", "running", "deleting", "error"],
  stopped: ["provisioning", "deleting", "error"],
  paused: ["running", "stopping", "stopped", "deleting", "error"],
  deleting: ["deleted", "error"],
  error: ["provisioning", "stopping", "stopped", "deleting"],
  deleted: [],
};

export function canTransition(from: InstanceState, to: InstanceState): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * What each requested action needs: the states it may start from, and the
 * state the instance shows while the lifecycle worker carries it out (none for
 * pause and resume, which are near-instant and have no in-between state).
 */
export const ACTION_RULES: Record<Exclude<ActionKind, "create" | "resize">, { from: readonly InstanceState[]; during: InstanceState | null }> = {
  start: { from: ["stopped", "error"], during: "provisioning" },
  stop: { from: ["running", "paused", "error"], during: "stopping" },
  restart: { from: ["running"], during: "stopping" },
  delete: { from: ["pending", "provisioning", "running", "stopping", "stopped", "paused", "error"], during: "deleting" },
  pause: { from: ["running"], during: null },
  resume: { from: ["paused"], during: null },
  // Applies the instance's CPU limit (the power policy's throttle) to its container; the state does not change.
  throttle: { from: ["running", "paused"], during: null },
};

/** The state a successful action leaves the instance in; null: the state it had (a throttle leaves the state alone; a resize keeps a running instance running and a stopped one stopped). */
export const ACTION_OUTCOME: Record<ActionKind, InstanceState | null> = {
  create: "running",
  start: "running",
  stop: "stopped",
  restart: "running",
  delete: "deleted",
  pause: "paused",
  resume: "running",
  throttle: null,
  resize: null,
};

export function assertTransition(from: InstanceState, to: InstanceState, what: string): void {
  if (!canTransition(from, to)) {
    throw new AppError("INVALID_TRANSITION", `Cannot ${what} an instance that is ${from}`, { details: { state: from, target: to } });
  }
}

/** Instances whose container should exist and be up. */
export const LIVE_STATES: readonly InstanceState[] = ["running", "paused"];

/** Shedding order under a power emergency: the least important first. */
export const PRIORITY_SHED_ORDER: readonly InstancePriority[] = ["interruptible", "standard", "critical"];

/**
 * The reason the power-emergency worker records when it pauses or stops an
 * instance. Billing credits time spent in those states; recovery resumes only
 * what carries it.
 */
export const POWER_EMERGENCY_REASON = "power_emergency";

/** The reason recovery records when it resumes or starts what the power emergency paused or stopped. */
export const POWER_RESTORED_REASON = "power_restored";
