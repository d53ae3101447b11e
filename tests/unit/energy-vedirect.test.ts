import { describe, expect, test } from "bun:test";
import { encodeBlock, VeDirectDecoder, type VeDirectFrame } from "../../hardware/protocols/vedirect";
import { readingFromVeDirect } from "../../hardware/protocols/vedirect-fields";

/**
 * Bytes written from the VE.Direct protocol description: a block is
 * `\r\nLABEL\tVALUE` lines, then `\r\nChecksum\t` and one byte chosen so that
 * every byte of the block sums to 0 mod 256. The helper below applies that
 * rule by hand (it does not use the project's encoder).
 */
const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const sum = (b: Uint8Array) => b.reduce((a, x) => (a + x) & 0xff, 0);

function block(lines: string[], opts: { checksum?: number } = {}): Uint8Array {
  const body = bytes(`${lines.map((l) => `\r\n${l}`).join("")}\r\nChecksum\t`);
  const out = new Uint8Array(body.length + 1);
  out.set(body);
  out[body.length] = opts.checksum ?? (256 - sum(body)) & 0xff;
  return out;
}

const concat = (...parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);

function decode(stream: Uint8Array, opts: { chunk?: number } = {}) {
  const frames: VeDirectFrame[] = [];
  const decoder = new VeDirectDecoder({ onFrame: (f) => frames.push(f) });
  const size = opts.chunk ?? stream.length;
  for (let i = 0; i < stream.length; i += size) decoder.push(stream.subarray(i, i + size), 0);
  return { frames, stats: decoder.stats, decoder };
}

// A SmartSolar MPPT 75/15 frame as the protocol document lists its fields.
const MPPT = [
  "PID\t0xA053",
  "FW\t146",
  "SER#\tHQ1328Y6TF6",
  "V\t13400",
  "I\t-4900",
  "VPV\t30720",
  "PPV\t69",
  "CS\t3",
  "MPPT\t2",
  "OR\t0x00000000",
  "ERR\t0",
  "LOAD\tON",
  "IL\t1500",
  "H19\t1234",
  "H20\t6",
  "H21\t70",
  "H22\t12",
  "H23\t80",
  "HSDS\t15",
];

/** A block whose checksum byte comes out as `target`, by varying the serial number. */
function blockWithChecksumByte(target: number): Uint8Array {
  // 'X' (0x58) repeated k times moves the sum in steps of 8 (mod 256); a final letter fills the gaps.
  for (let k = 0; k < 32; k++) {
    for (let c = 0x41; c <= 0x48; c++) {
      const b = block(["PID\t0xA053", `SER#\t${"X".repeat(k)}${String.fromCharCode(c)}`, "V\t12800", "I\t1000"]);
      if (b[b.length - 1] === target) return b;
    }
  }
  throw new Error(`no block with checksum byte ${target}`);
}

