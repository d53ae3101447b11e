import { describe, expect, test } from "bun:test";
import { crc16, EPEVER_READS, ModbusClient, ModbusError, parseResponse, pollEpever, READ_HOLDING, READ_INPUT, readingFromEpever, readRequest, withCrc } from "../../hardware/protocols/modbus";
import { ControllerModel } from "../../hardware/simulator/model";
import { EpeverResponder, epeverRegisters } from "../../hardware/simulator/devices";

const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/), (h) => parseInt(h, 16));
const show = (b: Uint8Array) => [...b].map((x) => x.toString(16).toUpperCase().padStart(2, "0")).join(" ");

describe("Modbus RTU framing", () => {
  test("CRC-16/MODBUS matches the EPEver specification's worked example", () => {
    // "Read real-time battery voltage": 01 04 31 04 00 01 7E F7 (CRC low byte first).
    expect(show(readRequest(1, READ_INPUT, 0x3104, 1))).toBe("01 04 31 04 00 01 7E F7");
    expect(crc16(hex("01 04 02 04 CE"))).toBe(0x643a);
  });

  test("a reply is decoded only after address, function, byte count and CRC check out", () => {
    const reply = hex("01 04 02 04 CE 3A 64");
    expect(parseResponse(reply, { unit: 1, fn: READ_INPUT, count: 1 })).toEqual({ kind: "registers", registers: [0x04ce], length: 7 });
    expect(parseResponse(reply.subarray(0, 5), { unit: 1, fn: READ_INPUT, count: 1 })).toEqual({ kind: "incomplete" });
    expect(parseResponse(hex("01 04 02 04 CE 3A 65"), { unit: 1, fn: READ_INPUT, count: 1 })).toEqual({ kind: "crc", length: 7 });
    expect(parseResponse(reply, { unit: 2, fn: READ_INPUT, count: 1 })).toEqual({ kind: "noise", skip: 1 });
    expect(parseResponse(reply, { unit: 1, fn: READ_HOLDING, count: 1 })).toEqual({ kind: "noise", skip: 1 });
    expect(parseResponse(reply, { unit: 1, fn: READ_INPUT, count: 2 })).toEqual({ kind: "noise", skip: 1 });
  });

  test("an exception reply (function | 0x80) carries its code", () => {
    // Renogy documentation example: 30 83 02 91 3E = illegal data address on a 0x03 read.
    expect(parseResponse(hex("30 83 02 91 3E"), { unit: 0x30, fn: READ_HOLDING, count: 1 })).toEqual({ kind: "exception", code: 2, length: 5 });
  });

  test("EPEver registers are scaled, signed and combined as documented", () => {
    // 0x331A..0x331C = 04 FC FF FD FF FF: 12.76 V and a net current of -0.03 A (signed 32-bit, low word first).
    const regs = new Map<number, number>([
      [0x3100, 3150],
      [0x3101, 412],
      [0x3102, 0x93e0],
      [0x3103, 0x0000],
      [0x310c, 1276],
      [0x310d, 235],
      [0x310e, 29986],
      [0x310f, 0],
      [0x3110, 0xff38],
      [0x3111, 3120],
      [0x311a, 76],
      [0x3200, 0x0003],
      [0x3201, 0x0009],
      [0x3202, 0x0001],
      [0x331a, 0x04fc],
      [0x331b, 0xfffd],
      [0x331c, 0xffff],
      [0x330c, 0x86a0],
      [0x330d, 0x0001],
    ]);
    const r = readingFromEpever(regs);
    expect(r).toMatchObject({
      pvVoltage: 31.5,
      pvCurrent: 4.12,
      pvPower: 378.56,
      batteryVoltage: 12.76,
      batteryCurrent: -0.03,
      loadVoltage: 12.76,
      loadCurrent: 2.35,
      loadPower: 299.86,
      batteryTemperature: -2,
      controllerTemperature: 31.2,
      soc: 76,
      socSource: "controller",
      chargeState: "bulk",
      yieldTodayKwh: 1000,
    });
    expect(r.fault).toContain("battery low-voltage disconnect");
  });
});

