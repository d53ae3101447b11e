import type { InstanceState } from "../compute/states";
import { POWER_EMERGENCY_REASON } from "../compute/states";
import { HOUR_MS, hourFloor } from "./periods";

/**
 * Pure accounting of one metering window: which part of (from, to] an
 * instance spent running, paused, or paused by a power emergency, hour by
 * hour, read from its state history. Because durations come from the
 * history's timestamps and not from how often a tick ran, a late, missed or
 * repeated tick changes nothing.
 */

export type HistoryRow = { seq: number; fromState: InstanceState | null; toState: InstanceState; reason: string; at: Date };

/** The state in force at a cursor, and the last (re)start of the container before it. */
export type CursorState = { state: InstanceState; reason: string; startSeq: number | null };

export type HourUsage = { hour: number; runningMs: number; pausedMs: number; emergencyPausedMs: number };

export const liveMs = (usage: HourUsage) => usage.runningMs + usage.pausedMs + usage.emergencyPausedMs;

/** A (re)start: counters begin again from zero. Resuming a paused container is not one. */
export function isStart(row: Pick<HistoryRow, "fromState" | "toState">): boolean {
  return row.toState === "running" && row.fromState !== "paused";
}

/**
 * Accounts (fromMs, toMs] given the state at fromMs and the history rows
 * stamped inside the window, in seq order. Returns the hours that saw any
 * running or paused time and the state at toMs.
 */
export function accountWindow(fromMs: number, toMs: number, start: CursorState, rows: readonly HistoryRow[]): { hours: HourUsage[]; end: CursorState } {
  const hours = new Map<number, HourUsage>();
  let state = start.state;
  let reason = start.reason;
  let startSeq = start.startSeq;
  let t = fromMs;
  const close = (until: number) => {
    // A row stamped before an earlier one (its transaction began first) never moves time backwards.
    const end = Math.min(Math.max(until, t), toMs);
    if (state === "running" || state === "paused") addSpan(hours, t, end, state === "running" ? "runningMs" : reason === POWER_EMERGENCY_REASON ? "emergencyPausedMs" : "pausedMs");
    t = end;
  };
  for (const row of rows) {
    close(row.at.getTime());
    state = row.toState;
    reason = row.reason;
    if (isStart(row)) startSeq = row.seq;
  }
  close(toMs);
  return { hours: [...hours.values()].sort((a, b) => a.hour - b.hour), end: { state, reason, startSeq } };
}

function addSpan(hours: Map<number, HourUsage>, from: number, to: number, field: "runningMs" | "pausedMs" | "emergencyPausedMs") {
  for (let t = from; t < to; ) {
    const hour = hourFloor(t);
    const end = Math.min(to, hour + HOUR_MS);
    let usage = hours.get(hour);
    if (!usage) {
      usage = { hour, runningMs: 0, pausedMs: 0, emergencyPausedMs: 0 };
      hours.set(hour, usage);
    }
    usage[field] += end - t;
    t = end;
  }
}

/**
 * How much a cumulative counter grew since the baseline. After a reset (the
 * container was restarted, replaced, or the value went down) the counter
 * started again from zero, so all of it is new.
 */
export function counterDelta(current: number, baseline: number | null, reset: boolean): number {
  if (reset || baseline === null || current < baseline) return current;
  return current - baseline;
}

/**
 * Splits an integer total over weights without losing a unit: each share is
 * rounded down and the remainder goes to the largest weight. With no weight
 * at all the total goes to the last slot.
 */
export function apportion(total: number, weights: readonly number[]): number[] {
  if (weights.length === 0) return [];
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum <= 0) return weights.map((_, i) => (i === weights.length - 1 ? total : 0));
  const shares = weights.map((w) => Math.floor((total * w) / sum));
  let largest = 0;
  for (let i = 1; i < weights.length; i++) if (weights[i]! > weights[largest]!) largest = i;
  shares[largest] = shares[largest]! + total - shares.reduce((a, b) => a + b, 0);
  return shares;
}

export type PlanChange = { seq: number; at: Date };
export type SegmentUsage = HourUsage & { planSeq: number };

/**
 * As `accountWindow`, split where the instance's plan changed (a resize):
 * each part of the window is attributed to the plan in force then, so an
 * hour in which the plan changed yields one entry per plan. `planSeq` is the
 * plan in force at `fromMs`; `changes` are those stamped inside the window.
 */
export function accountSegments(
  fromMs: number,
  toMs: number,
  start: CursorState & { planSeq: number },
  rows: readonly HistoryRow[],
  changes: readonly PlanChange[],
): { hours: SegmentUsage[]; end: CursorState; planSeq: number } {
  const hours: SegmentUsage[] = [];
  let state: CursorState = { state: start.state, reason: start.reason, startSeq: start.startSeq };
  let planSeq = start.planSeq;
  let t = fromMs;
  const ordered = [...changes].sort((a, b) => a.seq - b.seq);
  for (const change of [...ordered, null]) {
    const end = change ? Math.min(Math.max(change.at.getTime(), t), toMs) : toMs;
    const inside = rows.filter((row) => row.at.getTime() > t && (change ? row.at.getTime() <= end : true));
    const part = accountWindow(t, end, state, inside);
    hours.push(...part.hours.map((h) => ({ ...h, planSeq })));
    state = part.end;
    t = end;
    if (change) planSeq = change.seq;
  }
  return { hours, end: state, planSeq };
}