describe("VE.Direct text decoding", () => {
  test("a valid block becomes a frame, normalised to SI units", () => {
    const { frames, stats } = decode(block(MPPT));
    expect(stats.blocks).toBe(1);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.fields).toMatchObject({ PID: "0xA053", V: "13400", "SER#": "HQ1328Y6TF6" });
    const r = readingFromVeDirect(frames[0]!.fields);
    expect(r).toMatchObject({
      batteryVoltage: 13.4,
      batteryCurrent: -4.9,
      pvVoltage: 30.72,
      pvPower: 69,
      loadCurrent: 1.5,
      loadVoltage: 13.4,
      loadPower: 20.1,
      chargeState: "bulk",
      yieldTodayKwh: 0.06,
      soc: null,
      socSource: null,
      fault: null,
    });
    expect(r.pvCurrent).toBeCloseTo(69 / 30.72, 3);
  });

  test("labels are compared case-insensitively (the reference handler upper-cases them)", () => {
    const { frames } = decode(block(["PID\t0x203", "V\t12169", "Relay\tOFF"]));
    expect(frames[0]!.fields).toMatchObject({ V: "12169", RELAY: "OFF" });
  });

  test("a block with a bad checksum is dropped, counted, and none of its fields are applied", () => {
    const good = block(MPPT);
    const bad = block(["PID\t0xA053", "V\t99999", "XTRA\t1"], { checksum: 0x00 });
    const { frames, stats } = decode(concat(good, bad, good));
    expect(stats.dropped.checksum).toBe(1);
    expect(stats.blocks).toBe(2);
    expect(frames).toHaveLength(2);
    for (const f of frames) {
      expect(f.fields.V).toBe("13400");
      expect(f.fields.XTRA).toBeUndefined();
    }
  });

  test("a single damaged byte fails the block", () => {
    const damaged = block(MPPT);
    damaged[30] = damaged[30]! ^ 0x04;
    const { frames, stats } = decode(damaged);
    expect(frames).toHaveLength(0);
    expect(stats.dropped.checksum).toBe(1);
  });

  for (const [name, byte] of [
    [":", 0x3a],
    ["\\r", 0x0d],
    ["\\n", 0x0a],
    ["\\t", 0x09],
  ] as const) {
    test(`a checksum byte equal to '${name}' is taken as the checksum, not as framing`, () => {
      const tricky = blockWithChecksumByte(byte);
      expect(tricky[tricky.length - 1]).toBe(byte);
      const { frames, stats } = decode(concat(tricky, block(MPPT), tricky));
      expect(stats.blocks).toBe(3);
      expect(stats.dropped).toEqual({ checksum: 0, overflow: 0, malformed: 0, grammar: 0, truncated: 0, gap: 0 });
      expect(frames.map((f) => f.fields.V)).toEqual(["12800", "13400", "12800"]);
    });
  }

  test("HEX messages between blocks are skipped and not summed", () => {
    // ":7F0ED0071" is the GET 0xEDF0 example of the protocol FAQ: (7 + F0 + ED + 00 + 71) mod 256 = 0x55.
    const hex = bytes(":7F0ED0071\n");
    const asyncMsg = bytes(":A0102000543\n");
    const { frames, stats } = decode(concat(block(MPPT), hex, asyncMsg, block(MPPT)));
    expect(frames).toHaveLength(2);
    expect(stats.hexMessages).toBe(2);
    expect(stats.hexErrors).toBe(0);
  });

  test("a HEX message interrupting a block (older firmware) leaves the block intact", () => {
    const b = block(MPPT);
    const text = new TextDecoder().decode(b);
    const betweenFields = text.indexOf("\r\nVPV");
    const midValue = text.indexOf("HQ1328") + 3;
    const hex = bytes(":7F0ED0071\n");
    const stream = concat(b.subarray(0, midValue), hex, b.subarray(midValue, betweenFields), hex, b.subarray(betweenFields));
    const { frames, stats } = decode(stream);
    expect(stats.hexMessages).toBe(2);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.fields["SER#"]).toBe("HQ1328Y6TF6");
    expect(frames[0]!.fields.VPV).toBe("30720");
  });

  test("a runaway HEX line (lost newline) is abandoned and the next block still decodes", () => {
    const { frames, stats } = decode(concat(bytes(`:A${"0".repeat(150)}`), block(MPPT), block(MPPT)));
    expect(stats.hexErrors).toBe(1);
    expect(frames.length).toBeGreaterThanOrEqual(1);
    expect(frames.at(-1)!.fields.V).toBe("13400");
  });

  test("a frame sent as two checksummed blocks is merged; a bad second block is not", () => {
    const first = block(MPPT.slice(0, 10));
    const second = block(MPPT.slice(10));
    const badSecond = block(["ERR\t2", "LOAD\tOFF", "H20\t999"], { checksum: 0x01 });
    const { frames, stats } = decode(concat(first, second, first, badSecond, first));
    expect(stats.blocks).toBe(4);
    expect(stats.dropped.checksum).toBe(1);
    // A frame is emitted when a PID block validates; it carries the other block's fields seen before it.
    expect(frames).toHaveLength(3);
    expect(frames[0]!.fields.H20).toBeUndefined();
    expect(frames[1]!.fields).toMatchObject({ PID: "0xA053", V: "13400", H20: "6", ERR: "0", LOAD: "ON" });
    expect(frames[2]!.fields).toMatchObject({ H20: "6", ERR: "0" });
  });

  test("'---' means unknown and becomes null, not zero", () => {
    // A BMV before synchronisation, and without a temperature sensor.
    const { frames } = decode(block(["PID\t0x203", "V\t12169", "I\t-2673", "CE\t---", "SOC\t---", "TTG\t---", "T\t---", "Alarm\tOFF", "AR\t0"]));
    expect(frames[0]!.fields.SOC).toBeNull();
    const r = readingFromVeDirect(frames[0]!.fields);
    expect(r.soc).toBeNull();
    expect(r.batteryTemperature).toBeNull();
    expect(r.batteryVoltage).toBe(12.169);
  });

  test("a battery monitor's SOC (per-mille) and alarms are read", () => {
    const { frames } = decode(block(["PID\t0x203", "V\t11800", "I\t-8000", "SOC\t837", "T\t21", "Alarm\tON", "AR\t5"]));
    const r = readingFromVeDirect(frames[0]!.fields);
    expect(r).toMatchObject({ soc: 83.7, socSource: "controller", batteryTemperature: 21 });
    expect(r.fault).toContain("low voltage");
    expect(r.fault).toContain("low SOC");
  });

  test("a charger error is reported as a fault", () => {
    const { frames } = decode(block(["PID\t0xA053", "V\t14900", "ERR\t2", "CS\t2"]));
    const r = readingFromVeDirect(frames[0]!.fields);
    expect(r.chargeState).toBe("fault");
    expect(r.fault).toBe("battery voltage too high (VE.Direct ERR 2)");
  });

  test("over-long labels, values and blocks are dropped even when the checksum adds up", () => {
    const longLabel = block(["PID\t0xA053", "ABCDEFGHI\t1"]);
    const longValue = block(["PID\t0xA053", `SER#\t${"X".repeat(33)}`]);
    const manyFields = block(["PID\t0xA053", ...Array.from({ length: 22 }, (_, i) => `H${i}\t${i}`)]);
    const { frames, stats } = decode(concat(longLabel, longValue, manyFields, block(MPPT)));
    expect(stats.dropped.overflow).toBe(3);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.fields.V).toBe("13400");
  });

  test("limits are inclusive: an 8-character label and a 32-character value pass", () => {
    const { frames, stats } = decode(block(["PID\t0xA053", `ABCDEFGH\t${"Y".repeat(32)}`]));
    expect(stats.blocks).toBe(1);
    expect(frames[0]!.fields.ABCDEFGH).toBe("Y".repeat(32));
  });

  test("a pause longer than 500 ms inside a block means lost bytes: the block is dropped", () => {
    const frames: VeDirectFrame[] = [];
    const decoder = new VeDirectDecoder({ onFrame: (f) => frames.push(f) });
    const b = block(MPPT);
    decoder.push(b.subarray(0, 40), 1000);
    decoder.push(b.subarray(40), 1700);
    expect(decoder.stats.dropped.gap).toBe(1);
    decoder.push(block(MPPT), 2700);
    expect(frames).toHaveLength(1);
    // Pauses between blocks are normal (one frame a second).
    decoder.push(block(MPPT), 3700);
    expect(frames).toHaveLength(2);
    expect(decoder.stats.dropped.gap).toBe(1);
  });

  test("a HEX line cut short between blocks costs no text block", () => {
    const frames: VeDirectFrame[] = [];
    const decoder = new VeDirectDecoder({ onFrame: (f) => frames.push(f) });
    decoder.push(concat(block(MPPT), bytes(":A0102")), 0);
    decoder.push(block(MPPT), 1000);
    expect(frames).toHaveLength(2);
    expect(decoder.stats.hexErrors).toBe(1);
    expect(decoder.stats.dropped.gap).toBe(0);
  });

  test("a capture that starts mid-block drops the partial block and recovers on the next", () => {
    const full = concat(block(MPPT), block(MPPT));
    const { frames, stats } = decode(full.subarray(25));
    expect(stats.dropped.checksum).toBe(1);
    expect(frames).toHaveLength(1);
  });

  test("chunk boundaries do not matter", () => {
    const stream = concat(block(MPPT), bytes(":7F0ED0071\n"), blockWithChecksumByte(0x3a), block(MPPT.slice(0, 10)), block(MPPT.slice(10)), block(MPPT));
    const whole = decode(stream);
    const byByte = decode(stream, { chunk: 1 });
    const byOdd = decode(stream, { chunk: 7 });
    expect(byByte.frames).toEqual(whole.frames);
    expect(byOdd.frames).toEqual(whole.frames);
    expect(whole.frames).toHaveLength(4);
  });

  test("random noise never throws and never yields a frame", () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const noise = Uint8Array.from({ length: 50_000 }, () => {
      const r = rand();
      // Weighted towards the framing bytes so the state machine is exercised.
      return r < 0.05 ? 0x0a : r < 0.1 ? 0x09 : r < 0.12 ? 0x3a : Math.floor(rand() * 256);
    });
    const { frames } = decode(noise, { chunk: 97 });
    const plausible = frames.filter((f) => f.fields.PID !== undefined);
    expect(plausible).toHaveLength(0);
  });

  test("the encoder the simulator uses produces blocks the decoder accepts", () => {
    const fields = MPPT.map((l) => l.split("\t") as [string, string]);
    const b = encodeBlock(fields);
    expect(sum(b)).toBe(0);
    expect(b).toEqual(block(MPPT));
  });
});
