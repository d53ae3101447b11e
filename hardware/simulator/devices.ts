import { encodeBlock, encodeHexAsync } from "../protocols/vedirect";
import { EPEVER_SETTINGS_READ } from "../protocols/epever-settings";
import { exceptionResponse, parseRequest, READ_HOLDING, READ_INPUT, registersResponse } from "../protocols/modbus";
import type { ControllerState } from "./model";

/**
 * What a simulated controller puts on the wire for a model state: a SmartSolar
 * MPPT 75/15 with load output speaking VE.Direct text, or an EPEver Tracer
 * answering Modbus RTU reads.
 */

const CS_CODES = { off: 0, bulk: 3, absorption: 4, float: 5, storage: 6, equalize: 7, starting: 245, fault: 2, other: 252 } as const;

const int = (n: number) => String(Math.round(n));

/** The text fields of one frame, in the order a SmartSolar MPPT sends them. */
export function veDirectFields(s: ControllerState): Array<[string, string]> {
  return [
    ["PID", "0xA053"],
    ["FW", "159"],
    ["SER#", "HQ2230SIM01"],
    ["V", int(s.batteryVoltage * 1000)],
    ["I", int(s.batteryCurrent * 1000)],
    ["VPV", int(s.pvVoltage * 1000)],
    ["PPV", int(s.pvPower)],
    ["CS", String(CS_CODES[s.chargeState])],
    ["MPPT", s.pvPower > 0 ? "2" : "0"],
    ["OR", s.pvPower > 0 ? "0x00000000" : "0x00000001"],
    ["ERR", "0"],
    ["LOAD", s.loadOn ? "ON" : "OFF"],
    ["IL", int(s.loadCurrent * 1000)],
    ["H19", int(s.yieldTotalWh / 10)],
    ["H20", int(s.yieldTodayWh / 10)],
    ["H21", int(s.maxPowerToday)],
    ["H22", int(s.yieldYesterdayWh / 10)],
    ["H23", int(s.maxPowerYesterday)],
    ["HSDS", String(s.day % 365)],
  ];
}

/**
 * Damage a line or a device can do to a frame:
 * - `bit`: one bit of the battery voltage flipped; the checksum fails.
 * - `highbits`: the high bit of two bytes of the battery voltage flipped
 *   (+128 +128: the byte sum, hence the checksum, is unchanged).
 * - `range`: a well-formed frame reporting an impossible voltage (99.999 V).
 * - `truncate`: the frame cut off before its checksum line; the next frame
 *   follows at once.
 */
export const DAMAGE = ["bit", "highbits", "range", "truncate"] as const;
export type Damage = (typeof DAMAGE)[number];

export type VeDirectFrameOptions = {
  /** Send the frame as two checksummed blocks (V…OR, ERR…HSDS), as large MPPTs do. */
  split?: boolean;
  /** Damage the frame (its first block). */
  damage?: Damage | null;
  /** Follow the frame with an asynchronous HEX message, as chargers do between blocks. */
  hex?: boolean;
};

export function veDirectFrame(s: ControllerState, opts: VeDirectFrameOptions = {}): Uint8Array {
  const fields = veDirectFields(s).map(([label, value]): [string, string] => (opts.damage === "range" && label === "V" ? [label, "99999"] : [label, value]));
  const blocks = opts.split ? [fields.slice(0, 10), fields.slice(10)] : [fields];
  const parts = blocks.map((b) => encodeBlock(b));
  const first = parts[0]!;
  const voltageAt = new TextDecoder().decode(first).indexOf("\r\nV\t") + 4;
  if (opts.damage === "bit") first[voltageAt] = first[voltageAt]! ^ 0x01;
  if (opts.damage === "highbits") {
    first[voltageAt] = first[voltageAt]! ^ 0x80;
    first[voltageAt + 1] = first[voltageAt + 1]! ^ 0x80;
  }
  if (opts.damage === "truncate") parts[0] = first.subarray(0, new TextDecoder().decode(first).lastIndexOf("\r\nChecksum"));
  if (opts.hex) {
    // 0x0201 device state, as chargers report asynchronously.
    parts.push(encodeHexAsync(0x0201, 0x00, new Uint8Array([CS_CODES[s.chargeState]])));
  }
  return Buffer.concat(parts);
}

