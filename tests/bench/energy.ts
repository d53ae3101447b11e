// How fast the protocol decoders run, on bytes the simulator produces.
//   node_modules/.bin/bun tests/bench/energy.ts
// A controller sends ~1 VE.Direct frame/s (~250 bytes) and a Modbus poll is 5
// replies every few seconds: the figures below are the headroom over that.
import { ModbusClient, parseResponse, pollEpever, READ_INPUT, readingFromEpever, registersResponse, type RegisterMap } from "../../hardware/protocols/modbus";
import { VeDirectDecoder } from "../../hardware/protocols/vedirect";
import { readingFromVeDirect } from "../../hardware/protocols/vedirect-fields";
import { PlausibilityFilter, plausibilityLimits } from "../../hardware/plausibility";
import { EpeverResponder, epeverRegisters, veDirectFrame } from "../../hardware/simulator/devices";
import { ControllerModel } from "../../hardware/simulator/model";

const ROUNDS = 5;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

function measure(label: string, unit: string, work: () => number) {
  const rates: number[] = [];
  work(); // warm-up
  for (let i = 0; i < ROUNDS; i++) {
    const started = performance.now();
    const count = work();
    rates.push(count / ((performance.now() - started) / 1000));
  }
  console.log(`${label.padEnd(58)} ${fmt(median(rates)).padStart(12)} ${unit}/s  (median of ${ROUNDS}; min ${fmt(Math.min(...rates))}, max ${fmt(Math.max(...rates))})`);
  return median(rates);
}

// A day of a sunny controller, one frame per simulated 4 s: every frame differs,
// one in 10 is followed by a HEX async message, one in 5 is sent as two blocks.
const model = new ControllerModel({ scenario: "sunny-day", chemistry: "lead-acid", nominalVoltage: 12, capacityAh: 100 });
const FRAMES = 20_000;
const parts: Uint8Array[] = [];
for (let i = 0; i < FRAMES; i++) parts.push(veDirectFrame(model.step(4), { hex: i % 10 === 0, split: i % 5 === 0 }));
const stream = Buffer.concat(parts);
const CHUNK = 4096; // what a serial read hands over at a time, at most

const limits = plausibilityLimits({ chemistry: "lead-acid", cells: 6, nominalVoltage: 12, capacityAh: 100, ratedCurrentA: 50, pvArrayWp: 600 });

function decodeStream(normalise: boolean, judge = false): number {
  let frames = 0;
  const filter = new PlausibilityFilter(limits);
  const decoder = new VeDirectDecoder({
    onFrame: (frame) => {
      frames++;
      if (!normalise) return;
      const reading = readingFromVeDirect(frame.fields);
      // One simulated second apart: the jump check compares neighbours.
      if (judge && !filter.check(reading, frames * 1000).ok) throw new Error("a simulated reading was judged implausible");
    },
  });
  for (let i = 0; i < stream.length; i += CHUNK) decoder.push(stream.subarray(i, i + CHUNK), 0);
  if (decoder.stats.dropped.checksum !== 0 || frames !== FRAMES) throw new Error(`decoder lost frames: ${frames}/${FRAMES}`);
  return frames;
}

console.log(`VE.Direct stream: ${FRAMES} frames, ${fmt(stream.length)} bytes (${Math.round(stream.length / FRAMES)} bytes/frame), chunks of ${CHUNK} bytes`);
const frameRate = measure("VE.Direct decode (checksum, HEX skip, merge)", "frames", () => decodeStream(false));
measure("VE.Direct decode + normalise to a reading", "frames", () => decodeStream(true));
measure("VE.Direct decode + normalise + plausibility (ranges, jumps)", "frames", () => decodeStream(true, true));
console.log(`${"VE.Direct decode throughput".padEnd(58)} ${((frameRate * stream.length) / FRAMES / 1e6).toFixed(1).padStart(12)} MB/s  (the line carries 0.0019 MB/s at 19200 baud)`);

// Modbus: the largest reply of a poll (0x3100 × 18 registers, 41 bytes).
const registers = epeverRegisters(model.state);
const block = Array.from({ length: 0x12 }, (_, i) => registers.get(0x3100 + i)!);
const reply = registersResponse(1, READ_INPUT, block);
const REPLIES = 200_000;
measure(`Modbus reply validate + decode (${reply.length} bytes, CRC-16)`, "frames", () => {
  let sum = 0;
  for (let i = 0; i < REPLIES; i++) {
    const r = parseResponse(reply, { unit: 1, fn: READ_INPUT, count: 0x12 });
    if (r.kind === "registers") sum += r.registers[0]!;
  }
  if (sum === 0) throw new Error("nothing decoded");
  return REPLIES;
});
measure("Modbus register map → reading (EPEver normalisation)", "readings", () => {
  const map: RegisterMap = registers;
  for (let i = 0; i < REPLIES; i++) readingFromEpever(map);
  return REPLIES;
});

// A full poll (5 request/reply exchanges) through the client against the simulated device, in memory.
const device = new EpeverResponder(1, () => registers);
const client: ModbusClient = new ModbusClient({
  write: (req) =>
    queueMicrotask(() => {
      for (const r of device.feed(req)) client.feed(r);
    }),
});
const POLLS = 2000;
const pollRates: number[] = [];
for (let round = 0; round <= ROUNDS; round++) {
  const started = performance.now();
  for (let i = 0; i < POLLS; i++) readingFromEpever(await pollEpever(client, 1));
  if (round > 0) pollRates.push(POLLS / ((performance.now() - started) / 1000));
}
console.log(`${"Modbus full poll (5 exchanges) through the client, in memory".padEnd(58)} ${fmt(median(pollRates)).padStart(12)} polls/s  (median of ${ROUNDS})`);
