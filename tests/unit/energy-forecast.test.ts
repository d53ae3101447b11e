import { describe, expect, test } from "bun:test";
import { buildProfile, clearSkyIndex, estimateCapacityWh, forecastRunway, quantile, type HourPoint, type Profile } from "../../server/energy/forecast";

// Generated traces whose answers are known in closed form. Days start at a UTC midnight.
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const MIDNIGHT = Date.UTC(2026, 5, 1);
const THRESHOLDS = [
  { name: "conserve", soc: 50 },
  { name: "critical", soc: 30 },
  { name: "shutdown", soc: 15 },
];

/** Mean of `peak·sin(π(t−6)/12)` over the hour starting at `h` (0 outside 06:00–18:00): the sun's hourly average. */
function sunHourAverage(h: number, peak: number): number {
  const a = Math.max(6, h);
  const b = Math.min(18, h + 1);
  if (b <= a) return 0;
  const k = Math.PI / 12;
  return ((peak / k) * (Math.cos(k * (a - 6)) - Math.cos(k * (b - 6)))) / 1;
}

/** `days` of complete hours ending at `end` (exclusive): constant load, sun with peak `peak` scaled per day. */
function history(end: number, days: number, opts: { loadW: number; peak: number; sky?: (day: number) => number; socMax?: number }): HourPoint[] {
  const points: HourPoint[] = [];
  for (let t = end - days * DAY; t < end; t += HOUR) {
    const day = Math.floor((t - (end - days * DAY)) / DAY);
    const h = new Date(t).getUTCHours();
    const sky = opts.sky?.(day) ?? 1;
    points.push({ hour: t, seconds: 3600, pvWh: sunHourAverage(h, opts.peak) * sky, loadWh: opts.loadW, socMax: opts.socMax ?? 80 });
  }
  return points;
}

const flatProfile = (loadW: number): Profile => {
  const zero = Array<number>(24).fill(0);
  const load = Array<number>(24).fill(loadW);
  return { load: { expected: load, high: load, low: load }, pv: { envelope: zero, median: zero, low: zero, high: zero }, days: 0 };
};

