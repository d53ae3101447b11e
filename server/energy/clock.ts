/**
 * The energy clock: the time the power policy, the forecast and the emergency
 * worker reason in. In production it is the real clock. With a simulated
 * controller running faster than life (ENERGY_SIMULATOR_SPEED, the week-long
 * replay) it runs at the simulator's speed, so a 300 s recovery dwell lasts
 * 300 simulated seconds — not five real minutes at `shutdown` — and readings
 * are stamped with simulated time, so hourly roll-ups and the forecast's
 * time-of-day profile see simulated days.
 *
 * The link itself (bytes, the telemetry timeout, bridge restarts) always runs
 * on real time: a wire does not speed up.
 *
 * The monitor owns the clock and publishes its definition with its state
 * (energy_monitor.clock), so the API and the workers, in any process, read
 * the same time (`clockOf`).
 */
export type ClockSpec = {
  /** Simulated milliseconds per real millisecond. */
  speed: number;
  /** A real instant (ms) and the simulated instant it maps to. */
  realEpochMs: number;
  simEpochMs: number;
};

export type EnergyClock = {
  readonly speed: number;
  /** Milliseconds since the epoch, in energy time. */
  now(): number;
  /** Energy time for a real instant. */
  fromReal(realMs: number): number;
  /** Waits `ms` of energy time. */
  sleep(ms: number): Promise<void>;
  /** What to publish; null for the real clock. */
  readonly spec: ClockSpec | null;
};

export const realClock: EnergyClock = {
  speed: 1,
  now: () => Date.now(),
  fromReal: (realMs) => realMs,
  sleep: (ms) => Bun.sleep(Math.max(0, ms)),
  spec: null,
};

export function scaledClock(spec: ClockSpec): EnergyClock {
  if (!(spec.speed > 0)) throw new RangeError("a clock's speed must be positive");
  const fromReal = (realMs: number) => spec.simEpochMs + (realMs - spec.realEpochMs) * spec.speed;
  return {
    speed: spec.speed,
    now: () => fromReal(Date.now()),
    fromReal,
    sleep: (ms) => Bun.sleep(Math.max(0, ms) / spec.speed),
    spec,
  };
}

/** The clock a monitor published (null or a malformed definition: the real clock). */
export function clockOf(published: unknown): EnergyClock {
  const spec = published as Partial<ClockSpec> | null | undefined;
  if (!spec || typeof spec.speed !== "number" || typeof spec.realEpochMs !== "number" || typeof spec.simEpochMs !== "number" || spec.speed <= 0) return realClock;
  return spec.speed === 1 && spec.realEpochMs === spec.simEpochMs ? realClock : scaledClock(spec as ClockSpec);
}
