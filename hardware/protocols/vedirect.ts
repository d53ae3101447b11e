import { emptyReading, round, type ChargeState, type Reading } from "./reading";

/**
 * Victron VE.Direct TEXT protocol (19200 8N1, unsolicited, about one frame per
 * second). A block is `\r\nLABEL\tVALUE` lines ending with `\r\nChecksum\t<byte>`;
 * every byte since the previous block's checksum byte, up to and including this
 * one, sums to 0 mod 256. HEX-protocol messages (`:` … `\n`) may be interleaved
 * and are not part of the sum — except that the checksum byte itself may be any
 * value, `:` and `\n` included. Reference: Victron's frame handler (MIT) as
 * described in shared/reference/charge-controllers.md §A.
 */

const CR = 0x0d;
const LF = 0x0a;
const TAB = 0x09;
const COLON = 0x3a;

const IDLE = 0;
const BEGIN = 1;
const LABEL = 2;
const VALUE = 3;
const CHECKSUM = 4;
const HEX = 5;
type State = typeof IDLE | typeof BEGIN | typeof LABEL | typeof VALUE | typeof CHECKSUM | typeof HEX;

/** Limits of Victron's reference handler (protocol 3.30): longer means corruption. */
export const MAX_LABEL = 8;
export const MAX_VALUE = 32;
export const MAX_FIELDS = 22;
const MAX_HEX = 100;
const MAX_BLOCK_BYTES = 1024;

export type DropReason = "checksum" | "overflow" | "malformed" | "gap";

export type VeDirectStats = {
  /** Blocks whose checksum passed and whose fields were applied. */
  blocks: number;
  /** Frames emitted (a frame may merge several blocks). */
  frames: number;
  /** Blocks discarded, by reason. None of their fields were applied. */
  dropped: Record<DropReason, number>;
  hexMessages: number;
  hexErrors: number;
};

/** One snapshot of the device: upper-cased label → value (`---` → null). */
export type VeDirectFrame = { at: number; fields: Record<string, string | null> };

export type VeDirectDecoderOptions = {
  onFrame: (frame: VeDirectFrame) => void;
  onDrop?: (reason: DropReason) => void;
  /** A pause longer than this inside a block means bytes were lost (reference: 500 ms). */
  maxGapMs?: number;
  /** Fields merged from earlier blocks are forgotten after this long. */
  fieldTtlMs?: number;
};

/**
 * A byte-level state machine. Fields of a block are held aside until its
 * checksum byte validates, then merged into a per-field map; a frame (the
 * merged map) is emitted when a block carrying PID — the first block of a
 * device's frame — validates, so a BMV's history block or a large MPPT's second
 * block is merged into the next frame, never mixed with an invalid block.
 */
export class VeDirectDecoder {
  readonly stats: VeDirectStats = { blocks: 0, frames: 0, dropped: { checksum: 0, overflow: 0, malformed: 0, gap: 0 }, hexMessages: 0, hexErrors: 0 };

  private state: State = IDLE;
  private hexReturn: State = IDLE;
  private acc = 0;
  private label = "";
  private value = "";
  private block: Array<[string, string]> = [];
  private problem: DropReason | null = null;
  private blockBytes = 0;
  private hex = "";
  private lastByteAt = -Infinity;
  private lastPidAt = -Infinity;
  private readonly merged = new Map<string, { value: string; at: number }>();
  private readonly maxGapMs: number;
  private readonly fieldTtlMs: number;

  constructor(private readonly opts: VeDirectDecoderOptions) {
    this.maxGapMs = opts.maxGapMs ?? 500;
    this.fieldTtlMs = opts.fieldTtlMs ?? 3000;
  }

  /** Feeds bytes received at `at` (ms). Chunk boundaries do not matter. */
  push(bytes: Uint8Array, at: number = Date.now()): void {
    if (bytes.length === 0) return;
    if (at - this.lastByteAt > this.maxGapMs && this.state !== IDLE) {
      if (this.state === HEX) this.stats.hexErrors++;
      // A HEX line cut short between blocks loses no text block.
      if (this.state === HEX && this.hexReturn === IDLE) this.state = IDLE;
      else this.drop("gap");
    }
    this.lastByteAt = at;
    for (let i = 0; i < bytes.length; i++) this.byte(bytes[i]!, at);
  }

