import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { DEFAULT_POLICY, evaluatePolicy, initialPolicyState, levelForSoc, PowerPolicySchema, targetLevel, type PolicyState, type PowerPolicy } from "../../hardware/policy";
import { defaultCells, socFromVoltage, voltageForSoc, SOC_CURVES } from "../../hardware/soc";
import type { PowerLevel } from "../../server/energy/levels";

const policy = (over: Partial<PowerPolicy> = {}): PowerPolicy => ({ ...DEFAULT_POLICY, ...over });

/** Feeds (second, soc) samples through the policy; returns every change with its time. */
function run(p: PowerPolicy, samples: Array<[number, number]>, start: PowerLevel = "normal", maxGapMs = Infinity, floor: (second: number) => PowerLevel = () => "normal") {
  let state: PolicyState = initialPolicyState(start);
  const changes: Array<{ at: number; from: PowerLevel; to: PowerLevel; cause?: string }> = [];
  for (const [second, soc] of samples) {
    const result = evaluatePolicy(p, state, soc, second * 1000, maxGapMs, floor(second));
    state = result.state;
    if (result.change) changes.push({ at: second, from: result.change.from, to: result.change.to, ...(result.change.cause === "forecast" ? { cause: "forecast" } : {}) });
  }
  return { changes, state };
}

describe("the forecast's floor", () => {
  test("steps the level down ahead of the SOC, after the same dwell, and holds it while the forecast does", () => {
    const samples: Array<[number, number]> = Array.from({ length: 20 }, (_, i) => [i * 10, 60]);
    // The forecast expects critical from 50 s to 120 s; the SOC stays at 60 % throughout.
    const floor = (second: number) => (second >= 50 && second < 120 ? ("critical" as const) : ("normal" as const));
    const { changes } = run(policy({ dwellSeconds: 20, recoveryDwellSeconds: 30 }), samples, "normal", Infinity, floor);
    expect(changes).toEqual([
      { at: 70, from: "normal", to: "critical", cause: "forecast" },
      // Once the floor lifts, 60 % clears every threshold with its hysteresis: back after the recovery dwell.
      { at: 150, from: "critical", to: "normal" },
    ]);
  });

  test("a floor above what the SOC calls for changes nothing", () => {
    const samples: Array<[number, number]> = Array.from({ length: 10 }, (_, i) => [i * 10, 20]);
    const { changes } = run(policy({ dwellSeconds: 0 }), samples, "normal", Infinity, () => "conserve");
    expect(changes).toEqual([{ at: 0, from: "normal", to: "critical" }]);
  });
});

describe("power levels from state of charge", () => {
  test("thresholds are 'below': at the threshold the better level holds", () => {
    const p = policy();
    expect(levelForSoc(p, 50)).toBe("normal");
    expect(levelForSoc(p, 49.9)).toBe("conserve");
    expect(levelForSoc(p, 30)).toBe("conserve");
    expect(levelForSoc(p, 29.9)).toBe("critical");
    expect(levelForSoc(p, 14.9)).toBe("shutdown");
  });

  test("going down is immediate in target; coming back needs the hysteresis band", () => {
    const p = policy({ hysteresis: 5 });
    expect(targetLevel(p, "normal", 49)).toBe("conserve");
    expect(targetLevel(p, "conserve", 51)).toBe("conserve");
    expect(targetLevel(p, "conserve", 54.9)).toBe("conserve");
    expect(targetLevel(p, "conserve", 55)).toBe("normal");
    expect(targetLevel(p, "shutdown", 21)).toBe("critical");
    expect(targetLevel(p, "shutdown", 60)).toBe("normal");
  });
});

describe("dwell and hysteresis", () => {
  test("a drop is acted on only after it has lasted the dwell time", () => {
    const { changes } = run(policy({ dwellSeconds: 30 }), [
      [0, 60],
      [10, 48],
      [20, 47],
      [39, 46],
      [40, 46],
      [41, 46],
    ]);
    expect(changes).toEqual([{ at: 40, from: "normal", to: "conserve" }]);
  });

  test("a SOC flapping around a threshold does not flap the level", () => {
    // 49 ↔ 51 every 10 s for ten minutes around the 50 % threshold.
    const samples: Array<[number, number]> = Array.from({ length: 60 }, (_, i) => [i * 10, i % 2 ? 49 : 51]);
    expect(run(policy({ dwellSeconds: 30, hysteresis: 5 }), samples).changes).toEqual([]);
    // Even with no dwell at all, hysteresis allows one change and no way back inside the band.
    expect(run(policy({ dwellSeconds: 0, hysteresis: 5 }), samples).changes).toEqual([{ at: 10, from: "normal", to: "conserve" }]);
  });

  test("without hysteresis and dwell the same input would flap (the control case)", () => {
    const samples: Array<[number, number]> = Array.from({ length: 10 }, (_, i) => [i, i % 2 ? 49 : 51]);
    expect(run(policy({ dwellSeconds: 0, recoveryDwellSeconds: 0, hysteresis: 0 }), samples).changes.length).toBe(9);
  });

  test("recovery waits for the recovery dwell above threshold + hysteresis", () => {
    const { changes } = run(
      policy({ hysteresis: 5, recoveryDwellSeconds: 120 }),
      [
        [0, 52],
        [60, 56],
        [100, 54],
        [110, 57],
        [200, 57],
        [229, 58],
        [230, 58],
      ],
      "conserve",
    );
    expect(changes).toEqual([{ at: 230, from: "conserve", to: "normal" }]);
  });

  test("a steep fall skips levels in one change", () => {
    const { changes } = run(policy({ dwellSeconds: 5 }), [
      [0, 80],
      [1, 10],
      [6, 9],
    ]);
    expect(changes).toEqual([{ at: 6, from: "normal", to: "shutdown" }]);
  });

  test("a night drain goes down through every level; a sunrise brings it back up", () => {
    const p = policy({ dwellSeconds: 60, recoveryDwellSeconds: 300 });
    const down: Array<[number, number]> = Array.from({ length: 120 }, (_, i) => [i * 60, 70 - i * 0.5]);
    const up: Array<[number, number]> = Array.from({ length: 200 }, (_, i) => [7200 + i * 60, 10 + i * 0.5]);
    const { changes } = run(p, [...down, ...up]);
    expect(changes.map((c) => `${c.from}>${c.to}`)).toEqual(["normal>conserve", "conserve>critical", "critical>shutdown", "shutdown>critical", "critical>conserve", "conserve>normal"]);
  });

  test("a gap in readings restarts the dwell", () => {
    const p = policy({ dwellSeconds: 30 });
    const { changes } = run(
      p,
      [
        [0, 45],
        [10, 45],
        [500, 45],
        [520, 45],
        [530, 45],
      ],
      "normal",
      60_000,
    );
    expect(changes).toEqual([{ at: 530, from: "normal", to: "conserve" }]);
  });
});

