import type { Logger } from "../server/log";
import type { BridgeProcess } from "./bridge-process";
import { readEpeverCutoffs, type ControllerCutoffs } from "./protocols/epever-settings";
import { pollEpever, readingFromEpever, type ModbusClient } from "./protocols/modbus";
import type { Reading } from "./protocols/reading";

/** An EPEver's settings are read again this often (real time), and retried this soon after a failure. */
const SETTINGS_REFRESH_MS = 3600_000;
const SETTINGS_RETRY_MS = 30_000;

export type EpeverPollerOptions = {
  client: ModbusClient;
  bridge: BridgeProcess;
  unitId: number;
  pollMs: number;
  nominalVoltage: number;
  log: Logger;
  stopped: () => boolean;
  onReading: (reading: Reading, realAt: number) => void;
  onPollFailed: () => void;
  onCutoffs: (cutoffs: ControllerCutoffs) => void;
};

/**
 * Polls an EPEver every MODBUS_POLL_MS while the bridge has the port open:
 * all real-time blocks for a reading (pollEpever), and — hourly, once the
 * controller answers — its battery settings (0x9000–0x900E, function 0x03),
 * so the policy can be checked against its own cut-offs. A silent controller
 * is not asked for settings: that would only delay the polls.
 */
export async function runEpeverPoller(opts: EpeverPollerOptions): Promise<void> {
  const { client, log } = opts;
  let settingsDueAt = 0;
  let answering = false;
  while (!opts.stopped()) {
    const began = Date.now();
    if (opts.bridge.status.state === "running") {
      if (answering && began >= settingsDueAt) {
        try {
          const cutoffs = await readEpeverCutoffs(client, opts.unitId, opts.nominalVoltage);
          settingsDueAt = began + (cutoffs ? SETTINGS_REFRESH_MS : SETTINGS_RETRY_MS);
          if (cutoffs) opts.onCutoffs(cutoffs);
          else log.warn("the controller's battery settings (0x9000–0x900E) were not usable");
        } catch (error) {
          settingsDueAt = began + SETTINGS_RETRY_MS;
          log.debug("reading the controller's battery settings failed", { error: (error as Error).message });
        }
      }
      try {
        const registers = await pollEpever(client, opts.unitId);
        answering = true;
        opts.onReading(readingFromEpever(registers), Date.now());
      } catch (error) {
        answering = false;
        opts.onPollFailed();
        log.debug("modbus poll failed", { error: (error as Error).message });
      }
    }
    await Bun.sleep(Math.max(10, opts.pollMs - (Date.now() - began)));
  }
}
