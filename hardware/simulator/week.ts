/**
 * The `week` scenario: seven days of weather and a battery that starts to
 * fail, generated (deterministically) so a replay of the power policy meets
 * what a real installation does: clear days, a cloudy and an overcast day in
 * a row, broken cloud, and from the fourth day a battery losing capacity and
 * gaining internal resistance.
 */

const DAY_S = 86_400;

/** Share of clear-sky sun per day (0–6), and how broken the cloud is (0: steady, 1: passing clouds). */
export const WEEK_DAYS = [
  { sky: 1.0, broken: 0.1, name: "clear" },
  { sky: 0.8, broken: 0.5, name: "broken cloud" },
  { sky: 0.35, broken: 0.5, name: "cloudy" },
  { sky: 0.2, broken: 0.3, name: "overcast" },
  { sky: 0.95, broken: 0.2, name: "clear" },
  { sky: 0.6, broken: 0.8, name: "showers" },
  { sky: 1.0, broken: 0.1, name: "clear" },
] as const;

export const WEEK_SECONDS = WEEK_DAYS.length * DAY_S;

/** A fixed pseudo-random value in [0, 1) for an integer: the same week every run. */
function noise(n: number): number {
  let x = (n * 2654435761) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x45d9f3b) >>> 0;
  x ^= x >>> 16;
  return x / 0x100000000;
}

/** The fraction of clear-sky sun `elapsed` simulated seconds into the week (clouds pass every 20 minutes). */
export function weekSky(elapsed: number): number {
  const day = WEEK_DAYS[Math.min(WEEK_DAYS.length - 1, Math.floor(elapsed / DAY_S))]!;
  const slot = Math.floor(elapsed / 1200);
  return day.sky * (1 - day.broken * noise(slot));
}

/**
 * The battery's health `elapsed` seconds into the week: full until day 3.5,
 * then over two days down to 40 % of its capacity with four times its
 * internal resistance (sulphation, a failing cell), and so for the rest.
 */
export function weekBattery(elapsed: number): { capacity: number; resistance: number } {
  const from = 3.5 * DAY_S;
  const to = 5.5 * DAY_S;
  const f = Math.min(1, Math.max(0, (elapsed - from) / (to - from)));
  return { capacity: 1 - 0.6 * f, resistance: 1 + 3 * f };
}