/** A simulated EPEver (the project's own device model) on an in-memory line, with faults we can inject. */
function line(opts: { drop?: number[]; corrupt?: number[]; echo?: boolean; noise?: boolean; silent?: boolean } = {}) {
  const model = new ControllerModel({ scenario: "sunny-day", chemistry: "lead-acid", nominalVoltage: 12, capacityAh: 100, startSoc: 64 });
  model.step(4 * 3600);
  const device = new EpeverResponder(1, () => epeverRegisters(model.state));
  let n = 0;
  const client: ModbusClient = new ModbusClient({
    timeoutMs: 50,
    retries: 2,
    settleMs: 1,
    write(request) {
      const replies = device.feed(request);
      queueMicrotask(() => {
        for (const reply of replies) {
          n++;
          if (opts.silent || opts.drop?.includes(n)) continue;
          if (opts.echo) client.feed(request);
          if (opts.noise) client.feed(hex("00 FF 13"));
          if (opts.corrupt?.includes(n)) reply[4] = reply[4]! ^ 0x20;
          // Delivered in two pieces, as a serial line does.
          client.feed(reply.subarray(0, 3));
          client.feed(reply.subarray(3));
        }
      });
    },
  });
  return { client, model };
}

describe("Modbus polling of an EPEver Tracer", () => {
  test("a poll reads every documented block and yields a full reading", async () => {
    const { client, model } = line();
    const reading = readingFromEpever(await pollEpever(client, 1));
    expect(client.stats.requests).toBe(EPEVER_READS.length);
    expect(reading.soc).toBe(Math.round(model.state.soc));
    expect(reading.batteryVoltage).toBeCloseTo(model.state.batteryVoltage, 2);
    expect(reading.batteryCurrent).toBeCloseTo(model.state.batteryCurrent, 2);
    expect(reading.pvPower).toBeCloseTo(model.state.pvPower, 1);
    expect(reading.loadPower).toBeCloseTo(model.state.loadPower, 1);
  });

  test("an adapter that echoes the request is tolerated", async () => {
    const { client } = line({ echo: true });
    const values = await client.read(1, READ_INPUT, 0x311a, 1);
    expect(values).toHaveLength(1);
    expect(client.stats.echoes).toBe(1);
  });

  test("stray bytes before a reply are skipped", async () => {
    const { client } = line({ noise: true });
    expect(await client.read(1, READ_INPUT, 0x3100, 4)).toHaveLength(4);
    expect(client.stats.noiseBytes).toBe(3);
  });

  test("a lost reply times out and the request is retried", async () => {
    const { client } = line({ drop: [1] });
    expect(await client.read(1, READ_INPUT, 0x3100, 2)).toHaveLength(2);
    expect(client.stats).toMatchObject({ timeouts: 1, retries: 1, replies: 1 });
  });

  test("a reply failing its CRC is never decoded; the request is retried", async () => {
    const { client } = line({ corrupt: [1, 2] });
    expect(await client.read(1, READ_INPUT, 0x3100, 2)).toHaveLength(2);
    expect(client.stats).toMatchObject({ crcErrors: 2, retries: 2, replies: 1 });
  });

  test("a controller that never answers fails after the retries", async () => {
    const { client } = line({ silent: true });
    const error = await client.read(1, READ_INPUT, 0x3100, 2).catch((e) => e);
    expect(error).toBeInstanceOf(ModbusError);
    expect((error as ModbusError).kind).toBe("timeout");
    expect(client.stats.requests).toBe(3);
  });

  test("an exception is reported at once, not retried", async () => {
    const { client } = line();
    const error = await client.read(1, READ_INPUT, 0x5000, 1).catch((e) => e);
    expect((error as ModbusError).kind).toBe("exception");
    expect((error as ModbusError).exceptionCode).toBe(2);
    expect(client.stats.requests).toBe(1);
  });

  test("requests issued together are put on the line one at a time", async () => {
    const { client } = line();
    const results = await Promise.all([client.read(1, READ_INPUT, 0x3100, 1), client.read(1, READ_INPUT, 0x311a, 1), client.read(1, READ_INPUT, 0x331a, 3)]);
    expect(results.map((r) => r.length)).toEqual([1, 1, 3]);
  });

  test("withCrc frames what readRequest builds", () => {
    expect(withCrc([1, 4, 0x31, 0x04, 0, 1])).toEqual(readRequest(1, READ_INPUT, 0x3104, 1));
  });
});
