import { emptyReading, round, type ChargeState, type Reading } from "./reading";

/**
 * Modbus RTU as spoken by EPEver/EPSolar Tracer charge controllers (115200 8N1,
 * unit 1, input registers read with function 0x04). A frame is
 * `unit fn data… crcLo crcHi`; CRC-16/MODBUS (init 0xFFFF, reflected poly
 * 0xA001) is sent low byte first, register values big-endian. Reference:
 * shared/reference/charge-controllers.md §B.
 */

export const READ_HOLDING = 0x03;
export const READ_INPUT = 0x04;

const CRC_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    table[n] = c;
  }
  return table;
})();

export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ CRC_TABLE[(crc ^ bytes[i]!) & 0xff]!;
  return crc;
}

/** Appends the CRC (low byte first). */
export function withCrc(body: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(body.length + 2);
  out.set(body as ArrayLike<number>);
  const crc = crc16(out, 0, body.length);
  out[body.length] = crc & 0xff;
  out[body.length + 1] = crc >>> 8;
  return out;
}

function crcOk(bytes: Uint8Array, length: number): boolean {
  const crc = crc16(bytes, 0, length - 2);
  return bytes[length - 2] === (crc & 0xff) && bytes[length - 1] === crc >>> 8;
}

export function readRequest(unit: number, fn: number, start: number, count: number): Uint8Array {
  return withCrc([unit, fn, start >> 8, start & 0xff, count >> 8, count & 0xff]);
}

export type Expected = { unit: number; fn: number; count: number };

export type ResponseParse =
  | { kind: "incomplete" }
  | { kind: "registers"; registers: number[]; length: number }
  | { kind: "exception"; code: number; length: number }
  | { kind: "crc"; length: number }
  /** Bytes that cannot start the expected reply: skip them and look again. */
  | { kind: "noise"; skip: number };

/**
 * Parses the reply to a read at the start of `buf`. Address, function and byte
 * count are checked before the length is trusted; the CRC before any value is.
 */
export function parseResponse(buf: Uint8Array, expected: Expected): ResponseParse {
  if (buf.length < 2) return { kind: "incomplete" };
  if (buf[0] !== expected.unit) return { kind: "noise", skip: 1 };
  const fn = buf[1]!;
  if (fn === (expected.fn | 0x80)) {
    if (buf.length < 5) return { kind: "incomplete" };
    return crcOk(buf, 5) ? { kind: "exception", code: buf[2]!, length: 5 } : { kind: "crc", length: 5 };
  }
  if (fn !== expected.fn) return { kind: "noise", skip: 1 };
  if (buf.length < 3) return { kind: "incomplete" };
  if (buf[2] !== expected.count * 2) return { kind: "noise", skip: 1 };
  const length = 5 + expected.count * 2;
  if (buf.length < length) return { kind: "incomplete" };
  if (!crcOk(buf, length)) return { kind: "crc", length };
  const registers = new Array<number>(expected.count);
  for (let i = 0; i < expected.count; i++) registers[i] = (buf[3 + 2 * i]! << 8) | buf[4 + 2 * i]!;
  return { kind: "registers", registers, length };
}

export type RequestParse = { kind: "incomplete" } | { kind: "read"; unit: number; fn: number; start: number; count: number; length: number } | { kind: "invalid"; skip: number };

/** Parses a read request (fn 0x03/0x04) at the start of `buf` (the device side). */
export function parseRequest(buf: Uint8Array): RequestParse {
  if (buf.length < 8) return { kind: "incomplete" };
  const fn = buf[1]!;
  if ((fn !== READ_INPUT && fn !== READ_HOLDING) || !crcOk(buf, 8)) return { kind: "invalid", skip: 1 };
  return { kind: "read", unit: buf[0]!, fn, start: (buf[2]! << 8) | buf[3]!, count: (buf[4]! << 8) | buf[5]!, length: 8 };
}

export function registersResponse(unit: number, fn: number, registers: ArrayLike<number>): Uint8Array {
  const body = [unit, fn, registers.length * 2];
  for (let i = 0; i < registers.length; i++) body.push((registers[i]! >> 8) & 0xff, registers[i]! & 0xff);
  return withCrc(body);
}

export function exceptionResponse(unit: number, fn: number, code: number): Uint8Array {
  return withCrc([unit, fn | 0x80, code]);
}

export class ModbusError extends Error {
  override name = "ModbusError";
  constructor(
    readonly kind: "timeout" | "crc" | "exception" | "closed",
    message: string,
    readonly exceptionCode?: number,
  ) {
    super(message);
  }
}

/** `echoBytes`: bytes that were our own requests heard back (not the controller talking). */
export type ModbusStats = { requests: number; replies: number; retries: number; timeouts: number; crcErrors: number; exceptions: number; echoes: number; echoBytes: number; noiseBytes: number };

