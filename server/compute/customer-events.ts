import type { NewEvent } from "../events/outbox";
import type { Instance } from "./instances";
import { POWER_EMERGENCY_REASON, POWER_RESTORED_REASON, type InstanceState } from "./states";

/**
 * States a customer acts on. The in-between ones (pending, provisioning,
 * stopping, deleting) are left out of the event stream: every action passes
 * through one, so reporting them would double the events and mails for no
 * decision anyone takes on them (the action itself is pollable).
 */
const SETTLED: readonly InstanceState[] = ["running", "paused", "stopped", "error", "deleted"];

/**
 * The customer events a state change makes, written by `changeState` in the
 * same transaction. Power: a pause or stop the emergency made
 * (POWER_EMERGENCY_REASON) is `power.paused`; running again through recovery
 * (POWER_RESTORED_REASON) is `power.resumed`.
 */
export function stateChangeEvents(instance: Instance, to: InstanceState, reason: string): NewEvent[] {
  const userId = instance.userId;
  const subject = { instanceId: instance.id, name: instance.name };
  const events: NewEvent[] = [];
  if (SETTLED.includes(to)) events.push({ type: "instance.state_changed", userId, data: { ...subject, from: instance.state, to, reason } });
  // An OOM kill has its own event, raised per kill from the engine's `oom` event (reconcile.ts, recordOomKill).
  if (to === "error") events.push({ type: "instance.failed", userId, data: { ...subject, from: instance.state, reason } });
  if ((to === "paused" || to === "stopped") && reason === POWER_EMERGENCY_REASON) {
    events.push({ type: "power.paused", userId, data: { ...subject, priority: instance.priority, state: to } });
  }
  if (to === "running" && reason === POWER_RESTORED_REASON) {
    events.push({ type: "power.resumed", userId, data: { ...subject, priority: instance.priority } });
  }
  return events;
}
