import type { Database } from "../db/client";
import type { Config } from "../server/config";
import { armedWarnings, recordForecastWarning } from "../server/energy/forecast-warning";
import { isWorse, POWER_LEVELS, type PowerLevel } from "../server/energy/levels";
import { computeRunway, loadRunwayHistory, type Runway, type RunwayHistory } from "../server/energy/runway";
import type { Logger } from "../server/log";
import type { PowerPolicy } from "./policy";

const HOUR_MS = 3_600_000;
/** SOC points of change that make a new forecast due before its interval. */
const SOC_STEP = 2;
const STEP_LEVELS = POWER_LEVELS.filter((l): l is Exclude<PowerLevel, "normal"> => l !== "normal");

/**
 * The monitor's look ahead. Every ENERGY_FORECAST_INTERVAL_S of energy time
 * it runs the runway forecast from the latest reading and:
 *
 * - warns: for each level worse than the current one whose threshold the
 *   pessimistic run crosses within ENERGY_FORECAST_WARN_MINUTES, it records a
 *   forecast warning (the seam for tenant notices, forecast-warning.ts) —
 *   once per approach: again only after the level was reached, or after the
 *   danger receded (no crossing within twice the warning time);
 * - acts early: the worst level whose threshold the expected run crosses
 *   within ENERGY_FORECAST_PREEMPT_MINUTES becomes the policy's floor, so the
 *   platform steps down before the battery gets there (the cut-off — the
 *   controller's own disconnect — counts as `shutdown`). The floor lifts as
 *   soon as the forecast does; the SOC's own hysteresis then governs recovery.
 */
export class Lookahead {
  floor: PowerLevel = "normal";
  summary: Runway | null = null;
  private history: RunwayHistory | null = null;
  private lastAt = -Infinity;
  private lastSoc = Number.NaN;
  private armed: Set<PowerLevel> | null = null;

  constructor(private readonly deps: { db: Database; energy: Config["energy"]; log: Logger }) {}

  /**
   * Whether a forecast is due: every ENERGY_FORECAST_INTERVAL_S of energy
   * time, and sooner when the SOC has moved by two points since the last one
   * (a floor must not outlive the situation that set it).
   */
  due(at: number, soc: number): boolean {
    return at - this.lastAt >= this.deps.energy.forecast.intervalSeconds * 1000 || !(Math.abs(soc - this.lastSoc) < SOC_STEP);
  }

  async run(input: { at: number; soc: number; loadW: number | null; pvW: number | null; level: PowerLevel; policy: PowerPolicy; cutoffSoc: number | null }): Promise<void> {
    const { db, energy, log } = this.deps;
    this.lastAt = input.at;
    this.lastSoc = input.soc;
    // The roll-ups change by the hour; the profile needs loading once per hour of energy time.
    if (!this.history || Math.floor(this.history.loadedAt / HOUR_MS) !== Math.floor(input.at / HOUR_MS)) this.history = await loadRunwayHistory(db, input.at);
    const { runway } = computeRunway(energy, this.history, { now: input.at, soc: input.soc, loadW: input.loadW, pvW: input.pvW, policy: input.policy, cutoffSoc: input.cutoffSoc });
    this.summary = runway;

    const within = (iso: string | null, minutes: number) => iso !== null && minutes > 0 && Date.parse(iso) <= input.at + minutes * 60_000;
    const preempt = energy.forecast.preemptMinutes;
    let floor: PowerLevel = "normal";
    for (const level of STEP_LEVELS) if (within(runway.thresholds[level]?.expectedAt ?? null, preempt)) floor = level;
    if (within(runway.thresholds.cutoff?.expectedAt ?? null, preempt)) floor = "shutdown";
    if (floor !== this.floor) log.info("forecast floor", { from: this.floor, to: floor, soc: input.soc });
    this.floor = floor;

    const warn = energy.forecast.warnMinutes;
    if (warn <= 0) return;
    this.armed ??= await armedWarnings(db, input.level);
    for (const level of STEP_LEVELS) {
      const threshold = runway.thresholds[level]!;
      if (!isWorse(level, input.level)) {
        // Reached: the next approach, after a recovery, is warned about afresh.
        this.armed.delete(level);
        continue;
      }
      if (!within(threshold.earliestAt, 2 * warn)) this.armed.delete(level);
      if (this.armed.has(level) || !within(threshold.earliestAt, warn)) continue;
      this.armed.add(level);
      const warning = await recordForecastWarning(db, {
        level,
        thresholdSoc: threshold.soc,
        at: new Date(input.at),
        earliestAt: new Date(threshold.earliestAt!),
        expectedAt: threshold.expectedAt === null ? null : new Date(threshold.expectedAt),
        soc: input.soc,
      });
      log.warn("forecast warning", { powerLevel: level, earliestAt: threshold.earliestAt, expectedAt: threshold.expectedAt, affected: warning.affected.length });
    }
  }
}
