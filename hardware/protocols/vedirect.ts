import { LABEL_BYTES, valueFits } from "./vedirect-fields";

/**
 * Victron VE.Direct TEXT protocol (19200 8N1, unsolicited, about one frame per
 * second). A block is `\r\nLABEL\tVALUE` lines ending with `\r\nChecksum\t<byte>`;
 * every byte since the previous block's checksum byte, up to and including this
 * one, sums to 0 mod 256. HEX-protocol messages (`:` … `\n`) may be interleaved
 * and are not part of the sum — except that the checksum byte itself may be any
 * value, `:` and `\n` included. Reference: Victron's frame handler (MIT) as
 * described in shared/reference/charge-controllers.md §A.
 *
 * The checksum is a plain byte sum, so two errors can cancel out: two bytes
 * with their high bit flipped (+128 and +128) leave it intact. The grammar
 * catches those: labels and values are printable ASCII and every value must
 * fit its label's type (vedirect-fields.ts), or the block is dropped whole.
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

/**
 * Why a block was dropped: `checksum` (bytes do not sum to 0), `overflow`
 * (label > 8, value > 32 characters, > 22 fields), `malformed` (framing out of
 * order), `grammar` (a byte that is not printable ASCII, or a value that does
 * not fit its label's type — damage the checksum missed), `truncated` (the next
 * block began before this one reached its checksum), `gap` (a pause > 500 ms
 * inside the block: bytes were lost).
 */
export type DropReason = "checksum" | "overflow" | "malformed" | "grammar" | "truncated" | "gap";
export const DROP_REASONS: readonly DropReason[] = ["checksum", "overflow", "malformed", "grammar", "truncated", "gap"];

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
 * block is merged into the next frame, never mixed with an invalid block. A
 * PID block replaces the fields of the one before it, so a field it stops
 * sending does not linger.
 *
 * Resynchronisation: a block never repeats a label and PID only opens one, so
 * a `PID` line, or a label the block already holds, means the previous block
 * was cut short and a new one has begun. The cut block is dropped
 * (`truncated`) and the checksum restarts from that line, so only the cut
 * block is lost, not the valid one after it.
 */
export class VeDirectDecoder {
  readonly stats: VeDirectStats = { blocks: 0, frames: 0, dropped: { checksum: 0, overflow: 0, malformed: 0, grammar: 0, truncated: 0, gap: 0 }, hexMessages: 0, hexErrors: 0 };

  private state: State = IDLE;
  private hexReturn: State = IDLE;
  private acc = 0;
  private label = "";
  private value = "";
  private block: Array<[string, string]> = [];
  /** For each label, the serial of the block it last appeared in: a repeat within `blockSerial` means a new block has begun. */
  private readonly seenIn = new Map<string, number>();
  private blockSerial = 0;
  private problem: DropReason | null = null;
  private blockBytes = 0;
  /** The sum before this line's `\r`: what the checksum restarts from when the line opens a new block. */
  private lineAcc = 0;
  private lineBytes = 0;
  /** A failed block's checksum byte was `\r`: it may have been the next block's first byte, its real checksum lost. */
  private carriedCr = false;
  private hex = "";
  private lastByteAt = -Infinity;
  private lastPidAt = -Infinity;
  /** `generation`: the PID block that set the field (null: another block); only the latest PID block's fields count. */
  private readonly merged = new Map<string, { value: string; at: number; generation: number | null }>();
  private pidGeneration = 0;
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
    const before = this.acc;
    this.acc = (this.acc + b) & 0xff;
    this.lineBytes++;
    if (this.state !== IDLE && ++this.blockBytes > MAX_BLOCK_BYTES) {
      this.drop("overflow");
      return;
    }

