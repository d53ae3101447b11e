/**
 * The runway forecast, as pure functions: where the battery's state of charge
 * is heading over the next hours, and when it will cross each policy
 * threshold. No weather service: it learns from the platform's own history.
 *
 * - Load: per hour of the day (UTC), an exponentially weighted average of
 *   past days (recent days count most), blended with the load right now,
 *   whose weight fades over about an hour.
 * - Solar: the panels' output now, fading over about half an hour into the
 *   model: per hour of the day, the clear-sky envelope (90th percentile of
 *   past days) and the typical day (median). For the next hours the forecast
 *   assumes today stays as cloudy as it has been (the clear-sky index: what
 *   the panels gave over the last hours ÷ the envelope); that persistence
 *   fades over about six hours into the typical day ("tomorrow looks like the
 *   recent days"). Hours when the battery was full are left out: the
 *   controller curtails the panels then, so they understate the sun.
 * - Battery: energy = SOC × capacity; surplus charges it at the chemistry's
 *   charge efficiency, deficit drains it, clamped to empty and full.
 * - Band: `expected` uses the above; `pessimistic` the dimmer of (expected,
 *   10th-percentile day) and the heavier of (expected, 90th-percentile load);
 *   `optimistic` the opposite. Crossing times come with that band
 *   (`earliest` from the pessimistic run, `latest` from the optimistic one).
 */

const HOUR_MS = 3_600_000;

/** One hour of history, as the hourly roll-ups keep it. */
export type HourPoint = { hour: number; seconds: number; pvWh: number; loadWh: number; socMax: number | null };

type Slots = number[];

export type Profile = {
  load: { expected: Slots; high: Slots; low: Slots };
  pv: { envelope: Slots; median: Slots; low: Slots; high: Slots };
  /** Days of history that contributed. */
  days: number;
};

/** Hours with less telemetry than this say too little about their slot. */
const MIN_SECONDS = 1800;
/** The battery was full: PV was curtailed to the load. */
const CURTAILED_SOC = 98;
const LOAD_ALPHA = 0.3;

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

const slotOf = (ms: number) => new Date(ms).getUTCHours();

/**
 * The time-of-day profile from complete hours before `now`'s hour. Slots with
 * no history take the mean of the others for load and zero for solar (no
 * evidence of sun is no sun: the safe assumption).
 */
export function buildProfile(history: readonly HourPoint[], now: number): Profile {
  const currentHour = Math.floor(now / HOUR_MS) * HOUR_MS;
  const usable = history.filter((h) => h.hour < currentHour && h.seconds >= MIN_SECONDS).sort((a, b) => a.hour - b.hour);
  const loads: number[][] = Array.from({ length: 24 }, () => []);
  const pvAll: number[][] = Array.from({ length: 24 }, () => []);
  const pvClear: number[][] = Array.from({ length: 24 }, () => []);
  const days = new Set<number>();
  for (const h of usable) {
    const slot = slotOf(h.hour);
    const watts = (wh: number) => (wh * 3600) / h.seconds;
    loads[slot]!.push(watts(h.loadWh));
    pvAll[slot]!.push(watts(h.pvWh));
    if (h.socMax === null || h.socMax < CURTAILED_SOC) pvClear[slot]!.push(watts(h.pvWh));
    days.add(Math.floor(h.hour / (24 * HOUR_MS)));
  }
  const ewma = (values: number[]) => values.reduce((acc, v, i) => (i === 0 ? v : LOAD_ALPHA * v + (1 - LOAD_ALPHA) * acc), 0);
  const known = loads.filter((l) => l.length > 0);
  const fallbackLoad = known.length ? known.reduce((a, l) => a + ewma(l), 0) / known.length : 0;
  const perSlot = (f: (slot: number) => number) => Array.from({ length: 24 }, (_, slot) => f(slot));
  const pvOf = (slot: number) => (pvClear[slot]!.length ? pvClear[slot]! : pvAll[slot]!);
  return {
    load: {
      expected: perSlot((s) => (loads[s]!.length ? ewma(loads[s]!) : fallbackLoad)),
      high: perSlot((s) => (loads[s]!.length ? quantile(loads[s]!, 0.9) : fallbackLoad)),
      low: perSlot((s) => (loads[s]!.length ? quantile(loads[s]!, 0.1) : fallbackLoad)),
    },
    pv: {
      envelope: perSlot((s) => quantile(pvOf(s), 0.9)),
      median: perSlot((s) => quantile(pvOf(s), 0.5)),
      low: perSlot((s) => quantile(pvOf(s), 0.1)),
      high: perSlot((s) => quantile(pvOf(s), 0.9)),
    },
    days: days.size,
  };
}

/**
 * How sunny today has been relative to a clear day: observed solar over the
 * envelope across the recent daylight hours (at least 10 % of the day's peak
 * envelope), clipped to 0…1.5. Null when none of those hours has passed
 * (night, or no history yet). `recent` may include the hour in progress.
 */
export function clearSkyIndex(recent: readonly HourPoint[], profile: Profile): number | null {
  const peak = Math.max(...profile.pv.envelope);
  if (!(peak > 0)) return null;
  let observed = 0;
  let clear = 0;
  for (const h of recent) {
    if (h.seconds < 600) continue;
    const envelope = profile.pv.envelope[slotOf(h.hour)]!;
    if (envelope < 0.1 * peak) continue;
    observed += (h.pvWh * 3600) / h.seconds;
    clear += envelope;
  }
  if (clear === 0) return null;
  return Math.min(1.5, Math.max(0, observed / clear));
}