describe("policy validation", () => {
  test("the default policy is valid", () => {
    expect(v.safeParse(PowerPolicySchema, DEFAULT_POLICY).success).toBe(true);
  });

  test("thresholds must be ordered shutdown < critical < conserve", () => {
    const bad = v.safeParse(PowerPolicySchema, { ...DEFAULT_POLICY, thresholds: { conserve: 30, critical: 40, shutdown: 10 } });
    expect(bad.success).toBe(false);
    expect(bad.issues?.[0]?.message).toContain("ordered");
    expect(v.getDotPath(bad.issues![0]!)).toBe("thresholds");
    expect(v.safeParse(PowerPolicySchema, { ...DEFAULT_POLICY, thresholds: { conserve: 50, critical: 50, shutdown: 10 } }).success).toBe(false);
    expect(v.safeParse(PowerPolicySchema, { ...DEFAULT_POLICY, thresholds: { conserve: 50, critical: 30, shutdown: 0 } }).success).toBe(false);
  });

  test("the band above conserve must fit under 100 %", () => {
    expect(v.safeParse(PowerPolicySchema, { ...DEFAULT_POLICY, thresholds: { conserve: 98, critical: 30, shutdown: 15 }, hysteresis: 5 }).success).toBe(false);
  });

  test("dwell times are bounded whole seconds", () => {
    expect(v.safeParse(PowerPolicySchema, { ...DEFAULT_POLICY, dwellSeconds: 1.5 }).success).toBe(false);
    expect(v.safeParse(PowerPolicySchema, { ...DEFAULT_POLICY, dwellSeconds: -1 }).success).toBe(false);
  });
});

describe("state of charge from battery voltage", () => {
  test("curves rise monotonically from 0 to 100 %", () => {
    for (const curve of Object.values(SOC_CURVES)) {
      expect(curve[0]![0]).toBe(0);
      expect(curve.at(-1)![0]).toBe(100);
      for (let i = 1; i < curve.length; i++) expect(curve[i]![1]).toBeGreaterThan(curve[i - 1]![1]);
    }
  });

  test("a 12 V lead-acid battery at rest: 12.73 V full, 12.10 V half, 11.36 V empty", () => {
    const bank = { chemistry: "lead-acid" as const, cells: defaultCells("lead-acid", 12) };
    expect(bank.cells).toBe(6);
    expect(socFromVoltage(bank, 12.73)).toBe(100);
    expect(socFromVoltage(bank, 12.1)).toBe(50);
    expect(socFromVoltage(bank, 11.36)).toBe(0);
    expect(socFromVoltage(bank, 14.4)).toBe(100);
    expect(socFromVoltage(bank, 10.5)).toBe(0);
    expect(socFromVoltage(bank, (12.1 + 12.24) / 2)).toBe(55);
  });

  test("a 24 V LiFePO4 bank is 8 cells; a 48 V one 16", () => {
    expect(defaultCells("lifepo4", 12)).toBe(4);
    expect(defaultCells("lifepo4", 24)).toBe(8);
    expect(defaultCells("lifepo4", 48)).toBe(16);
    expect(defaultCells("lead-acid", 48)).toBe(24);
    const bank = { chemistry: "lifepo4" as const, cells: 8 };
    expect(socFromVoltage(bank, 3.26 * 8)).toBe(50);
  });

  test("voltageForSoc inverts socFromVoltage", () => {
    for (const chemistry of ["lead-acid", "lifepo4"] as const) {
      const bank = { chemistry, cells: defaultCells(chemistry, 24) };
      for (const soc of [0, 5, 17.5, 50, 83, 100]) expect(socFromVoltage(bank, voltageForSoc(bank, soc))).toBeCloseTo(soc, 1);
    }
  });
});