export type ModbusClientOptions = {
  /** Sends bytes on the line. */
  write: (bytes: Uint8Array) => void;
  timeoutMs?: number;
  retries?: number;
  /** Line silence to wait before a retry, so the rest of a damaged reply drains. */
  settleMs?: number;
};

type Pending = {
  request: Uint8Array;
  expected: Expected;
  resolve: (outcome: ResponseParse) => void;
};

/**
 * A half-duplex master: one request on the line at a time, each answered or
 * timed out before the next. Echoed requests (RS-485 adapters that hear
 * themselves) are discarded, stray bytes skipped, and a timeout or a CRC
 * failure retried.
 */
export class ModbusClient {
  readonly stats: ModbusStats = { requests: 0, replies: 0, retries: 0, timeouts: 0, crcErrors: 0, exceptions: 0, echoes: 0, echoBytes: 0, noiseBytes: 0 };
  private rx = new Uint8Array(0);
  private pending: Pending | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly settleMs: number;

  constructor(private readonly opts: ModbusClientOptions) {
    this.timeoutMs = opts.timeoutMs ?? 500;
    this.retries = opts.retries ?? 2;
    this.settleMs = opts.settleMs ?? 20;
  }

  /** Bytes received from the line. */
  feed(bytes: Uint8Array): void {
    if (!this.pending) return; // nothing asked: unsolicited bytes are noise
    const joined = new Uint8Array(this.rx.length + bytes.length);
    joined.set(this.rx);
    joined.set(bytes, this.rx.length);
    this.rx = joined;
    this.scan();
  }

  /** Reads `count` registers from `start`; serialised with other requests. */
  read(unit: number, fn: number, start: number, count: number): Promise<number[]> {
    const run = this.queue.then(() => this.transact(unit, fn, start, count));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Fails the request in flight and every later one. */
  close(): void {
    this.closed = true;
    this.pending?.resolve({ kind: "noise", skip: 0 });
  }

  private async transact(unit: number, fn: number, start: number, count: number): Promise<number[]> {
    const request = readRequest(unit, fn, start, count);
    const expected = { unit, fn, count };
    let last: ModbusError = new ModbusError("timeout", "no reply");
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (this.closed) throw new ModbusError("closed", "the line is closed");
      if (attempt > 0) {
        this.stats.retries++;
        await Bun.sleep(this.settleMs);
      }
      this.stats.requests++;
      const outcome = await this.exchange(request, expected);
      if (outcome.kind === "registers") {
        this.stats.replies++;
        return outcome.registers;
      }
      if (outcome.kind === "exception") {
        this.stats.exceptions++;
        throw new ModbusError("exception", `unit ${unit} refused fn 0x${fn.toString(16)} @0x${start.toString(16)}: exception ${outcome.code}`, outcome.code);
      }
      if (outcome.kind === "crc") {
        this.stats.crcErrors++;
        last = new ModbusError("crc", `reply to 0x${start.toString(16)} failed its CRC`);
      } else {
        this.stats.timeouts++;
        last = new ModbusError("timeout", `no valid reply to 0x${start.toString(16)} within ${this.timeoutMs} ms`);
      }
    }
    throw last;
  }

  private exchange(request: Uint8Array, expected: Expected): Promise<ResponseParse> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish({ kind: "incomplete" }), this.timeoutMs);
      const finish = (outcome: ResponseParse) => {
        clearTimeout(timer);
        this.pending = null;
        resolve(outcome);
      };
      this.rx = new Uint8Array(0);
      this.pending = { request, expected, resolve: finish };
      this.opts.write(request);
    });
  }

  private scan(): void {
    const pending = this.pending;
    if (!pending) return;
    for (;;) {
      const echo = pending.request;
      if (this.rx.length > 0 && this.rx[0] === echo[0] && this.rx[1] === echo[1]) {
        const n = Math.min(this.rx.length, echo.length);
        let same = true;
        for (let i = 0; i < n && same; i++) same = this.rx[i] === echo[i];
        if (same && n < echo.length) return; // might be an echo: wait for the rest
        if (same) {
          this.stats.echoes++;
          this.stats.echoBytes += echo.length;
          this.rx = this.rx.subarray(echo.length);
          continue;
        }
      }
      const outcome = parseResponse(this.rx, pending.expected);
      if (outcome.kind === "incomplete") return;
      if (outcome.kind === "noise") {
        this.stats.noiseBytes += outcome.skip;
        this.rx = this.rx.subarray(outcome.skip);
        continue;
      }
      pending.resolve(outcome);
      return;
    }
  }
}