    switch (this.state) {
      case IDLE:
        if (b === CR) this.markLine(before);
        if (b === LF) {
          // The `\r` a failed block took for its checksum byte belongs to this block.
          if (this.carriedCr && this.lineBytes === 1) this.acc = (this.acc + CR) & 0xff;
          this.startLine();
        }
        this.carriedCr = false;
        return;
      case BEGIN:
      case LABEL:
        if (b === TAB) {
          if (this.label.length === 0) this.flag("malformed");
          if (this.label === "CHECKSUM") {
            this.state = CHECKSUM;
          } else {
            if (this.opensNewBlock(this.label)) this.resync();
            this.state = VALUE;
            this.value = "";
          }
        } else if (b === LF) {
          if (this.label.length > 0) this.flag("malformed");
          this.startLine();
        } else if (b === CR) {
          if (this.label.length > 0) this.flag("malformed");
          this.markLine(before);
        } else {
          if (LABEL_BYTES[b] !== 1) this.flag("grammar");
          if (this.label.length >= MAX_LABEL) this.flag("overflow");
          else this.label += String.fromCharCode(b >= 0x61 && b <= 0x7a ? b - 0x20 : b);
          this.state = LABEL;
        }
        return;
      case VALUE:
        if (b === LF) {
          if (!valueFits(this.label, this.value)) this.flag("grammar");
          if (this.block.length >= MAX_FIELDS) this.flag("overflow");
          else {
            this.block.push([this.label, this.value]);
            this.seenIn.set(this.label, this.blockSerial);
          }
          this.startLine();
        } else if (b === CR) {
          this.markLine(before);
        } else {
          if (b < 0x20 || b > 0x7e) this.flag("grammar");
          if (this.value.length >= MAX_VALUE) this.flag("overflow");
          else this.value += String.fromCharCode(b);
        }
        return;
      case CHECKSUM:
        this.endBlock(at, b);
        return;
    }
  }

  private clearBlock(): void {
    this.block = [];
    this.blockSerial++;
  }

  private markLine(accBefore: number): void {
    this.lineAcc = accBefore;
    this.lineBytes = 1;
  }

  private opensNewBlock(label: string): boolean {
    if (this.block.length === 0) return false;
    return label === "PID" || this.seenIn.get(label) === this.blockSerial;
  }

  /** The block so far was cut short: drop it and start a new one from the current line. */
  private resync(): void {
    this.count("truncated");
    this.acc = (this.acc - this.lineAcc) & 0xff;
    this.blockBytes = this.lineBytes;
    this.clearBlock();
    this.problem = null;
  }

  private startLine(): void {
    if (this.state === IDLE) {
      this.clearBlock();
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

  private endBlock(at: number, checksumByte: number): void {
    const sumOk = this.acc === 0;
    this.acc = 0;
    this.lineBytes = 0;
    this.state = IDLE;
    const problem = this.problem ?? (sumOk ? (this.block.length === 0 ? "malformed" : null) : "checksum");
    if (problem) {
      this.carriedCr = !sumOk && checksumByte === CR;
      this.count(problem);
      return;
    }
    this.stats.blocks++;
    const hasPid = this.seenIn.get("PID") === this.blockSerial;
    // A frame's first block replaces the previous first block whole: a field it no longer sends is gone, not stale.
    if (hasPid) this.pidGeneration++;
    const generation = hasPid ? this.pidGeneration : null;
    for (const [label, value] of this.block) this.merged.set(label, { value, at, generation });
    this.clearBlock();
    if (hasPid) this.lastPidAt = at;
    // Devices that never send PID still get frames, one per block.
    if (hasPid || at - this.lastPidAt > this.fieldTtlMs) this.emit(at);
  }

  private emit(at: number): void {
    const fields: Record<string, string | null> = {};
    for (const [label, entry] of this.merged) {
      if (at - entry.at > this.fieldTtlMs || (entry.generation !== null && entry.generation !== this.pidGeneration)) this.merged.delete(label);
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
    this.clearBlock();
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
      this.clearBlock();
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
  const text = `${fields.map(([label, value]) => `\r\n${label}\t${value}`).join("")}\r\nChecksum\t`;
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
