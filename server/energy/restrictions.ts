import type { Database } from "../../db/client";
import type { InstancePriority } from "../compute/states";
import { AppError } from "../errors";
import type { PowerLevel } from "./levels";
import { currentPowerLevel } from "./power";

/** What the emergency does to a running instance whose priority a level sheds. */
export type ShedAction = "pause" | "stop";

/**
 * What each power level restricts, by instance priority. `admits`: the
 * priorities whose instances may be created, started or resumed (by a user or
 * by recovery). `sheds`: what happens to running instances of a priority.
 *
 * Shutdown stops interruptible instances rather than leaving them paused: a
 * paused container still holds its memory, and at shutdown the host keeps
 * only what critical instances need.
 *
 * An instance the emergency paused or stopped comes back as soon as the level
 * admits its priority again, so recovery follows the table too: standard
 * instances at `conserve`, interruptible ones at `normal`.
 *
 * `throttles`: the first rung of the ladder. From `conserve` down, running
 * instances of these priorities keep only EMERGENCY_THROTTLE_PERCENT of their
 * plan's CPU (a `docker update` of the container's CPU quota) before anything
 * is paused; `normal` gives the CPU back.
 */
export const LEVEL_RESTRICTIONS: Record<PowerLevel, { admits: readonly InstancePriority[]; sheds: Partial<Record<InstancePriority, ShedAction>>; throttles: readonly InstancePriority[] }> = {
  normal: { admits: ["critical", "standard", "interruptible"], sheds: {}, throttles: [] },
  conserve: { admits: ["critical", "standard"], sheds: {}, throttles: ["interruptible"] },
  critical: { admits: ["critical"], sheds: { interruptible: "pause" }, throttles: ["interruptible"] },
  shutdown: { admits: ["critical"], sheds: { interruptible: "stop", standard: "stop" }, throttles: ["interruptible"] },
};

export function admits(level: PowerLevel, priority: InstancePriority): boolean {
  return LEVEL_RESTRICTIONS[level].admits.includes(priority);
}

export function shedAction(level: PowerLevel, priority: InstancePriority): ShedAction | null {
  return LEVEL_RESTRICTIONS[level].sheds[priority] ?? null;
}

export function throttles(level: PowerLevel, priority: InstancePriority): boolean {
  return LEVEL_RESTRICTIONS[level].throttles.includes(priority);
}

/** CPU a throttled instance keeps, in thousandths of a vCPU (at least 1). */
export function throttledCpuMillis(cpuMillis: number, percent: number): number {
  return Math.max(1, Math.round((cpuMillis * percent) / 100));
}

/**
 * Compute's admission check: refuses to create, start or resume an instance
 * whose priority the current power level does not admit (POWER_RESTRICTED,
 * with the level and priority so a client can explain it or retry later).
 */
export async function assertPowerAdmits(db: Database, priority: InstancePriority): Promise<void> {
  const level = await currentPowerLevel(db);
  if (admits(level, priority)) return;
  throw new AppError("POWER_RESTRICTED", `The platform is at power level ${level}: ${priority} instances cannot be started until the battery recovers`, {
    details: { level, priority },
  });
}