/**
 * What one EPEver poll reads (function 0x04, documented addresses only): the
 * real-time block (PV, battery charging, load, temperatures), SOC, the three
 * status words, battery voltage and signed net current, energy generated today.
 */
export const EPEVER_READS = [
  { start: 0x3100, count: 0x12 },
  { start: 0x311a, count: 1 },
  { start: 0x3200, count: 3 },
  { start: 0x331a, count: 3 },
  { start: 0x330c, count: 2 },
] as const;

export type RegisterMap = Map<number, number>;

/** Polls every EPEver block; all must answer for a reading (no half-read state). */
export async function pollEpever(client: ModbusClient, unit: number): Promise<RegisterMap> {
  const registers: RegisterMap = new Map();
  for (const { start, count } of EPEVER_READS) {
    const values = await client.read(unit, READ_INPUT, start, count);
    for (const [i, value] of values.entries()) registers.set(start + i, value);
  }
  return registers;
}

const u16 = (r: RegisterMap, a: number): number | null => r.get(a) ?? null;
const s16 = (r: RegisterMap, a: number): number | null => {
  const v = r.get(a);
  return v === undefined ? null : v >= 0x8000 ? v - 0x10000 : v;
};
/** 32-bit quantities: low word at the lower address. */
const u32 = (r: RegisterMap, a: number): number | null => {
  const lo = r.get(a);
  const hi = r.get(a + 1);
  return lo === undefined || hi === undefined ? null : hi * 0x10000 + lo;
};
const s32 = (r: RegisterMap, a: number): number | null => {
  const v = u32(r, a);
  return v === null ? null : v >= 0x80000000 ? v - 0x100000000 : v;
};
const hundredths = (v: number | null): number | null => (v === null ? null : round(v / 100, 2));

const BATTERY_STATUS: Record<number, string> = { 1: "battery over-voltage", 2: "battery under-voltage", 3: "battery low-voltage disconnect", 4: "battery fault" };
const BATTERY_TEMPERATURE: Record<number, string> = { 1: "battery over-temperature", 2: "battery low temperature" };
const CHARGING: Record<number, ChargeState> = { 0: "off", 1: "float", 2: "bulk", 3: "equalize" };

/**
 * Normalises EPEver input registers (V, A, W ×100; temperatures °C ×100 signed;
 * SOC integer percent; net battery current signed 32-bit, + = charging).
 * EPEver's "boost" stage maps to bulk: the controller does not separate the
 * MPPT bulk phase from constant-voltage boost.
 */
export function readingFromEpever(r: RegisterMap): Reading {
  const reading = emptyReading();
  reading.pvVoltage = hundredths(u16(r, 0x3100));
  reading.pvCurrent = hundredths(u16(r, 0x3101));
  reading.pvPower = hundredths(u32(r, 0x3102));
  reading.batteryVoltage = hundredths(u16(r, 0x331a) ?? u16(r, 0x3104));
  reading.batteryCurrent = hundredths(s32(r, 0x331b));
  reading.loadVoltage = hundredths(u16(r, 0x310c));
  reading.loadCurrent = hundredths(u16(r, 0x310d));
  reading.loadPower = hundredths(u32(r, 0x310e));
  reading.batteryTemperature = hundredths(s16(r, 0x3110));
  reading.controllerTemperature = hundredths(s16(r, 0x3111));
  const soc = u16(r, 0x311a);
  if (soc !== null) {
    // Not clamped: a SOC above 100 % is a damaged reading and must be rejected, not read as full.
    reading.soc = soc;
    reading.socSource = "controller";
  }
  reading.yieldTodayKwh = hundredths(u32(r, 0x330c));

  const battery = u16(r, 0x3200);
  const charging = u16(r, 0x3201);
  const discharging = u16(r, 0x3202);
  const faults: string[] = [];
  if (battery !== null) {
    if (BATTERY_STATUS[battery & 0xf]) faults.push(BATTERY_STATUS[battery & 0xf]!);
    if (BATTERY_TEMPERATURE[(battery >> 4) & 0xf]) faults.push(BATTERY_TEMPERATURE[(battery >> 4) & 0xf]!);
  }
  if (charging !== null) {
    reading.chargeState = charging & 0x2 ? "fault" : CHARGING[(charging >> 2) & 0x3]!;
    const input = (charging >> 14) & 0x3;
    if (input === 2) faults.push("PV input voltage too high");
    if (input === 3) faults.push("PV input error");
    if (charging & 0x2) faults.push("charging fault");
  }
  if (discharging !== null && discharging & 0x2) faults.push("load output fault");
  if (faults.length) reading.fault = `${faults.join(", ")} (EPEver status 0x${(battery ?? 0).toString(16)}/0x${(charging ?? 0).toString(16)}/0x${(discharging ?? 0).toString(16)})`;
  return reading;
}