const x100 = (n: number) => Math.max(0, Math.min(0xffff, Math.round(n * 100)));
const signed16 = (n: number) => Math.round(n * 100) & 0xffff;

/** EPEver input registers for a state (×100 scaling, 32-bit values low word first). */
export function epeverRegisters(s: ControllerState): Map<number, number> {
  const r = new Map<number, number>();
  const put32 = (addr: number, value: number) => {
    const v = Math.round(value) >>> 0;
    r.set(addr, v & 0xffff);
    r.set(addr + 1, v >>> 16);
  };
  r.set(0x3100, x100(s.pvVoltage));
  r.set(0x3101, x100(s.pvCurrent));
  put32(0x3102, s.pvPower * 100);
  r.set(0x3104, x100(s.batteryVoltage));
  const charging = Math.max(0, s.batteryCurrent);
  r.set(0x3105, x100(charging));
  put32(0x3106, charging * s.batteryVoltage * 100);
  for (let a = 0x3108; a <= 0x310b; a++) r.set(a, 0);
  r.set(0x310c, x100(s.loadOn ? s.batteryVoltage : 0));
  r.set(0x310d, x100(s.loadCurrent));
  put32(0x310e, s.loadPower * 100);
  r.set(0x3110, signed16(s.batteryTemperature));
  r.set(0x3111, signed16(s.controllerTemperature));
  r.set(0x311a, Math.round(s.soc));
  const chargingBits = { off: 0, float: 1, bulk: 2, absorption: 2, equalize: 3, storage: 1, starting: 0, fault: 0, other: 0 }[s.chargeState];
  // Battery status D3–D0 = 3: the controller has disconnected the load (low voltage).
  r.set(0x3200, s.loadDisconnected ? 3 : 0);
  r.set(0x3201, (chargingBits << 2) | (s.pvPower > 0 ? 1 : 0) | (s.pvPower > 0 ? 0 : 1 << 14));
  r.set(0x3202, s.loadOn ? 1 : 0);
  r.set(0x331a, x100(s.batteryVoltage));
  put32(0x331b, Math.round(s.batteryCurrent * 100) | 0);
  put32(0x330c, s.yieldTodayWh / 10);
  put32(0x330e, s.yieldTodayWh / 10);
  put32(0x3310, s.yieldTotalWh / 10);
  put32(0x3312, s.yieldTotalWh / 10);
  return r;
}

/**
 * The device side of Modbus: consumes request bytes, returns the reply to each
 * complete request addressed to `unit`: input registers (0x04) from the model,
 * holding registers (0x03) from the battery settings block (0x9000–0x900E).
 * Unknown registers get exception 02 (illegal data address), as the real
 * controller answers.
 */
export class EpeverResponder {
  private rx = new Uint8Array(0);
  private readonly holding = new Map<number, number>();
  constructor(
    private readonly unit: number,
    private readonly registers: () => Map<number, number>,
    settings: readonly number[] = [],
  ) {
    for (const [i, value] of settings.entries()) this.holding.set(EPEVER_SETTINGS_READ.start + i, value);
  }

  feed(bytes: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.rx.length + bytes.length);
    joined.set(this.rx);
    joined.set(bytes, this.rx.length);
    this.rx = joined;
    const replies: Uint8Array[] = [];
    for (;;) {
      const req = parseRequest(this.rx);
      if (req.kind === "incomplete") break;
      if (req.kind === "invalid") {
        this.rx = this.rx.subarray(req.skip);
        continue;
      }
      this.rx = this.rx.subarray(req.length);
      if (req.unit !== this.unit) continue;
      if (req.fn !== READ_INPUT && req.fn !== READ_HOLDING) {
        replies.push(exceptionResponse(req.unit, req.fn, 0x01));
        continue;
      }
      const map = req.fn === READ_INPUT ? this.registers() : this.holding;
      const values: number[] = [];
      for (let a = req.start; a < req.start + req.count; a++) {
        const v = map.get(a);
        if (v === undefined) break;
        values.push(v);
      }
      replies.push(values.length === req.count && req.count > 0 ? registersResponse(req.unit, req.fn, values) : exceptionResponse(req.unit, req.fn, 0x02));
    }
    return replies;
  }
}
