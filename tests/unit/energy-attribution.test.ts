import { describe, expect, test } from "bun:test";
import { attributeLoadEnergy, clipToWindow, energyView, sourcesOf, type EnergyWindow, type InstanceShare } from "../../server/energy/attribution";

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 5, 1, 10);
/** Ten-second windows of `loadW` with `pvW` of sun. */
const windows = (n: number, loadW: number, pvW: number, start = T0, onBackup = false): EnergyWindow[] =>
  Array.from({ length: n }, (_, i) => ({ at: start + i * 10_000, seconds: 10, loadWh: (loadW * 10) / 3600, pvWh: (pvW * 10) / 3600, onBackup }));
const share = (instanceId: string, userId: string, cpuSeconds: number, vcpus: number, liveSeconds: number): InstanceShare => ({
  instanceId,
  userId,
  cpuNs: cpuSeconds * 1e9,
  reservedMillisMs: vcpus * 1000 * liveSeconds * 1000,
});
const total = (r: ReturnType<typeof attributeLoadEnergy>, id: string) => [...(r.byInstance.get(id)?.hours.values() ?? [])].reduce((a, s) => a + s.loadWh, 0);

describe("sharing the measured load among instances", () => {
  test("idle power by reservation, the rest by CPU time; the shares add up to the load", () => {
    // 60 s at 120 W = 2 Wh; 30 W of it is idle (0.5 Wh), 1.5 Wh active.
    const ws = windows(6, 120, 0);
    const shares = [share("busy", "alice", 3, 0.25, 60), share("quiet", "bob", 1, 0.25, 60), share("big", "bob", 0, 0.75, 60)];
    const r = attributeLoadEnergy(ws, shares, 30);
    expect(r.totals.loadWh).toBeCloseTo(2, 9);
    expect(r.totals.idleWh).toBeCloseTo(0.5, 9);
    // Reservations 0.25 : 0.25 : 0.75 of the idle 0.5 Wh; CPU 3 : 1 : 0 of the active 1.5 Wh.
    expect(total(r, "busy")).toBeCloseTo(0.5 * 0.2 + 1.5 * 0.75, 9);
    expect(total(r, "quiet")).toBeCloseTo(0.5 * 0.2 + 1.5 * 0.25, 9);
    expect(total(r, "big")).toBeCloseTo(0.5 * 0.6, 9);
    expect(total(r, "busy") + total(r, "quiet") + total(r, "big")).toBeCloseTo(r.totals.loadWh, 9);
    expect(r.totals.attributedWh).toBeCloseTo(r.totals.loadWh, 9);
    expect(r.totals.unattributedWh).toBe(0);
  });

  test("no CPU used at all: everything by reservation; an idle power above the load is capped at it", () => {
    const r = attributeLoadEnergy(windows(3, 40, 0), [share("a", "alice", 0, 1, 30), share("b", "bob", 0, 3, 30)], 500);
    expect(total(r, "a") / r.totals.loadWh).toBeCloseTo(0.25, 9);
    expect(r.totals.idleWh).toBeCloseTo(r.totals.loadWh, 9);
  });

  test("with no instance live the platform's own draw stays unattributed", () => {
    const r = attributeLoadEnergy(windows(6, 50, 0), [], 20);
    expect(r.byInstance.size).toBe(0);
    expect(r.totals.unattributedWh).toBeCloseTo(r.totals.loadWh, 9);
  });

  test("each share is split by where the window's energy came from: panels, battery, backup", () => {
    expect(sourcesOf({ at: 0, seconds: 10, loadWh: 1, pvWh: 0.4, onBackup: false })).toEqual({ loadWh: 1, solarWh: 0.4, batteryWh: 0.6, backupWh: 0 });
    expect(sourcesOf({ at: 0, seconds: 10, loadWh: 1, pvWh: 3, onBackup: false })).toEqual({ loadWh: 1, solarWh: 1, batteryWh: 0, backupWh: 0 });
    expect(sourcesOf({ at: 0, seconds: 10, loadWh: 1, pvWh: 3, onBackup: true })).toEqual({ loadWh: 1, solarWh: 0, batteryWh: 0, backupWh: 1 });
    // Half the time in sun above the load, half at night, a quarter of it all on backup.
    const ws = [...windows(4, 100, 300, T0), ...windows(3, 100, 0, T0 + 40_000), ...windows(1, 100, 0, T0 + 70_000, true)];
    const r = attributeLoadEnergy(ws, [share("a", "alice", 1, 0.5, 80), share("b", "bob", 1, 0.5, 80)], 0);
    const a = [...r.byInstance.get("a")!.hours.values()][0]!;
    expect(a.solarWh / a.loadWh).toBeCloseTo(0.5, 9);
    expect(a.batteryWh / a.loadWh).toBeCloseTo(0.375, 9);
    expect(a.backupWh / a.loadWh).toBeCloseTo(0.125, 9);
    expect(a.solarWh + a.batteryWh + a.backupWh).toBeCloseTo(a.loadWh, 9);
  });

  test("windows across an hour boundary land in their own hours", () => {
    const ws = windows(6, 360, 0, T0 + HOUR - 30_000);
    const r = attributeLoadEnergy(ws, [share("a", "alice", 1, 1, 60)], 0);
    const hours = r.byInstance.get("a")!.hours;
    expect([...hours.keys()]).toEqual([T0, T0 + HOUR]);
    expect(hours.get(T0)!.loadWh).toBeCloseTo(3 * 1, 9);
    expect(hours.get(T0 + HOUR)!.loadWh).toBeCloseTo(3 * 1, 9);
  });

  test("a share is shown in kWh with its sunlight share and the CO2 it avoided", () => {
    expect(energyView({ loadWh: 2000, solarWh: 1200, batteryWh: 500, backupWh: 300 }, 400)).toEqual({
      kwh: 2,
      solarKwh: 1.2,
      batteryKwh: 0.5,
      backupKwh: 0.3,
      sunlightShare: 0.85,
      co2AvoidedKg: 0.68,
    });
    expect(energyView({ loadWh: 0, solarWh: 0, batteryWh: 0, backupWh: 0 }, 400).sunlightShare).toBeNull();
  });
});

describe("a reservation that reaches back before the energy being shared out", () => {
  test("counts only its part inside the measured windows (an instance whose metering caught up late gets no share of load it was not there for)", () => {
    const share = { instanceId: "a", userId: "u", cpuNs: 0, reservedMillisMs: 1000 * 100_000, liveFrom: 0 };
    // Live for the tick's 100 s, of which the last 10 s had load measured.
    expect(clipToWindow(share, 100_000, 90_000, 100_000).reservedMillisMs).toBeCloseTo(1000 * 10_000, 6);
    // Entirely before the measured windows: nothing.
    expect(clipToWindow({ ...share, liveFrom: 0 }, 50_000, 60_000, 100_000).reservedMillisMs).toBe(0);
    // Inside them: unchanged; without liveFrom: unchanged.
    expect(clipToWindow({ ...share, liveFrom: 95_000 }, 100_000, 90_000, 100_000).reservedMillisMs).toBe(share.reservedMillisMs);
    const { liveFrom: _, ...bare } = share;
    expect(clipToWindow(bare, 100_000, 90_000, 100_000)).toBe(bare);
  });
});
