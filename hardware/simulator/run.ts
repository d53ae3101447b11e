import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import { scaledClock, type EnergyClock } from "../../server/energy/clock";
import { defaultEpeverSettings } from "../protocols/epever-settings";
import { ControllerModel, type ModelOptions, type ControllerState } from "./model";
import { EpeverResponder, epeverRegisters, veDirectFrame, type Damage } from "./devices";
import { resample } from "./uart";

export type SimulatorOptions = ModelOptions & {
  /** The tty the simulated controller owns (one end of a pty pair). */
  port: string;
  protocol: "vedirect" | "modbus";
  /** Simulated seconds per real second (ignored when `clock` is given). */
  speed: number;
  /** Model steps (VE.Direct frames) per real second. */
  rate: number;
  /** Modbus unit id the simulated controller answers to. */
  unit: number;
  split: boolean;
  /** Answer every Modbus request with the request itself first, like a half-duplex RS-485 adapter. */
  echo: boolean;
  /** Damage every Nth frame or reply (0 = never). corrupt-frames defaults to 3. */
  corruptEvery: number;
  /** How a VE.Direct frame is damaged (devices.ts `DAMAGE`; a Modbus reply always gets a bad CRC). */
  damage?: Damage;
  /** A HEX async message after every Nth frame (0 = never). */
  hexEvery: number;
  /** cable-pulled: go silent after this many real seconds (default 5). */
  pullAfterSeconds?: number;
  /** The device transmits at `tx` baud while the host listens at `rx` (a wrong SERIAL_BAUD); unset: matched. */
  baudMismatch?: { tx: number; rx: number };
  /**
   * The time the model runs on. Each step advances it to the clock's now, so
   * model time never drifts from the monitor's energy clock (default: real
   * time × `speed`, starting at `startAt`).
   */
  clock?: EnergyClock;
  onStep?: (state: ControllerState, frame: number) => void;
};

export type Simulator = {
  model: ControllerModel;
  /** Stop transmitting and answering, as if the cable were pulled. */
  pull(): void;
  /** Plug the cable back in. */
  plug(): void;
  readonly pulled: boolean;
  stop(): void;
};

/**
 * Runs a simulated controller on a tty. The tty is opened non-blocking and
 * writes that would block are dropped: a real UART transmits whether or not
 * anyone listens.
 */
export function runSimulator(opts: SimulatorOptions): Simulator {
  const startAt = opts.startAt ?? opts.clock?.now();
  const clock = opts.clock ?? scaledClock({ speed: opts.speed, realEpochMs: Date.now(), simEpochMs: startAt ?? Date.now() });
  const model = new ControllerModel({ ...opts, ...(startAt === undefined ? {} : { startAt }) });
  const fd = openSync(opts.port, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
  const corruptEvery = opts.corruptEvery || (opts.scenario === "corrupt-frames" ? 3 : 0);
  let pulled = false;
  let frame = 0;
  let replies = 0;
  let modelAt = clock.now();

  const send = (bytes: Uint8Array) => {
    const wire = opts.baudMismatch ? resample(bytes, opts.baudMismatch.tx, opts.baudMismatch.rx) : bytes;
    let offset = 0;
    while (offset < wire.length) {
      try {
        offset += writeSync(fd, wire, offset);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EAGAIN") return;
        throw error;
      }
    }
  };

  const stepTimer = setInterval(() => {
    frame++;
    const now = clock.now();
    const state = model.step(Math.max(0, now - modelAt) / 1000);
    modelAt = now;
    opts.onStep?.(state, frame);
    if (pulled || opts.protocol !== "vedirect") return;
    const damaged = corruptEvery > 0 && frame % corruptEvery === 0;
    send(veDirectFrame(state, { split: opts.split, damage: damaged ? (opts.damage ?? "bit") : null, hex: opts.hexEvery > 0 && frame % opts.hexEvery === 0 }));
  }, 1000 / opts.rate);

  let readTimer: Timer | undefined;
  if (opts.protocol === "modbus") {
    const responder = new EpeverResponder(opts.unit, () => epeverRegisters(model.state), defaultEpeverSettings(opts.nominalVoltage, opts.cutoffs));
    const buf = Buffer.alloc(512);
    readTimer = setInterval(() => {
      for (;;) {
        let n: number;
        try {
          n = readSync(fd, buf, 0, buf.length, null);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "EAGAIN") return;
          throw error;
        }
        if (n <= 0) return;
        const request = Uint8Array.from(buf.subarray(0, n));
        // At another baud rate the device hears the host's requests as garbage too, and does not answer them.
        const answers = responder.feed(opts.baudMismatch ? resample(request, opts.baudMismatch.rx, opts.baudMismatch.tx) : request);
        if (pulled) continue;
        for (const reply of answers) {
          replies++;
          if (opts.echo) send(request);
          if (corruptEvery > 0 && replies % corruptEvery === 0) reply[reply.length - 1] = reply[reply.length - 1]! ^ 0xff;
          send(reply);
        }
      }
    }, 2);
  }

  let pullTimer: Timer | undefined;
  if (opts.scenario === "cable-pulled") pullTimer = setTimeout(() => (pulled = true), (opts.pullAfterSeconds ?? 5) * 1000);

  return {
    model,
    pull: () => {
      pulled = true;
    },
    plug: () => {
      pulled = false;
    },
    get pulled() {
      return pulled;
    },
    stop() {
      clearInterval(stepTimer);
      clearInterval(readTimer);
      clearTimeout(pullTimer);
      closeSync(fd);
    },
  };
}
