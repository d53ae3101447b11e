import * as v from "valibot";
import { isWorse, type PowerLevel } from "../server/energy/levels";

/**
 * The power policy: which level the platform runs at for a battery state of
 * charge. Going down happens below a threshold; coming back up needs the SOC
 * to clear the threshold by `hysteresis` points. Either move happens only after
 * the new level has been called for continuously for the dwell time
 * (`dwellSeconds` going down, `recoveryDwellSeconds` coming back up), so a SOC
 * wobbling around a threshold does not flap the level.
 */
const percent = v.pipe(v.number(), v.minValue(0), v.maxValue(100));

export const PowerPolicySchema = v.pipe(
  v.strictObject({
    thresholds: v.strictObject({
      /** Below this SOC (%): conserve. */
      conserve: percent,
      /** Below this SOC (%): critical. */
      critical: percent,
      /** Below this SOC (%): shutdown. */
      shutdown: percent,
    }),
    /** Points of SOC above a threshold needed to leave the level below it. */
    hysteresis: v.pipe(v.number(), v.minValue(0), v.maxValue(25)),
    dwellSeconds: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(3600)),
    recoveryDwellSeconds: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(86_400)),
  }),
  v.forward(
    v.partialCheck(
      [
        ["thresholds", "conserve"],
        ["thresholds", "critical"],
        ["thresholds", "shutdown"],
      ],
      ({ thresholds: t }) => t.shutdown > 0 && t.shutdown < t.critical && t.critical < t.conserve,
      "thresholds must be ordered: 0 < shutdown < critical < conserve",
    ),
    ["thresholds"],
  ),
  v.forward(
    v.partialCheck(
      [["thresholds", "conserve"], ["hysteresis"]],
      ({ thresholds, hysteresis }) => thresholds.conserve + hysteresis <= 100,
      "conserve + hysteresis must not exceed 100, or the platform could never return to normal",
    ),
    ["hysteresis"],
  ),
);

export type PowerPolicy = v.InferOutput<typeof PowerPolicySchema>;

export const DEFAULT_POLICY: PowerPolicy = {
  thresholds: { conserve: 50, critical: 30, shutdown: 15 },
  hysteresis: 5,
  dwellSeconds: 30,
  recoveryDwellSeconds: 300,
};

/** The level a SOC calls for, ignoring hysteresis and dwell. */
export function levelForSoc(policy: PowerPolicy, soc: number): PowerLevel {
  const t = policy.thresholds;
  if (soc < t.shutdown) return "shutdown";
  if (soc < t.critical) return "critical";
  if (soc < t.conserve) return "conserve";
  return "normal";
}

/** The level a SOC calls for from `current`: worse at once, better only past the hysteresis band. */
export function targetLevel(policy: PowerPolicy, current: PowerLevel, soc: number): PowerLevel {
  const raw = levelForSoc(policy, soc);
  if (isWorse(raw, current)) return raw;
  const recovered = levelForSoc(policy, soc - policy.hysteresis);
  return isWorse(current, recovered) ? recovered : current;
}

export type PolicyState = {
  level: PowerLevel;
  /** A level change being called for, and since when (ms), while the dwell runs. */
  pending: { direction: "down" | "up"; since: number } | null;
  lastAt: number | null;
};

export function initialPolicyState(level: PowerLevel): PolicyState {
  return { level, pending: null, lastAt: null };
}

/** `soc`: the state of charge called for the change; `forecast`: the forecast's floor did (a step down ahead of the battery). */
export type ChangeCause = "soc" | "forecast";
export type Evaluation = { state: PolicyState; change: { from: PowerLevel; to: PowerLevel; cause: ChangeCause } | null };

/**
 * One step of the policy for a SOC observed at `at` (ms). Pure: returns the
 * next state and, when the dwell has run out, the change to make. The caller
 * commits the change (records it) and only then adopts the returned state, so
 * a change that failed to record is called for again by the next reading.
 * A gap in readings longer than `maxGapMs` restarts the dwell: a change must be
 * confirmed by readings, not by the clock alone.
 *
 * `floor` is the level the runway forecast calls for ahead of time: the
 * target is never better than it, so the platform can step down before the
 * SOC gets there, and does not step back up while the forecast still expects
 * the crossing.
 */
export function evaluatePolicy(policy: PowerPolicy, state: PolicyState, soc: number, at: number, maxGapMs = Infinity, floor: PowerLevel = "normal"): Evaluation {
  const gap = state.lastAt !== null && at - state.lastAt > maxGapMs;
  const bySoc = targetLevel(policy, state.level, soc);
  const target = isWorse(floor, bySoc) ? floor : bySoc;
  if (target === state.level) return { state: { level: state.level, pending: null, lastAt: at }, change: null };

  const direction = isWorse(target, state.level) ? "down" : "up";
  const since = state.pending && state.pending.direction === direction && !gap ? state.pending.since : at;
  const dwellMs = (direction === "down" ? policy.dwellSeconds : policy.recoveryDwellSeconds) * 1000;
  if (at - since >= dwellMs) {
    return { state: { level: target, pending: null, lastAt: at }, change: { from: state.level, to: target, cause: target === bySoc ? "soc" : "forecast" } };
  }
  return { state: { level: state.level, pending: { direction, since }, lastAt: at }, change: null };
}
