import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import { ControllerModel, type ModelOptions, type ControllerState } from "./model";
import { EpeverResponder, epeverRegisters, veDirectFrame } from "./devices";

export type SimulatorOptions = ModelOptions & {
  /** The tty the simulated controller owns (one end of a pty pair). */
  port: string;
  protocol: "vedirect" | "modbus";
  /** Simulated seconds per real second. */
  speed: number;
  /** Model steps (VE.Direct frames) per real second. */
  rate: number;
  /** Modbus unit id the simulated controller answers to. */
  unit: number;
  split: boolean;
  /** Answer every Modbus request with the request itself first, like a half-duplex RS-485 adapter. */
  echo: boolean;
  /** Corrupt every Nth frame or reply (0 = never). corrupt-frames defaults to 3. */
  corruptEvery: number;
  /** A HEX async message after every Nth frame (0 = never). */
  hexEvery: number;
  /** cable-pulled: go silent after this many real seconds (default 5). */
  pullAfterSeconds?: number;
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
  const model = new ControllerModel(opts);
  const fd = openSync(opts.port, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
  const corruptEvery = opts.corruptEvery || (opts.scenario === "corrupt-frames" ? 3 : 0);
  let pulled = false;
  let frame = 0;
  let replies = 0;

  const send = (bytes: Uint8Array) => {
    let offset = 0;
    while (offset < bytes.length) {
      try {
        offset += writeSync(fd, bytes, offset);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EAGAIN") return;
        throw error;
      }
    }
  };

  const stepTimer = setInterval(() => {
    frame++;
    const state = model.step(opts.speed / opts.rate);
    opts.onStep?.(state, frame);
    if (pulled || opts.protocol !== "vedirect") return;
    send(veDirectFrame(state, { split: opts.split, corrupt: corruptEvery > 0 && frame % corruptEvery === 0, hex: opts.hexEvery > 0 && frame % opts.hexEvery === 0 }));
  }, 1000 / opts.rate);

  let readTimer: Timer | undefined;
  if (opts.protocol === "modbus") {
    const responder = new EpeverResponder(opts.unit, () => epeverRegisters(model.state));
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
        const answers = responder.feed(request);
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
    pull: () => void (pulled = true),
    plug: () => void (pulled = false),
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
