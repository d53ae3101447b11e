import { resolve } from "node:path";
import type { Subprocess } from "bun";
import type { Config } from "../../server/config";
import type { EnergyClock } from "../../server/energy/clock";
import { openPtyPair, type PtyPair } from "../pty-pair";

const SIMULATOR_MAIN = resolve(import.meta.dir, "main.ts");

export type SimulatedController = { port: string; close(): Promise<void> };

/**
 * ENERGY_SIMULATOR for development: a socat pty pair under DATA_DIR/hardware
 * with the command-line simulator on one end (a separate process, as a real
 * controller is), started at the energy clock's time so its sun keeps the
 * clock's time of day. The monitor opens the other end like a serial port.
 */
export async function startSimulatedController(config: Config, clock: EnergyClock): Promise<SimulatedController> {
  const energy = config.energy;
  const scenario = energy.simulator!;
  const pair: PtyPair = await openPtyPair(resolve(config.database.dataDir, "hardware"), "sim");
  const args = [process.execPath, SIMULATOR_MAIN, "--port", pair.device, "--protocol", energy.serial.protocol, "--scenario", scenario.scenario, "--speed", String(scenario.speed)];
  args.push("--start", new Date(clock.now()).toISOString());
  args.push("--chemistry", energy.battery.chemistry, "--nominal", String(energy.battery.nominalVoltage), "--capacity", String(energy.battery.capacityAh));
  args.push("--unit", String(energy.modbus.unitId), "--quiet");
  const simulator: Subprocess = Bun.spawn(args, { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
  return {
    port: pair.host,
    async close() {
      simulator.kill("SIGTERM");
      await simulator.exited;
      await pair.close();
    },
  };
}