  private byte(b: number, at: number): void {
    if (this.state === HEX) {
      this.hexByte(b);
      return;
    }
    if (b === COLON && this.state !== CHECKSUM) {
      this.hexReturn = this.state;
      this.state = HEX;
      this.hex = "";
      return;
    }
    this.acc = (this.acc + b) & 0xff;
    if (this.state !== IDLE && ++this.blockBytes > MAX_BLOCK_BYTES) {
      this.drop("overflow");
      return;
    }

    switch (this.state) {
      case IDLE:
        if (b === LF) this.startLine();
        return;
      case BEGIN:
      case LABEL:
        if (b === TAB) {
          if (this.label.length === 0) this.flag("malformed");
          if (this.label === "CHECKSUM") {
            this.state = CHECKSUM;
          } else {
            this.state = VALUE;
            this.value = "";
          }
        } else if (b === LF) {
          if (this.label.length > 0) this.flag("malformed");
          this.startLine();
        } else if (b === CR) {
          if (this.label.length > 0) this.flag("malformed");
        } else {
          if (this.label.length >= MAX_LABEL) this.flag("overflow");
          else this.label += String.fromCharCode(b).toUpperCase();
          this.state = LABEL;
        }
        return;
      case VALUE:
        if (b === LF) {
          if (this.block.length >= MAX_FIELDS) this.flag("overflow");
          else this.block.push([this.label, this.value]);
          this.startLine();
        } else if (b !== CR) {
          if (this.value.length >= MAX_VALUE) this.flag("overflow");
          else this.value += String.fromCharCode(b);
        }
        return;
      case CHECKSUM:
        this.endBlock(at);
        return;
    }
  }

  private startLine(): void {
    if (this.state === IDLE) {
      this.block = [];
      this.problem = null;
      this.blockBytes = 1;
    }
    this.state = BEGIN;
    this.label = "";
  }

  /** Remembers the first problem of the block; it is dropped at its checksum byte. */
  private flag(reason: DropReason): void {
    this.problem ??= reason;
  }

  private endBlock(at: number): void {
    const sumOk = this.acc === 0;
    this.acc = 0;
    this.state = IDLE;
    const problem = this.problem ?? (sumOk ? (this.block.length === 0 ? "malformed" : null) : "checksum");
    if (problem) {
      this.count(problem);
      return;
    }
    this.stats.blocks++;
    let hasPid = false;
    for (const [label, value] of this.block) {
      this.merged.set(label, { value, at });
      if (label === "PID") hasPid = true;
    }
    this.block = [];
    if (hasPid) this.lastPidAt = at;
    // Devices that never send PID still get frames, one per block.
    if (hasPid || at - this.lastPidAt > this.fieldTtlMs) this.emit(at);
  }

  private emit(at: number): void {
    const fields: Record<string, string | null> = {};
    for (const [label, entry] of this.merged) {
      if (at - entry.at > this.fieldTtlMs) this.merged.delete(label);
      else fields[label] = entry.value === "---" ? null : entry.value;
    }
    this.stats.frames++;
    this.opts.onFrame({ at, fields });
  }

  /** Abandons the block in progress (lost bytes): nothing of it is applied. */
  private drop(reason: DropReason): void {
    this.count(reason);
    this.acc = 0;
    this.state = IDLE;
    this.block = [];
    this.problem = null;
  }

  private count(reason: DropReason): void {
    this.stats.dropped[reason]++;
    this.opts.onDrop?.(reason);
  }

  private hexByte(b: number): void {
    if (b === LF) {
      if (validHex(this.hex)) this.stats.hexMessages++;
      else this.stats.hexErrors++;
      this.state = this.hexReturn;
      return;
    }
    if (b === CR) return;
    this.hex += String.fromCharCode(b);
    if (this.hex.length > MAX_HEX) {
      // A runaway HEX line means a lost '\n': nothing around it can be trusted.
      this.stats.hexErrors++;
      const interrupted = this.hexReturn !== IDLE;
      this.state = IDLE;
      this.acc = 0;
      this.block = [];
      this.problem = null;
      if (interrupted) this.count("overflow");
    }
  }
}

/** `:` + command nibble + data bytes + check byte, all hex; (cmd + Σbytes) mod 256 = 0x55. */
function validHex(body: string): boolean {
  if (body.length < 3 || body.length % 2 === 0 || !/^[0-9A-Fa-f]+$/.test(body)) return false;
  let sum = parseInt(body[0]!, 16);
  for (let i = 1; i < body.length; i += 2) sum += parseInt(body.slice(i, i + 2), 16);
  return (sum & 0xff) === 0x55;
}

const encoder = new TextEncoder();

