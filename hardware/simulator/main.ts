// A simulated charge controller on a tty, for development and tests:
//   bun hardware/simulator/main.ts --pair ./data/sim --scenario night-drain --speed 600
// prints the tty to point SERIAL_PORT at. SIGUSR1 pulls the cable, SIGUSR2 plugs it back.
import { parseArgs } from "node:util";
import { openPtyPair, type PtyPair } from "../pty-pair";
import { BATTERY_CHEMISTRIES, type BatteryChemistry } from "../soc";
import { DAMAGE, type Damage } from "./devices";
import { SCENARIOS, type ScenarioName } from "./model";
import { runSimulator, type Simulator } from "./run";

const OPTIONS = {
  port: { type: "string" },
  pair: { type: "string" },
  protocol: { type: "string", default: "vedirect" },
  scenario: { type: "string", default: "sunny-day" },
  speed: { type: "string", default: "1" },
  rate: { type: "string", default: "1" },
  soc: { type: "string" },
  load: { type: "string" },
  "pv-peak": { type: "string" },
  around: { type: "string" },
  swing: { type: "string" },
  chemistry: { type: "string", default: "lead-acid" },
  nominal: { type: "string", default: "12" },
  capacity: { type: "string", default: "100" },
  unit: { type: "string", default: "1" },
  split: { type: "boolean", default: false },
  echo: { type: "boolean", default: false },
  "corrupt-every": { type: "string", default: "0" },
  damage: { type: "string", default: "bit" },
  "tx-baud": { type: "string" },
  "rx-baud": { type: "string" },
  start: { type: "string" },
  lvd: { type: "string" },
  lvr: { type: "string" },
  "hex-every": { type: "string", default: "10" },
  "pull-after": { type: "string" },
  quiet: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

const USAGE = `usage: bun hardware/simulator/main.ts (--port <tty> | --pair <dir>) [options]

  --port <tty>          write to this tty (e.g. one end of: socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B)
  --pair <dir>          create the socat pty pair in <dir> and print the end to give SERIAL_PORT
  --protocol <p>        vedirect (default) | modbus
  --scenario <s>        ${SCENARIOS.join(" | ")} (default sunny-day)
  --speed <n>           simulated seconds per real second (default 1)
  --rate <n>            frames per real second (default 1)
  --soc <pct>           starting state of charge
  --load <W>            constant load        --pv-peak <W>   peak PV power
  --around <pct>        clouds: SOC to hover around   --swing <pct>  how far either side (default 1.5)
  --chemistry <c>       ${BATTERY_CHEMISTRIES.join(" | ")} (default lead-acid)
  --nominal <V>         battery nominal voltage (default 12)   --capacity <Ah>  (default 100)
  --unit <id>           Modbus unit id (default 1)
  --split               send each VE.Direct frame as two checksummed blocks
  --echo                echo Modbus requests before replying (half-duplex adapter)
  --corrupt-every <n>   corrupt every nth frame/reply (corrupt-frames: 3)
  --damage <kind>       how a VE.Direct frame is corrupted: ${DAMAGE.join(" | ")} (default bit)
  --tx-baud <n>         the device transmits at n baud while the host listens at --rx-baud
  --rx-baud <n>         (default 19200 vedirect, 115200 modbus): a wrong SERIAL_BAUD, as the host sees it
  --start <iso>         the simulated time to start at (its time of day drives the sun)
  --lvd <V> / --lvr <V> the controller's load disconnect / reconnect (default 11.1 / 12.6 per 12 V)
  --hex-every <n>       a HEX async message after every nth frame (default 10, 0 = never)
  --pull-after <s>      cable-pulled: go silent after s real seconds (default 5)
  --quiet               no status lines on stderr`;

function fail(message: string): never {
  console.error(`simulator: ${message}\n\n${USAGE}`);
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (error) {
    fail((error as Error).message);
  }
})();

