import { resolve } from "node:path";
import type { Subprocess } from "bun";
import { serializeError } from "../server/log";
import type { Services } from "../server/services";
import { recordEnergyEvent } from "../server/energy/events";
import { getPowerPolicy } from "../server/energy/policy";
import { currentPowerLevel, dispatchPowerEmergency, recordLevelChange, redispatchPendingChanges } from "../server/energy/power";
import { pruneReadings, storeSample, type Sample } from "../server/energy/readings";
import { saveMonitorState } from "../server/energy/telemetry";
import { BridgeProcess, type BridgeExit } from "./bridge-process";
import { evaluatePolicy, initialPolicyState, type PolicyState, type PowerPolicy } from "./policy";
import { ModbusClient, pollEpever, readingFromEpever, type ModbusStats } from "./protocols/modbus";
import type { Reading } from "./protocols/reading";
import { readingFromVeDirect, VeDirectDecoder, type DropReason } from "./protocols/vedirect";
import { openPtyPair, type PtyPair } from "./pty-pair";
import { Sampler } from "./sampler";
import { socFromVoltage } from "./soc";

const SIMULATOR_MAIN = resolve(import.meta.dir, "simulator/main.ts");
const POLICY_REFRESH_MS = 2000;
const STATE_SAVE_MS = 1000;
const SWEEP_MS = 60_000;
const PRUNE_MS = 3600_000;

export type TelemetryHealth = "waiting" | "ok" | "lost";

export type MonitorStatus = {
  protocol: "vedirect" | "modbus";
  port: string;
  telemetry: TelemetryHealth;
  lastReadingAt: Date | null;
  lastReading: (Reading & { at: string }) | null;
  framesDecoded: number;
  framesDropped: number;
  dropReasons: Record<DropReason | "poll", number>;
  level: PolicyState["level"];
  bridge: BridgeProcess["status"];
  /** Request/retry/CRC counters of the Modbus client (null on VE.Direct). */
  modbus: ModbusStats | null;
};

export type Monitor = {
  status(): MonitorStatus;
  /** Kills the bridge process the way a crash would (operations and tests). */
  killBridge(): void;
  /** Re-reads the power policy now instead of at the next refresh. */
  reloadPolicy(): Promise<void>;
  /** Resolves when the database work queued so far is done. */
  settled(): Promise<void>;
  stop(): Promise<void>;
};

/**
 * The hardware monitor: runs the serial bridge (and, in development, a
 * simulated controller on a pty pair), decodes the controller's protocol into
 * readings, stores them decimated, raises "telemetry lost" when no valid data
 * arrives for ENERGY_TELEMETRY_TIMEOUT_MS, and runs the power policy — each
 * level change is recorded and raises a power-emergency job.
 */
