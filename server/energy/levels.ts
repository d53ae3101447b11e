/**
 * Power levels, from healthy to worst. The order is the contract: a level's
 * index is its severity, and everything that compares levels goes through
 * `severity` so nobody compares strings.
 */
export const POWER_LEVELS = ["normal", "conserve", "critical", "shutdown"] as const;
export type PowerLevel = (typeof POWER_LEVELS)[number];

export function severity(level: PowerLevel): number {
  return POWER_LEVELS.indexOf(level);
}

/** True when `a` is a worse (lower-power) level than `b`. */
export function isWorse(a: PowerLevel, b: PowerLevel): boolean {
  return severity(a) > severity(b);
}