/** Encodes fields as one block with its checksum byte (used by the simulator). */
export function encodeBlock(fields: ReadonlyArray<readonly [string, string]>): Uint8Array {
  const text = fields.map(([label, value]) => `\r\n${label}\t${value}`).join("") + "\r\nChecksum\t";
  const body = encoder.encode(text);
  let sum = 0;
  for (const b of body) sum = (sum + b) & 0xff;
  const out = new Uint8Array(body.length + 1);
  out.set(body);
  out[body.length] = (256 - sum) & 0xff;
  return out;
}

/** An asynchronous HEX message (`:A` register flags value check `\n`), as chargers send between blocks. */
export function encodeHexAsync(register: number, flags: number, value: Uint8Array): Uint8Array {
  const data = [register & 0xff, register >> 8, flags, ...value];
  const check = (0x55 - 0x0a - data.reduce((a, b) => a + b, 0)) & 0xff;
  const hex = [...data, check].map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
  return encoder.encode(`:A${hex}\n`);
}

const CHARGE_STATES: Record<number, ChargeState> = {
  0: "off",
  1: "other",
  2: "fault",
  3: "bulk",
  4: "absorption",
  5: "float",
  6: "storage",
  7: "equalize",
  245: "starting",
  246: "absorption",
  247: "equalize",
  248: "other",
  252: "other",
};

const ERRORS: Record<number, string> = {
  2: "battery voltage too high",
  17: "charger temperature too high",
  18: "charger over-current",
  19: "charger current reversed",
  20: "bulk time limit exceeded",
  21: "current sensor issue",
  26: "terminals overheated",
  28: "converter issue",
  33: "input voltage too high",
  34: "input current too high",
  38: "input shutdown (battery voltage)",
  39: "input shutdown (current flow in off mode)",
  65: "lost communication with a device",
  66: "synchronised charging configuration issue",
  67: "BMS connection lost",
  68: "network misconfigured",
  116: "calibration data lost",
  117: "incompatible firmware",
  119: "settings data invalid",
};

const ALARM_REASONS: Array<[number, string]> = [
  [1, "low voltage"],
  [2, "high voltage"],
  [4, "low SOC"],
  [8, "low starter voltage"],
  [16, "high starter voltage"],
  [32, "low temperature"],
  [64, "high temperature"],
  [128, "mid-point voltage"],
];

function int(fields: Record<string, string | null>, label: string): number | null {
  const raw = fields[label];
  if (raw === undefined || raw === null || !/^-?\d+$/.test(raw.trim())) return null;
  return Number(raw.trim());
}

/**
 * Normalises a frame into the common reading shape. Units per the protocol:
 * V, VPV, IL in mV/mA; I in mA (signed); PPV in W; SOC in ‰; H20 in 0.01 kWh;
 * T in °C. An MPPT reports no PV current (derived from PPV/VPV) and no SOC.
 */
export function readingFromVeDirect(fields: Record<string, string | null>): Reading {
  const r = emptyReading();
  const mV = int(fields, "V");
  const mA = int(fields, "I");
  const vpv = int(fields, "VPV");
  const ppv = int(fields, "PPV");
  const il = int(fields, "IL");
  r.batteryVoltage = mV === null ? null : mV / 1000;
  r.batteryCurrent = mA === null ? null : mA / 1000;
  r.pvVoltage = vpv === null ? null : vpv / 1000;
  r.pvPower = ppv;
  if (ppv === 0) r.pvCurrent = 0;
  else if (ppv !== null && vpv !== null && vpv > 500) r.pvCurrent = round(ppv / (vpv / 1000), 3);
  if (il !== null) {
    r.loadCurrent = il / 1000;
    r.loadVoltage = r.batteryVoltage;
    r.loadPower = r.batteryVoltage === null ? null : round(r.batteryVoltage * r.loadCurrent, 2);
  }
  const soc = int(fields, "SOC");
  if (soc !== null) {
    r.soc = soc / 10;
    r.socSource = "controller";
  }
  r.batteryTemperature = int(fields, "T");
  const cs = int(fields, "CS");
  r.chargeState = cs === null ? null : (CHARGE_STATES[cs] ?? "other");
  const h20 = int(fields, "H20");
  r.yieldTodayKwh = h20 === null ? null : h20 / 100;

  const err = int(fields, "ERR");
  const ar = int(fields, "AR");
  if (err !== null && err !== 0) {
    r.fault = `${ERRORS[err] ?? "charger error"} (VE.Direct ERR ${err})`;
  } else if (ar !== null && ar !== 0) {
    const reasons = ALARM_REASONS.filter(([bit]) => (ar & bit) !== 0).map(([, name]) => name);
    r.fault = `alarm: ${reasons.join(", ") || "unknown"} (VE.Direct AR ${ar})`;
  }
  return r;
}
