import type { PowerPolicy } from "../../hardware/policy";
import { ControllerModel, type ModelOptions } from "../../hardware/simulator/model";
import { WEEK_SECONDS } from "../../hardware/simulator/week";

/**
 * What the platform's instances draw, in watts, by what they are doing. The
 * replay feeds the simulated controller the sum for the containers as Docker
 * reports them, so shedding load really slows the battery's fall.
 */
export const WATTS = {
  /** The host itself with nothing to do. */
  base: 35,
  critical: 15,
  standard: 25,
  interruptible: 35,
  /** At a quarter of its CPU. */
  throttled: 12,
  /** A frozen container still holds its memory. */
  paused: 2,
} as const;

const STEP_S = 60;

/**
 * The least the energy budget forces, computed offline on the same week and
 * the same battery: the interruptible instance runs unless the battery is
 * below the policy's critical threshold, and only for as long as it is (and
 * the standard one likewise below shutdown). Shedding at the last moment and
 * for no longer loses nothing to a battery that is later full, so no policy
 * can shed less and hold those thresholds.
 */
export function minimumShedding(model: Omit<ModelOptions, "scenario">, policy: PowerPolicy) {
  const m = new ControllerModel({ ...model, scenario: "week" });
  let interruptibleOffS = 0;
  let standardOffS = 0;
  let lowestSoc = 100;
  for (let t = 0; t < WEEK_SECONDS; t += STEP_S) {
    const soc = m.state.soc;
    const interruptibleOff = soc < policy.thresholds.critical;
    const standardOff = soc < policy.thresholds.shutdown;
    if (interruptibleOff) interruptibleOffS += STEP_S;
    if (standardOff) standardOffS += STEP_S;
    m.setLoad(WATTS.base + WATTS.critical + (standardOff ? 0 : WATTS.standard) + (interruptibleOff ? WATTS.paused : WATTS.interruptible));
    lowestSoc = Math.min(lowestSoc, m.step(STEP_S).soc);
  }
  return { interruptibleOffHours: interruptibleOffS / 3600, standardOffHours: standardOffS / 3600, lowestSoc, disconnects: m.state.disconnects };
}