describe("the runway forecast", () => {
  test("constant load, no sun: each threshold is crossed when its energy is used up, to the minute", () => {
    // 1200 Wh at 60 % under 100 W: 10 points (120 Wh) take 1.2 h.
    const result = forecastRunway({
      now: MIDNIGHT,
      soc: 60,
      capacityWh: 1200,
      chargeEfficiency: 0.85,
      currentLoadW: 100,
      profile: flatProfile(100),
      clearSky: null,
      thresholds: THRESHOLDS,
      horizonHours: 12,
    });
    expect(result.crossings.conserve!.expected).toBe(MIDNIGHT + 1.2 * HOUR);
    expect(result.crossings.critical!.expected).toBe(MIDNIGHT + 3.6 * HOUR);
    expect(result.crossings.shutdown!.expected).toBe(MIDNIGHT + 5.4 * HOUR);
    // With nothing uncertain, the band closes.
    expect(result.crossings.shutdown!.earliest).toBe(result.crossings.shutdown!.expected);
    expect(result.crossings.shutdown!.latest).toBe(result.crossings.shutdown!.expected);
    expect(result.minSoc.expected).toBe(0);
  });

  test("a threshold already below is crossed now; one never reached is null", () => {
    const result = forecastRunway({
      now: MIDNIGHT,
      soc: 40,
      capacityWh: 1200,
      chargeEfficiency: 0.85,
      currentLoadW: 11,
      profile: flatProfile(11),
      clearSky: null,
      thresholds: THRESHOLDS,
      horizonHours: 10,
    });
    expect(result.crossings.conserve!.expected).toBe(MIDNIGHT);
    // 11 W for 10 h is 110 Wh: 9.2 points, down to 30.8 %, not below 30.
    expect(result.crossings.critical!.expected).toBeNull();
    expect(result.crossings.shutdown!.expected).toBeNull();
  });

  test("after a week of identical sunny days the night is forecast exactly and the morning sun stops the fall", () => {
    // 50 W all day; the sun peaks at 300 W. From 18:00 at 70 % of 1200 Wh, the night (12 h, 600 Wh) ends at 20 %.
    const now = MIDNIGHT + 7 * DAY + 18 * HOUR;
    const hours = history(now - 18 * HOUR, 7, { loadW: 50, peak: 300 });
    const profile = buildProfile(hours, now);
    expect(profile.days).toBe(7);
    expect(profile.load.expected.every((w) => Math.abs(w - 50) < 1e-9)).toBe(true);
    expect(profile.pv.median[12]).toBeCloseTo(sunHourAverage(12, 300), 6);
    expect(profile.pv.median[3]).toBe(0);

    const result = forecastRunway({ now, soc: 70, capacityWh: 1200, chargeEfficiency: 0.85, currentLoadW: 50, profile, clearSky: null, thresholds: THRESHOLDS, horizonHours: 24 });
    // 20 points = 240 Wh at 50 W: 4.8 h after 18:00; 40 points: 9.6 h.
    expect(result.crossings.conserve!.expected).toBe(now + 4.8 * HOUR);
    expect(result.crossings.critical!.expected).toBe(now + 9.6 * HOUR);
    expect(result.crossings.shutdown!.expected).toBeNull();
    // The lowest point is 20 % at 06:00 less the first morning hour's shortfall (sun below 50 W for part of it).
    expect(result.minSoc.expected).toBeGreaterThan(19);
    expect(result.minSoc.expected).toBeLessThanOrEqual(20);
    // By the next evening the battery has been charged again.
    const evening = result.trajectories.expected.find((p) => p.at === now + 24 * HOUR)!;
    expect(evening.soc).toBeGreaterThan(70);
  });

  test("a cloudy morning lowers today's solar by its clear-sky index; tomorrow returns to the typical day", () => {
    // Six clear days, then this morning at 30 % of clear sky. Forecast from noon.
    const now = MIDNIGHT + 6 * DAY + 12 * HOUR;
    const past = history(MIDNIGHT + 6 * DAY, 6, { loadW: 80, peak: 400 });
    const morning = Array.from({ length: 6 }, (_, i) => {
      const hour = MIDNIGHT + 6 * DAY + (6 + i) * HOUR;
      return { hour, seconds: 3600, pvWh: 0.3 * sunHourAverage(6 + i, 400), loadWh: 80, socMax: 60 };
    });
    const profile = buildProfile([...past, ...morning], now);
    const k = clearSkyIndex(morning.slice(-3), profile);
    expect(k).toBeCloseTo(0.3, 6);

    const base = { now, soc: 50, capacityWh: 2400, chargeEfficiency: 0.9, currentLoadW: 80, profile, thresholds: THRESHOLDS, horizonHours: 36 };
    const cloudy = forecastRunway({ ...base, clearSky: k });
    const clear = forecastRunway({ ...base, clearSky: 1 });
    const socAt = (r: ReturnType<typeof forecastRunway>, at: number) => r.trajectories.expected.find((p) => p.at === at)!.soc;
    // This afternoon: clearly less charge under the persisting clouds.
    expect(socAt(cloudy, now + 6 * HOUR)).toBeLessThan(socAt(clear, now + 6 * HOUR) - 5);
    // Exactly: with the index at 1 and identical days, the afternoon gains the clear-day energy.
    let gain = 0;
    for (let h = 12; h < 18; h++) {
      const net = sunHourAverage(h, 400) - 80;
      gain += net > 0 ? net * 0.9 : net;
    }
    const gained = ((socAt(clear, now + 6 * HOUR) - 50) / 100) * 2400;
    expect(gained).toBeCloseTo(gain, 6);
    // Pessimistic never above expected, optimistic never below.
    for (let i = 0; i < cloudy.trajectories.expected.length; i++) {
      expect(cloudy.trajectories.pessimistic[i]!.soc).toBeLessThanOrEqual(cloudy.trajectories.expected[i]!.soc + 1e-9);
      expect(cloudy.trajectories.optimistic[i]!.soc).toBeGreaterThanOrEqual(cloudy.trajectories.expected[i]!.soc - 1e-9);
    }
  });

  test("variable days widen the band: the earliest crossing comes before the expected one", () => {
    const now = MIDNIGHT + 10 * DAY + 16 * HOUR;
    // Every third day heavily overcast.
    const hours = history(MIDNIGHT + 10 * DAY, 10, { loadW: 60, peak: 500, sky: (d) => (d % 3 === 0 ? 0.15 : 1) });
    const profile = buildProfile(hours, now);
    expect(profile.pv.low[12]!).toBeLessThan(profile.pv.median[12]!);
    const result = forecastRunway({ now, soc: 80, capacityWh: 1500, chargeEfficiency: 0.85, currentLoadW: 60, profile, clearSky: 1, thresholds: THRESHOLDS, horizonHours: 48 });
    const critical = result.crossings.critical!;
    expect(critical.earliest).not.toBeNull();
    expect(critical.earliest!).toBeLessThanOrEqual(critical.expected ?? Infinity);
    expect(result.minSoc.pessimistic).toBeLessThan(result.minSoc.expected);
  });

  test("hours with a full battery are curtailed and left out of the solar envelope", () => {
    const now = MIDNIGHT + 4 * DAY;
    const clear = history(MIDNIGHT, 3, { loadW: 50, peak: 400 });
    // A fourth day full by noon: the controller held the panels to the 50 W load.
    const full = history(MIDNIGHT + 3 * DAY, 1, { loadW: 50, peak: 400 }).map((h) => {
      const hour = new Date(h.hour).getUTCHours();
      return hour >= 12 && hour < 18 ? { ...h, pvWh: 50, socMax: 100 } : h;
    });
    const profile = buildProfile([...clear, ...full], now);
    expect(profile.pv.median[14]).toBeCloseTo(sunHourAverage(14, 400), 6);
  });

  test("the battery's real capacity is estimated from a discharge: a failing battery is caught", () => {
    // Rated 1200 Wh, really 700 Wh: 70 Wh drawn per 10 points.
    const samples = Array.from({ length: 30 }, (_, i) => ({ soc: 80 - i * (10 / 70) * 7, outWh: 7, inWh: 0 }));
    expect(estimateCapacityWh(samples)!).toBeCloseTo(700, 0);
    // Too short a stretch to tell.
    expect(estimateCapacityWh(samples.slice(0, 4))).toBeNull();
    // Charging is not a discharge.
    expect(estimateCapacityWh(samples.map((s, i) => ({ ...s, soc: 20 + i })))).toBeNull();
  });

  test("quantiles interpolate", () => {
    expect(quantile([0, 10], 0.9)).toBeCloseTo(9, 9);
    expect(quantile([5], 0.1)).toBe(5);
    expect(quantile([], 0.5)).toBe(0);
  });
});
