// The serial bridge: a small Node program that owns the charge controller's
// serial port and pipes raw bytes both ways over stdin/stdout. It runs under
// Node because serialport's native binding needs libuv functions Bun does not
// implement; everything else (decoding, policy, storage) stays in Bun.
//
//   node hardware/bridge.mjs --path /dev/ttyUSB0 [--baud 19200] [--parity none|even|odd]
//
// Exit codes: 0 stdin closed or SIGTERM; 2 the port cannot be opened;
// 3 the port failed or went away after opening; 64 bad arguments.
// Messages go to stderr, one line each, prefixed "sahary-bridge:".
import { statSync } from "node:fs";
import { parseArgs } from "node:util";
import { SerialPort } from "serialport";

const USAGE = "usage: node hardware/bridge.mjs --path <tty> [--baud 19200] [--parity none|even|odd] [--data-bits 8] [--stop-bits 1]";
const PARITIES = ["none", "even", "odd"];

function say(message) {
  process.stderr.write(`sahary-bridge: ${message}\n`);
}

function exit(code, message) {
  if (message) say(message);
  process.exit(code);
}

let args;
try {
  args = parseArgs({
    options: {
      path: { type: "string" },
      baud: { type: "string", default: "19200" },
      parity: { type: "string", default: "none" },
      "data-bits": { type: "string", default: "8" },
      "stop-bits": { type: "string", default: "1" },
    },
  }).values;
} catch (error) {
  exit(64, `${error.message}\n${USAGE}`);
}

const path = args.path;
const baudRate = Number(args.baud);
const dataBits = Number(args["data-bits"]);
const stopBits = Number(args["stop-bits"]);
const parity = args.parity;
if (!path) exit(64, `no serial port given (--path)\n${USAGE}`);
if (!Number.isInteger(baudRate) || baudRate <= 0) exit(64, `--baud must be a positive integer, got ${args.baud}`);
if (![5, 6, 7, 8].includes(dataBits)) exit(64, `--data-bits must be 5, 6, 7 or 8, got ${args["data-bits"]}`);
if (![1, 2].includes(stopBits)) exit(64, `--stop-bits must be 1 or 2, got ${args["stop-bits"]}`);
if (!PARITIES.includes(parity)) exit(64, `--parity must be one of ${PARITIES.join(", ")}, got ${parity}`);

const framing = `${baudRate} ${dataBits}${parity[0].toUpperCase()}${stopBits}`;
let closing = false;

const port = new SerialPort({ path, baudRate, dataBits, stopBits, parity, autoOpen: false, lock: true });

port.open((error) => {
  if (error) exit(2, `cannot open serial port ${path} (${framing}): ${error.message}`);
  say(`opened ${path} (${framing})`);
  // VE.Direct-RS232 interfaces are powered from DTR/RTS. A tty without modem
  // control lines (a pseudo-terminal) refuses the request, which is harmless.
  port.set({ dtr: true, rts: true }, () => {});

  port.on("data", (chunk) => {
    if (!process.stdout.write(chunk)) {
      port.pause();
      process.stdout.once("drain", () => port.resume());
    }
  });
  process.stdin.on("data", (chunk) => port.write(chunk));
  process.stdin.on("end", () => shutdown(0));

  // A hang-up racing the first read can go unreported by the binding; an
  // unplugged adapter (or a pty pair torn down) also removes its device node.
  setInterval(() => {
    try {
      statSync(path);
    } catch {
      if (!closing) exit(3, `serial port ${path} disappeared (device disconnected)`);
    }
  }, 1000).unref();
});

port.on("error", (error) => {
  if (!closing) exit(3, `serial port ${path} failed: ${error.message}`);
});
port.on("close", (error) => {
  if (!closing) exit(3, `serial port ${path} closed${error?.disconnected ? " (device disconnected)" : ""}`);
});

// The monitor went away: nobody to deliver bytes to.
process.stdout.on("error", () => shutdown(0));

function shutdown(code) {
  if (closing) return;
  closing = true;
  setTimeout(() => process.exit(code), 1000).unref();
  if (port.isOpen) port.close(() => process.exit(code));
  else process.exit(code);
}

process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));
