import { describe, expect, test } from "bun:test";
import { LinkHealth } from "../../hardware/link";
import { isJump, outOfRange, PlausibilityFilter, plausibilityLimits } from "../../hardware/plausibility";
import { emptyReading, type Reading } from "../../hardware/protocols/reading";
import { encodeBlock, VeDirectDecoder, type VeDirectFrame } from "../../hardware/protocols/vedirect";
import { resample } from "../../hardware/simulator/uart";

// A 12 V lead-acid bank of 100 Ah on a 50 A controller with 600 Wp of panels.
const limits = plausibilityLimits({ chemistry: "lead-acid", cells: 6, nominalVoltage: 12, capacityAh: 100, ratedCurrentA: 50, pvArrayWp: 600 });
const reading = (over: Partial<Reading>): Reading => ({ ...emptyReading(), batteryVoltage: 12.6, batteryCurrent: -5, pvVoltage: 0.01, pvPower: 0, loadCurrent: 5, loadPower: 63, ...over });
const MINUTE = 60_000;

describe("plausibility of a reading", () => {
  test("the ranges come from the chemistry, the cells, the controller's rating and the array", () => {
    expect(limits.batteryVolts.min).toBeCloseTo(9, 9);
    expect(limits.batteryVolts.max).toBeCloseTo(16.2, 9);
    expect(limits.maxCurrentA).toBeCloseTo(55, 9);
    expect(limits.maxPvPowerW).toBe(670);
    const lifepo4 = plausibilityLimits({ chemistry: "lifepo4", cells: 16, nominalVoltage: 48, capacityAh: 200, ratedCurrentA: 60, pvArrayWp: 3000 });
    expect(lifepo4.batteryVolts.min).toBeCloseTo(32, 9);
    expect(lifepo4.batteryVolts.max).toBeCloseTo(62.4, 9);
  });

  test("each impossible field is named; unknown (null) fields are not judged", () => {
    expect(outOfRange(reading({}), limits)).toBeNull();
    expect(outOfRange(reading({ soc: 100.1, socSource: "controller" }), limits)).toBe("soc_range");
    expect(outOfRange(reading({ soc: -1 }), limits)).toBe("soc_range");
    expect(outOfRange(reading({ batteryVoltage: 99.999 }), limits)).toBe("voltage_range");
    expect(outOfRange(reading({ batteryVoltage: 4.2 }), limits)).toBe("voltage_range");
    expect(outOfRange(reading({ batteryCurrent: -80 }), limits)).toBe("current_range");
    expect(outOfRange(reading({ loadCurrent: 60 }), limits)).toBe("current_range");
    expect(outOfRange(reading({ pvPower: 2000, pvVoltage: 30 }), limits)).toBe("pv_power_range");
    // Power from panels below the battery's voltage cannot be.
    expect(outOfRange(reading({ pvPower: 100, pvVoltage: 11 }), limits)).toBe("pv_voltage");
    expect(outOfRange(reading({ loadPower: 5000 }), limits)).toBe("load_power_range");
    expect(outOfRange({ ...emptyReading() }, limits)).toBeNull();
    expect(outOfRange(reading({ batteryVoltage: Number.NaN }), limits)).toBe("voltage_range");
  });

  test("a voltage step must be explained by a current step; a controller's SOC by the current over the time", () => {
    const before = reading({ batteryVoltage: 12.6, batteryCurrent: -5 });
    // 1 V with the current unchanged: a damaged digit, not a battery.
    expect(isJump(before, reading({ batteryVoltage: 13.6, batteryCurrent: -5 }), 1 / 3600, limits)).toBe(true);
    // 0.5 V with the load stepping 30 A: internal resistance at work.
    expect(isJump(before, reading({ batteryVoltage: 12.1, batteryCurrent: -35 }), 1 / 3600, limits)).toBe(false);
    // An hour later the bank may be somewhere else entirely (charging began).
    expect(isJump(before, reading({ batteryVoltage: 14.4, batteryCurrent: 20 }), 1, limits)).toBe(false);
    const soc = (n: number) => reading({ soc: n, socSource: "controller" });
    expect(isJump(soc(60), soc(70), 1 / 3600, limits)).toBe(true);
    expect(isJump(soc(60), soc(61.5), 1 / 3600, limits)).toBe(false);
    // A SOC estimated from voltage follows the voltage (already judged).
    expect(isJump(reading({ soc: 60, socSource: "voltage" }), reading({ soc: 90, socSource: "voltage" }), 1 / 3600, limits)).toBe(false);
  });

  test("the filter rejects by reason, keeps its reference, and accepts a step confirmed three times", () => {
    const filter = new PlausibilityFilter(limits);
    expect(filter.check(reading({ batteryVoltage: 12.6 }), 0)).toEqual({ ok: true });
    expect(filter.check(reading({ batteryVoltage: 99.9 }), MINUTE)).toEqual({ ok: false, reason: "voltage_range" });
    expect(filter.check(reading({ batteryVoltage: 13.9 }), 2 * MINUTE)).toEqual({ ok: false, reason: "jump" });
    // Back to normal: judged against the last accepted reading, not the rejected one.
    expect(filter.check(reading({ batteryVoltage: 12.61 }), 3 * MINUTE)).toEqual({ ok: true });
    // A real step (the bank swapped) seen three times running is accepted.
    expect(filter.check(reading({ batteryVoltage: 14.2 }), 4 * MINUTE)).toEqual({ ok: false, reason: "jump" });
    expect(filter.check(reading({ batteryVoltage: 14.21 }), 4.1 * MINUTE)).toEqual({ ok: false, reason: "jump" });
    expect(filter.check(reading({ batteryVoltage: 14.2 }), 4.2 * MINUTE)).toEqual({ ok: true });
    expect(filter.check(reading({ batteryVoltage: 14.22 }), 4.3 * MINUTE)).toEqual({ ok: true });
    // After a reset (telemetry lost) anything in range starts afresh.
    filter.reset();
    expect(filter.check(reading({ batteryVoltage: 11.5 }), 5 * MINUTE)).toEqual({ ok: true });
  });
});