function num(name: string, raw: string | undefined, min = 0): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) fail(`--${name} must be a number ≥ ${min}`);
  return n;
}

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!values.port === !values.pair) fail("give exactly one of --port or --pair");
if (!SCENARIOS.includes(values.scenario as ScenarioName)) fail(`unknown scenario ${values.scenario}`);
if (values.protocol !== "vedirect" && values.protocol !== "modbus") fail(`unknown protocol ${values.protocol}`);
if (!BATTERY_CHEMISTRIES.includes(values.chemistry as BatteryChemistry)) fail(`unknown chemistry ${values.chemistry}`);
if (!DAMAGE.includes(values.damage as Damage)) fail(`unknown damage ${values.damage}`);
const startAt = values.start === undefined ? undefined : Date.parse(values.start);
if (startAt !== undefined && Number.isNaN(startAt)) fail("--start must be an ISO 8601 time");
const txBaud = num("tx-baud", values["tx-baud"], 1);
const rxBaud = num("rx-baud", values["rx-baud"], 1) ?? (values.protocol === "modbus" ? 115200 : 19200);
const perTwelve = (num("nominal", values.nominal, 1) ?? 12) / 12;
const lvd = num("lvd", values.lvd, 1);
const lvr = num("lvr", values.lvr, 1);
if ((lvd ?? 11.1 * perTwelve) >= (lvr ?? 12.6 * perTwelve)) fail("--lvr must be above --lvd");
const cutoffs = lvd === undefined && lvr === undefined ? undefined : { lvd: lvd ?? 11.1 * perTwelve, lvr: lvr ?? 12.6 * perTwelve };

let pair: PtyPair | undefined;
if (values.pair) {
  pair = await openPtyPair(values.pair, "sim");
  console.log(pair.host);
}

const quiet = values.quiet;
const rate = num("rate", values.rate, 0.01)!;
let sim: Simulator;
try {
  sim = start();
} catch (error) {
  await pair?.close();
  fail(`cannot run on ${pair?.device ?? values.port}: ${(error as Error).message}`);
}

function start(): Simulator {
  return runSimulator({
    port: pair?.device ?? values.port!,
    protocol: values.protocol as "vedirect" | "modbus",
    scenario: values.scenario as ScenarioName,
    speed: num("speed", values.speed, 0)!,
    rate,
    chemistry: values.chemistry as BatteryChemistry,
    nominalVoltage: num("nominal", values.nominal, 1)!,
    capacityAh: num("capacity", values.capacity, 1)!,
    startSoc: num("soc", values.soc),
    loadW: num("load", values.load),
    pvPeakW: num("pv-peak", values["pv-peak"]),
    around: num("around", values.around),
    swing: num("swing", values.swing),
    unit: num("unit", values.unit, 0)!,
    split: values.split,
    echo: values.echo,
    corruptEvery: num("corrupt-every", values["corrupt-every"])!,
    damage: values.damage as Damage,
    ...(txBaud === undefined ? {} : { baudMismatch: { tx: txBaud, rx: rxBaud } }),
    ...(startAt === undefined ? {} : { startAt }),
    ...(cutoffs === undefined ? {} : { cutoffs }),
    hexEvery: num("hex-every", values["hex-every"])!,
    pullAfterSeconds: num("pull-after", values["pull-after"]),
    onStep(s, frame) {
      if (quiet || frame % Math.max(1, Math.round(rate * 10)) !== 0) return;
      const hh = String(Math.floor(s.clock / 3600)).padStart(2, "0");
      const mm = String(Math.floor((s.clock % 3600) / 60)).padStart(2, "0");
      console.error(
        `[sim day ${s.day} ${hh}:${mm}] SOC ${s.soc.toFixed(1)}%  PV ${s.pvPower} W  load ${s.loadPower} W  battery ${s.batteryVoltage.toFixed(2)} V ${s.batteryCurrent.toFixed(2)} A${sim.pulled ? "  (cable pulled)" : ""}`,
      );
    },
  });
}

process.on("SIGUSR1", () => {
  sim.pull();
  if (!quiet) console.error("simulator: cable pulled");
});
process.on("SIGUSR2", () => {
  sim.plug();
  if (!quiet) console.error("simulator: cable plugged back in");
});
const stop = async () => {
  sim.stop();
  await pair?.close();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