/**
 * Capacity the battery really has, from a recent stretch of discharge: the
 * slope of SOC against the energy drawn (least squares). A failing battery
 * loses SOC faster per watt-hour than its rating says. Null when the stretch
 * is too short (under 5 SOC points or 6 samples) to tell.
 */
export function estimateCapacityWh(samples: ReadonlyArray<{ soc: number; outWh: number; inWh: number }>): number | null {
  let drawn = 0;
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of samples) {
    drawn += s.outWh - s.inWh;
    xs.push(drawn);
    ys.push(s.soc);
  }
  if (xs.length < 6 || Math.max(...ys) - Math.min(...ys) < 5) return null;
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  // SOC must fall as energy is drawn; anything else is noise.
  return slope < 0 ? 100 / -slope : null;
}

export type Threshold = { name: string; soc: number };

export type ForecastInput = {
  now: number;
  soc: number;
  capacityWh: number;
  chargeEfficiency: number;
  currentLoadW: number | null;
  /** Solar power now (W); null: only the model. */
  currentPvW?: number | null;
  profile: Profile;
  clearSky: number | null;
  thresholds: readonly Threshold[];
  horizonHours: number;
  stepMinutes?: number;
};

export type TrajectoryPoint = { at: number; soc: number };
export type Crossing = { expected: number | null; earliest: number | null; latest: number | null };
export type Scenario = "expected" | "pessimistic" | "optimistic";

export type ForecastResult = {
  trajectories: Record<Scenario, TrajectoryPoint[]>;
  /** When each threshold is first crossed downwards (SOC below it), epoch ms; null: not within the horizon. */
  crossings: Record<string, Crossing>;
  minSoc: Record<Scenario, number>;
};

/** Time constants of the persistence blends. */
const LOAD_PERSISTENCE_MS = HOUR_MS;
const PV_NOW_PERSISTENCE_MS = HOUR_MS / 2;
const SKY_PERSISTENCE_MS = 6 * HOUR_MS;

export function forecastRunway(input: ForecastInput): ForecastResult {
  const stepMs = (input.stepMinutes ?? 10) * 60_000;
  const end = input.now + input.horizonHours * HOUR_MS;
  const { profile } = input;
  const powers = (at: number, scenario: Scenario) => {
    const slot = slotOf(at);
    const wLoad = input.currentLoadW === null ? 0 : Math.exp(-(at - input.now) / LOAD_PERSISTENCE_MS);
    const current = input.currentLoadW ?? 0;
    // Without any history the load now is all there is: it is assumed to stay.
    const slotLoad =
      profile.days === 0 && input.currentLoadW !== null
        ? current
        : scenario === "expected"
          ? profile.load.expected[slot]!
          : scenario === "pessimistic"
            ? Math.max(profile.load.expected[slot]!, profile.load.high[slot]!)
            : Math.min(profile.load.expected[slot]!, profile.load.low[slot]!);
    const load = wLoad * current + (1 - wLoad) * slotLoad;
    const wSky = input.clearSky === null ? 0 : Math.exp(-(at - input.now) / SKY_PERSISTENCE_MS);
    const modelPv = wSky * (input.clearSky ?? 0) * profile.pv.envelope[slot]! + (1 - wSky) * profile.pv.median[slot]!;
    const currentPv = input.currentPvW ?? null;
    const wNow = currentPv === null ? 0 : Math.exp(-(at - input.now) / PV_NOW_PERSISTENCE_MS);
    const expectedPv = wNow * (currentPv ?? 0) + (1 - wNow) * modelPv;
    const pv = scenario === "expected" ? expectedPv : scenario === "pessimistic" ? Math.min(expectedPv, profile.pv.low[slot]!) : Math.max(expectedPv, profile.pv.high[slot]!);
    return { load, pv };
  };

  const trajectories = {} as Record<Scenario, TrajectoryPoint[]>;
  const minSoc = {} as Record<Scenario, number>;
  const firstBelow = {} as Record<Scenario, Record<string, number | null>>;
  for (const scenario of ["expected", "pessimistic", "optimistic"] as const) {
    let energy = (Math.min(100, Math.max(0, input.soc)) / 100) * input.capacityWh;
    const points: TrajectoryPoint[] = [{ at: input.now, soc: input.soc }];
    const below: Record<string, number | null> = {};
    for (const t of input.thresholds) below[t.name] = input.soc < t.soc ? input.now : null;
    let lowest = input.soc;
    for (let at = input.now; at < end; at += stepMs) {
      const dt = Math.min(stepMs, end - at);
      // Powers at the middle of the step: a step straddling an hour boundary is not biased to either side.
      const { load, pv } = powers(at + dt / 2, scenario);
      const net = pv - load;
      const before = (energy / input.capacityWh) * 100;
      energy += ((net > 0 ? net * input.chargeEfficiency : net) * dt) / HOUR_MS;
      energy = Math.min(input.capacityWh, Math.max(0, energy));
      const after = (energy / input.capacityWh) * 100;
      for (const t of input.thresholds) {
        if (below[t.name] === null && after < t.soc && before >= t.soc) {
          // Linear within the step: exact for a constant net power.
          below[t.name] = Math.round(at + ((before - t.soc) / (before - after)) * dt);
        }
      }
      lowest = Math.min(lowest, after);
      points.push({ at: at + dt, soc: after });
    }
    trajectories[scenario] = points;
    minSoc[scenario] = lowest;
    firstBelow[scenario] = below;
  }
  const crossings: Record<string, Crossing> = {};
  for (const t of input.thresholds) {
    crossings[t.name] = { expected: firstBelow.expected[t.name]!, earliest: firstBelow.pessimistic[t.name]!, latest: firstBelow.optimistic[t.name]! };
  }
  return { trajectories, crossings, minSoc };
}