export async function startMonitor(services: Services): Promise<Monitor> {
  const { config, db, queues } = services;
  const energy = config.energy;
  const log = services.log.child({ component: "hardware" });
  if (!energy.monitorEnabled) throw new Error("the hardware monitor needs SERIAL_PORT, or ENERGY_SIMULATOR for a simulated controller");

  let pair: PtyPair | undefined;
  let simulator: Subprocess | undefined;
  let port = energy.serial.port;
  if (energy.simulator) {
    pair = await openPtyPair(resolve(config.database.dataDir, "hardware"), "sim");
    const args = [process.execPath, SIMULATOR_MAIN, "--port", pair.device, "--protocol", energy.serial.protocol, "--scenario", energy.simulator.scenario, "--speed", String(energy.simulator.speed)];
    args.push("--chemistry", energy.battery.chemistry, "--nominal", String(energy.battery.nominalVoltage), "--capacity", String(energy.battery.capacityAh));
    args.push("--unit", String(energy.modbus.unitId), "--quiet");
    simulator = Bun.spawn(args, { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
    port = pair.host;
    log.info("simulated charge controller started", { scenario: energy.simulator.scenario, speed: energy.simulator.speed, tty: pair.host });
  }

  const protocol = energy.serial.protocol;
  const bank = { chemistry: energy.battery.chemistry, cells: energy.battery.cells };
  const startedAt = new Date();
  let policy: PowerPolicy = (await getPowerPolicy(db)).policy;
  let policyState: PolicyState = initialPolicyState(await currentPowerLevel(db));
  let committing = false;
  let telemetry: TelemetryHealth = "waiting";
  let lastValidAt: number | null = null;
  let lastReading: MonitorStatus["lastReading"] = null;
  let lastFault: string | null = null;
  let recordedBridgeFailure: string | null = null;
  let framesDecoded = 0;
  const dropReasons: MonitorStatus["dropReasons"] = { checksum: 0, overflow: 0, malformed: 0, gap: 0, poll: 0 };
  let dirty = true;
  let stopped = false;

  // Database work runs one step at a time, in the order the readings came.
  let work: Promise<void> = Promise.resolve();
  const enqueue = (what: string, step: () => Promise<unknown>) => {
    work = work.then(step).then(
      () => {},
      (error) => log.error(`hardware monitor: ${what} failed`, { error: serializeError(error) }),
    );
  };

  const sampler = new Sampler({ windowSeconds: energy.sampleSeconds, maxStepSeconds: Math.max(30, (energy.modbus.pollMs / 1000) * 3), source: protocol });
  const store = (sample: Sample | null) => {
    if (sample) enqueue("storing a reading", () => storeSample(db, sample));
  };

  const event = (e: Parameters<typeof recordEnergyEvent>[1]) => enqueue(`recording ${e.kind}`, () => recordEnergyEvent(db, e));

  const onReading = (raw: Reading, at: number) => {
    const reading = raw.soc === null && raw.batteryVoltage !== null ? { ...raw, soc: socFromVoltage(bank, raw.batteryVoltage), socSource: "voltage" as const } : raw;
    lastValidAt = at;
    framesDecoded++;
    recordedBridgeFailure = null;
    lastReading = { at: new Date(at).toISOString(), ...reading };
    dirty = true;
    if (telemetry === "lost") {
      event({ at: new Date(at), kind: "telemetry_restored", severity: "info", message: "Telemetry from the charge controller is back", details: { protocol } });
      log.info("telemetry restored");
    }
    telemetry = "ok";
    if (reading.fault !== lastFault) {
      if (reading.fault) event({ at: new Date(at), kind: "controller_fault", severity: "warning", message: `Charge controller reports: ${reading.fault}`, details: { fault: reading.fault } });
      else event({ at: new Date(at), kind: "controller_fault_cleared", severity: "info", message: `Charge controller fault cleared: ${lastFault}`, details: { fault: lastFault } });
      lastFault = reading.fault;
    }
    store(sampler.add(reading, at));
    if (reading.soc !== null && !committing) evaluate(reading, at);
  };

  const evaluate = (reading: Reading, at: number) => {
    const result = evaluatePolicy(policy, policyState, reading.soc!, at, energy.telemetryTimeoutMs);
    if (!result.change) {
      policyState = result.state;
      return;
    }
    const { from, to } = result.change;
    committing = true;
    const snapshot = { at: new Date(at).toISOString(), ...reading };
    enqueue("recording a power level change", async () => {
      try {
        const change = await recordLevelChange(db, { from, to, at: new Date(at), soc: reading.soc, reading: snapshot, policy });
        if (!change) {
          // Someone else moved the level: start again from what is recorded.
          policyState = initialPolicyState(await currentPowerLevel(db));
          return;
        }
        policyState = result.state;
        log.warn("power level changed", { from, to, soc: reading.soc, changeId: change.id });
        await dispatchPowerEmergency(db, queues, change).catch((error) =>
          log.error("power-emergency enqueue failed; the sweep will retry", { changeId: change.id, error: serializeError(error) }),
        );
      } finally {
        committing = false;
      }
    });
  };

  let decoder: VeDirectDecoder | undefined;
  let modbus: ModbusClient | undefined;
  const bridge = new BridgeProcess({
    nodeBin: energy.serial.nodeBin,
    port: port!,
    baud: energy.serial.baud,
    parity: energy.serial.parity,
    restartMinMs: energy.serial.restartMinMs,
    restartMaxMs: energy.serial.restartMaxMs,
    log,
    onData: (bytes, at) => (decoder ? decoder.push(bytes, at) : modbus!.feed(bytes)),
    onExit: (exit: BridgeExit) => {
      dirty = true;
      if (exit.message !== recordedBridgeFailure) {
        recordedBridgeFailure = exit.message;
        event({ at: new Date(exit.at), kind: "bridge_failed", severity: "warning", message: `Serial bridge stopped: ${exit.message}`, details: { code: exit.code, restartInMs: exit.nextDelayMs } });
      }
    },
  });

  let pollLoop: Promise<void> | undefined;
  if (protocol === "vedirect") {
    decoder = new VeDirectDecoder({
      onFrame: (frame) => onReading(readingFromVeDirect(frame.fields), frame.at),
      onDrop: (reason) => {
        dropReasons[reason]++;
        dirty = true;
      },
    });
  } else {
    modbus = new ModbusClient({ write: (bytes) => void bridge.write(bytes), timeoutMs: energy.modbus.timeoutMs, retries: energy.modbus.retries });
    pollLoop = (async () => {
      while (!stopped) {
        const began = Date.now();
        if (bridge.status.state === "running") {
          try {
            const registers = await pollEpever(modbus!, energy.modbus.unitId);
            onReading(readingFromEpever(registers), Date.now());
          } catch (error) {
            dropReasons.poll++;
            dirty = true;
            log.debug("modbus poll failed", { error: (error as Error).message });
          }
        }
        await Bun.sleep(Math.max(10, energy.modbus.pollMs - (Date.now() - began)));
      }
    })();
  }

  const framesDropped = () => Object.values(dropReasons).reduce((a, b) => a + b, 0);
  const saveState = () =>
    saveMonitorState(db, {
      protocol,
      startedAt,
      updatedAt: new Date(),
      telemetry,
      lastReadingAt: lastValidAt === null ? null : new Date(lastValidAt),
      lastReading,
      framesDecoded,
      framesDropped: framesDropped(),
      bridgeState: bridge.status.state,
      bridgeRestarts: bridge.status.restarts,
      lastBridgeExit: bridge.status.lastExit && { code: bridge.status.lastExit.code, message: bridge.status.lastExit.message, at: bridge.status.lastExit.at },
    });

  await redispatchPendingChanges(db, queues).catch((error) => log.error("power-emergency sweep failed", { error: serializeError(error) }));
  await saveState();
  bridge.start();
  log.info("hardware monitor started", { protocol, port, baud: energy.serial.baud, powerLevel: policyState.level });

  const timers: Timer[] = [];
  const watchdogMs = Math.max(50, Math.min(1000, energy.telemetryTimeoutMs / 4));
  timers.push(
    setInterval(() => {
      const now = Date.now();
      store(sampler.flushIfDue(now));
      if (telemetry !== "lost" && now - (lastValidAt ?? startedAt.getTime()) > energy.telemetryTimeoutMs) {
        telemetry = "lost";
        dirty = true;
        const since = lastValidAt === null ? "since the monitor started" : `since ${new Date(lastValidAt).toISOString()}`;
        log.warn("telemetry lost", { lastReadingAt: lastValidAt && new Date(lastValidAt).toISOString(), bridge: bridge.status.state });
        event({
          at: new Date(now),
          kind: "telemetry_lost",
          severity: "critical",
          message: `No valid data from the charge controller ${since} (timeout ${energy.telemetryTimeoutMs} ms)`,
          details: { lastReadingAt: lastValidAt && new Date(lastValidAt).toISOString(), bridgeState: bridge.status.state, lastBridgeExit: bridge.status.lastExit?.message ?? null, framesDropped: framesDropped() },
        });
      }
    }, watchdogMs),
    setInterval(() => {
      if (!dirty) return;
      dirty = false;
      enqueue("saving the monitor state", saveState);
    }, STATE_SAVE_MS),
    setInterval(() => enqueue("reloading the power policy", async () => void (policy = (await getPowerPolicy(db)).policy)), POLICY_REFRESH_MS),
    setInterval(() => enqueue("re-dispatching power-emergency jobs", () => redispatchPendingChanges(db, queues)), SWEEP_MS),
    setInterval(() => enqueue("pruning old readings", () => pruneReadings(db, new Date(Date.now() - energy.retentionDays * 86_400_000))), PRUNE_MS),
  );

  return {
    status: () => ({
      protocol,
      port: port!,
      telemetry,
      lastReadingAt: lastValidAt === null ? null : new Date(lastValidAt),
      lastReading,
      framesDecoded,
      framesDropped: framesDropped(),
      dropReasons: { ...dropReasons },
      level: policyState.level,
      bridge: { ...bridge.status },
      modbus: modbus ? { ...modbus.stats } : null,
    }),
    killBridge: () => bridge.kill(),
    reloadPolicy: async () => {
      policy = (await getPowerPolicy(db)).policy;
    },
    settled: async () => {
      let seen: Promise<void>;
      do {
        seen = work;
        await seen;
      } while (seen !== work);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const t of timers) clearInterval(t);
      modbus?.close();
      await bridge.stop();
      await pollLoop;
      store(sampler.flush());
      enqueue("saving the monitor state", saveState);
      await work;
      simulator?.kill("SIGTERM");
      await simulator?.exited;
      await pair?.close();
      log.info("hardware monitor stopped");
    },
  };
}
