import { describe, expect, test } from "bun:test";
import { pgArray } from "../../server/billing/arrays";
import { mapBounded, parseNetDev, workingSetBytes } from "../../server/billing/counters";
import { accountWindow, apportion, counterDelta, type HistoryRow } from "../../server/billing/window";
import { POWER_EMERGENCY_REASON } from "../../server/compute/states";

const T0 = Date.parse("2024-05-10T09:50:00Z");
const at = (offsetMs: number) => new Date(T0 + offsetMs);
const MIN = 60_000;
let seq = 100;
const row = (offsetMs: number, fromState: HistoryRow["fromState"], toState: HistoryRow["toState"], reason = "requested"): HistoryRow => ({ seq: ++seq, fromState, toState, reason, at: at(offsetMs) });

describe("accounting a window from the state history", () => {
  test("counts running, paused and emergency-paused time, split at UTC hours", () => {
    const rows = [
      row(0, "provisioning", "running"),
      row(5 * MIN, "running", "paused", POWER_EMERGENCY_REASON),
      row(15 * MIN, "paused", "running", "power_restored"),
      row(20 * MIN, "running", "paused", "operator"),
      row(25 * MIN, "paused", "stopped"),
    ];
    const { hours, end } = accountWindow(T0, T0 + 30 * MIN, { state: "provisioning", reason: "requested", startSeq: null }, rows);
    // 09:50–10:00: 5 min running, 5 min emergency; 10:00–10:20: 5 emergency, 5 running, 5 paused.
    expect(hours).toEqual([
      { hour: Date.parse("2024-05-10T09:00:00Z"), runningMs: 5 * MIN, pausedMs: 0, emergencyPausedMs: 5 * MIN },
      { hour: Date.parse("2024-05-10T10:00:00Z"), runningMs: 5 * MIN, pausedMs: 5 * MIN, emergencyPausedMs: 5 * MIN },
    ]);
    expect(end).toEqual({ state: "stopped", reason: "requested", startSeq: rows[0]!.seq });
  });

  test("splitting a window anywhere gives the same totals as one window (missed or extra ticks)", () => {
    const rows = [row(MIN, "provisioning", "running"), row(40 * MIN, "running", "paused", POWER_EMERGENCY_REASON), row(70 * MIN, "paused", "running")];
    const whole = accountWindow(T0, T0 + 90 * MIN, { state: "provisioning", reason: "x", startSeq: null }, rows);
    const cut = T0 + 37 * MIN + 123;
    const first = accountWindow(
      T0,
      cut,
      { state: "provisioning", reason: "x", startSeq: null },
      rows.filter((r) => r.at.getTime() <= cut),
    );
    const second = accountWindow(
      cut,
      T0 + 90 * MIN,
      first.end,
      rows.filter((r) => r.at.getTime() > cut),
    );
    const total = (hs: typeof whole.hours) => hs.reduce((a, h) => ({ r: a.r + h.runningMs, p: a.p + h.pausedMs, e: a.e + h.emergencyPausedMs }), { r: 0, p: 0, e: 0 });
    const a = total(first.hours);
    const b = total(second.hours);
    expect({ r: a.r + b.r, p: a.p + b.p, e: a.e + b.e }).toEqual(total(whole.hours));
    expect(second.end).toEqual(whole.end);
  });

  test("a window with no change carries the state it started in", () => {
    const running = accountWindow(T0, T0 + MIN, { state: "running", reason: "x", startSeq: 7 }, []);
    expect(running.hours).toEqual([{ hour: Date.parse("2024-05-10T09:00:00Z"), runningMs: MIN, pausedMs: 0, emergencyPausedMs: 0 }]);
    expect(accountWindow(T0, T0 + MIN, { state: "stopped", reason: "x", startSeq: 7 }, []).hours).toEqual([]);
  });

  test("a row stamped before the previous one never counts time twice", () => {
    const rows = [row(10 * MIN, "stopped", "provisioning"), row(5 * MIN, "provisioning", "running")];
    const { hours } = accountWindow(T0, T0 + 20 * MIN, { state: "stopped", reason: "x", startSeq: null }, rows);
    expect(hours.reduce((sum, h) => sum + h.runningMs, 0)).toBe(10 * MIN);
  });

  test("a restart (stopping → running) marks a new container run; a resume does not", () => {
    const restart = accountWindow(T0, T0 + MIN, { state: "running", reason: "x", startSeq: 1 }, [row(1000, "running", "stopping"), row(2000, "stopping", "running")]);
    expect(restart.end.startSeq).toBe(seq);
    const resume = accountWindow(T0, T0 + MIN, { state: "paused", reason: "x", startSeq: 1 }, [row(1000, "paused", "running")]);
    expect(resume.end.startSeq).toBe(1);
  });
});

describe("counters", () => {
  test("deltas against the baseline, or the whole value after a reset", () => {
    expect(counterDelta(150, 100, false)).toBe(50);
    expect(counterDelta(30, 100, false)).toBe(30);
    expect(counterDelta(150, 100, true)).toBe(150);
    expect(counterDelta(150, null, false)).toBe(150);
  });

  test("apportioning never loses or invents a unit", () => {
    const shares = apportion(1001, [1, 1, 1]);
    expect(shares.reduce((a, b) => a + b, 0)).toBe(1001);
    expect(apportion(10, [3, 1])).toEqual([8, 2]);
    expect(apportion(7, [0, 0])).toEqual([0, 7]);
    expect(apportion(5, [])).toEqual([]);
  });

  test("network counters sum every interface but loopback", () => {
    const text = [
      "Inter-|   Receive                                                |  Transmit",
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
      "    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0",
      "  eth0:    5000      40    0    0    0     0          0         0     7000      50    0    0    0     0       0          0",
      "  eth1:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0",
    ].join("\n");
    expect(parseNetDev(text)).toEqual({ rxBytes: 5100, txBytes: 7200 });
    expect(parseNetDev("")).toEqual({ rxBytes: 0, txBytes: 0 });
  });

  test("memory in use excludes the inactive page cache", () => {
    expect(workingSetBytes(10_000, "cache 500\ntotal_inactive_file 3000\n")).toBe(7000);
    expect(workingSetBytes(10_000, "inactive_file 4000\n")).toBe(6000);
    expect(workingSetBytes(100, "total_inactive_file 300\n")).toBe(0);
  });
});

describe("batch plumbing", () => {
  test("array literals quote text, keep numbers exact and mark nulls", () => {
    expect(pgArray([1, 2_000_000_000_000, null])).toBe("{1,2000000000000,NULL}");
    expect(pgArray(['a"b', "c\\d", "NULL"])).toBe('{"a\\"b","c\\\\d","NULL"}');
    expect(pgArray([new Date("2024-01-01T00:00:00Z")])).toBe('{"2024-01-01T00:00:00.000Z"}');
  });

  test("bounded parallel work keeps order and never exceeds the bound", async () => {
    let inFlight = 0;
    let peak = 0;
    const out = await mapBounded([5, 1, 4, 2, 3, 0], 2, async (n) => {
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      await Bun.sleep(n);
      inFlight -= 1;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30, 0]);
    expect(peak).toBe(2);
  });
});