describe("two high bits flipped: the checksum adds up, the grammar does not", () => {
  const fields: Array<[string, string]> = [
    ["PID", "0xA053"],
    ["V", "12840"],
    ["I", "-3500"],
    ["SOC", "715"],
  ];
  const decode = (bytes: Uint8Array) => {
    const frames: VeDirectFrame[] = [];
    const decoder = new VeDirectDecoder({ onFrame: (f) => frames.push(f) });
    decoder.push(bytes, 0);
    return { frames, stats: decoder.stats };
  };

  for (const [what, label] of [
    ["voltage", "V"],
    ["state of charge", "SOC"],
  ] as const) {
    test(`in the ${what}: the block is dropped, the value never read`, () => {
      const block = encodeBlock(fields);
      const at = new TextDecoder("latin1").decode(block).indexOf(`\r\n${label}\t`) + label.length + 3;
      const damaged = block.slice();
      damaged[at] = damaged[at]! ^ 0x80;
      damaged[at + 1] = damaged[at + 1]! ^ 0x80;
      // The byte sum, and so the checksum, is unchanged.
      expect(damaged.reduce((a, b) => (a + b) & 0xff, 0)).toBe(0);
      const { frames, stats } = decode(Buffer.concat([damaged, block]));
      expect(stats.dropped.grammar).toBe(1);
      expect(frames).toHaveLength(1);
      expect(frames[0]!.fields).toMatchObject({ V: "12840", SOC: "715" });
    });
  }

  test("a non-numeric value in a numeric field drops the block rather than reading it as unknown", () => {
    const { frames, stats } = decode(encodeBlock([...fields.slice(0, 1), ["V", "12A40"], ...fields.slice(2)]));
    expect(frames).toHaveLength(0);
    expect(stats.dropped.grammar).toBe(1);
  });

  test("a truncated block followed at once by a valid one costs only the truncated one", () => {
    const whole = encodeBlock(fields);
    for (const cut of [12, 20, 27, 33]) {
      const { frames, stats } = decode(Buffer.concat([whole.subarray(0, cut), whole, whole]));
      expect({ cut, frames: frames.length }).toEqual({ cut, frames: 2 });
      expect(stats.dropped.truncated + stats.dropped.checksum).toBe(1);
    }
    // Cut inside the checksum line: the '\r' of the next block is taken for the checksum byte.
    const inChecksum = whole.subarray(0, whole.length - 1);
    const { frames } = decode(Buffer.concat([inChecksum, whole, whole]));
    expect(frames).toHaveLength(2);
  });
});

describe("a receiver at the wrong baud rate", () => {
  const stream = Buffer.concat(
    Array.from({ length: 10 }, () =>
      encodeBlock([
        ["PID", "0xA053"],
        ["V", "12800"],
        ["I", "1000"],
      ]),
    ),
  );

  test("at the right rate the bytes come through unchanged", () => {
    expect(Buffer.from(resample(stream, 19200, 19200))).toEqual(stream);
  });

  for (const tx of [9600, 38400, 115200]) {
    test(`bytes sent at ${tx} and read at 19200 arrive, but nothing decodes`, () => {
      const garbage = resample(stream, tx, 19200);
      expect(garbage.length).toBeGreaterThan(0);
      const frames: VeDirectFrame[] = [];
      const decoder = new VeDirectDecoder({ onFrame: (f) => frames.push(f) });
      decoder.push(garbage, 0);
      expect(frames).toHaveLength(0);
    });
  }
});

describe("link health", () => {
  const TIMEOUT = 1000;

  test("bytes without a valid reading are `degraded`; nothing at all is `lost`; a reading is `ok`", () => {
    const link = new LinkHealth(TIMEOUT, 0);
    expect(link.evaluate(500)).toEqual({ state: "waiting", change: null });
    link.bytes(200, 600);
    // Bytes during start-up: still waiting for the first frame.
    expect(link.evaluate(900).state).toBe("waiting");
    link.bytes(200, 1100);
    expect(link.evaluate(1200)).toEqual({ state: "degraded", change: { from: "waiting", to: "degraded" } });
    link.frame(1300);
    link.accepted(1300);
    expect(link.evaluate(1300)).toEqual({ state: "ok", change: { from: "degraded", to: "ok" } });
    // Frames still decode but every reading is refused: degraded again.
    link.bytes(300, 2000);
    link.frame(2000);
    expect(link.evaluate(2400).state).toBe("degraded");
    expect(link.snapshot().recent).toMatchObject({ frames: 1, accepted: 0 });
    // Then silence.
    expect(link.evaluate(3100)).toEqual({ state: "lost", change: { from: "degraded", to: "lost" } });
    expect(link.snapshot().totals).toEqual({ bytes: 700, frames: 2, accepted: 1 });
  });

  test("silence from the start is lost once the timeout has passed", () => {
    const link = new LinkHealth(TIMEOUT, 0);
    expect(link.evaluate(1001)).toEqual({ state: "lost", change: { from: "waiting", to: "lost" } });
  });
});
