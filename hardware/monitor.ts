import { serializeError } from "../server/log";
import type { Services } from "../server/services";
import { alignmentOptions, configuredCutoffs, policyAlignment, type Alignment } from "../server/energy/alignment";
import { realClock, scaledClock, type ClockSpec, type EnergyClock } from "../server/energy/clock";
import { recordEnergyEvent } from "../server/energy/events";
import { getPowerPolicy } from "../server/energy/policy";
import { currentPowerLevel, dispatchPowerEmergency, recordLevelChange, redispatchPendingChanges } from "../server/energy/power";
import { pruneReadings, storeSample, type Sample } from "../server/energy/readings";
import type { Runway } from "../server/energy/runway";
import { saveMonitorState } from "../server/energy/telemetry";
import { linkAlert, misalignmentAlert } from "./alerts";
import { BridgeProcess, type BridgeExit } from "./bridge-process";
import { LinkHealth, linkView, type LinkSnapshot, type LinkState } from "./link";
import { Lookahead } from "./lookahead";
import { PlausibilityFilter, plausibilityLimits, REJECT_REASONS, type RejectReason } from "./plausibility";
import { evaluatePolicy, initialPolicyState, type PolicyState, type PowerPolicy } from "./policy";
import { runEpeverPoller } from "./epever-poller";
import type { ControllerCutoffs } from "./protocols/epever-settings";
import { ModbusClient, type ModbusStats } from "./protocols/modbus";
import type { Reading } from "./protocols/reading";
import { DROP_REASONS, VeDirectDecoder, type DropReason } from "./protocols/vedirect";
import { readingFromVeDirect } from "./protocols/vedirect-fields";
import { Sampler } from "./sampler";
import { startSimulatedController } from "./simulator/spawn";
import { socFromVoltage } from "./soc";

const POLICY_REFRESH_MS = 2000;
const STATE_SAVE_MS = 1000;
const SWEEP_MS = 60_000;
const PRUNE_MS = 3600_000;

export type TelemetryHealth = LinkState;

export type MonitorStatus = {
  protocol: "vedirect" | "modbus";
  port: string;
  telemetry: TelemetryHealth;
  /** Energy-clock time of the last accepted reading. */
  lastReadingAt: Date | null;
  lastReading: (Reading & { at: string }) | null;
  /** Frames that passed checksum and grammar (VE.Direct) or polls that answered (Modbus). */
  framesDecoded: number;
  framesDropped: number;
  dropReasons: Record<DropReason | "poll", number>;
  /** Decoded readings refused as physically implausible, by reason. */
  readingsRejected: number;
  rejected: Record<RejectReason, number>;
  link: LinkSnapshot;
  level: PolicyState["level"];
  /** The level the forecast calls for ahead of the battery (normal: none). */
  floor: PolicyState["level"];
  forecast: Runway | null;
  cutoffs: ControllerCutoffs | null;
  alignment: Alignment;
  clock: ClockSpec | null;
  bridge: BridgeProcess["status"];
  /** Request/retry/CRC counters of the Modbus client (null on VE.Direct). */
  modbus: ModbusStats | null;
};

export type Monitor = {
  status(): MonitorStatus;
  readonly clock: EnergyClock;
  /** Kills the bridge process the way a crash would (operations and tests). */
  killBridge(): void;
  /** Re-reads the power policy now instead of at the next refresh. */
  reloadPolicy(): Promise<void>;
  /** Resolves when the database work queued so far is done. */
  settled(): Promise<void>;
  stop(): Promise<void>;
};

export type MonitorOptions = {
  /** The energy clock (default: real time, or the simulator's speed with ENERGY_SIMULATOR). */
  clock?: EnergyClock;
};

/**
 * The hardware monitor: runs the serial bridge (and, in development, a
 * simulated controller on a pty pair), decodes the controller's protocol into
 * readings, refuses implausible ones, stores the rest decimated, watches the
 * link (degraded: bytes but no valid reading; lost: silence), reads or takes
 * the controller's cut-offs and checks the policy against them, runs the
 * runway forecast ahead (warnings, an early step down) and the power policy —
 * each level change is recorded and raises a power-emergency job.
 */
export async function startMonitor(services: Services, opts: MonitorOptions = {}): Promise<Monitor> {
  const { config, db, queues } = services;
  const energy = config.energy;
  const log = services.log.child({ component: "hardware" });
  if (!energy.monitorEnabled) throw new Error("the hardware monitor needs SERIAL_PORT, or ENERGY_SIMULATOR for a simulated controller");

  const startedReal = Date.now();
  const clock =
    opts.clock ??
    (energy.simulator && (energy.simulator.speed !== 1 || energy.simulator.start)
      ? scaledClock({ speed: energy.simulator.speed, realEpochMs: startedReal, simEpochMs: energy.simulator.start?.getTime() ?? startedReal })
      : realClock);
  const energyDate = (realMs: number) => new Date(clock.fromReal(realMs));

  const simulated = energy.simulator ? await startSimulatedController(config, clock) : null;
  const port = simulated?.port ?? energy.serial.port;
  if (simulated) log.info("simulated charge controller started", { scenario: energy.simulator!.scenario, speed: energy.simulator!.speed, tty: port });

  const protocol = energy.serial.protocol;
  const bank = { chemistry: energy.battery.chemistry, cells: energy.battery.cells };
  const startedAt = new Date(startedReal);
  let policy: PowerPolicy = (await getPowerPolicy(db)).policy;
  let policyState: PolicyState = initialPolicyState(await currentPowerLevel(db));
  let committing = false;
  const link = new LinkHealth(energy.telemetryTimeoutMs, startedReal);
  const filter = new PlausibilityFilter(
    plausibilityLimits({
      ...bank,
      nominalVoltage: energy.battery.nominalVoltage,
      capacityAh: energy.battery.capacityAh,
      ratedCurrentA: energy.controller.ratedCurrentA,
      pvArrayWp: energy.controller.pvArrayWp,
    }),
  );
  const lookahead = new Lookahead({ db, energy, log });
  let forecasting = false;
  let lastValidAt: number | null = null;
  let lastReading: MonitorStatus["lastReading"] = null;
  let lastFault: string | null = null;
  let recordedBridgeFailure: string | null = null;
  let framesDecoded = 0;
  const dropReasons = Object.fromEntries([...DROP_REASONS, "poll"].map((r) => [r, 0])) as MonitorStatus["dropReasons"];
  const rejected = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
  let cutoffs: ControllerCutoffs | null = protocol === "vedirect" ? configuredCutoffs(energy) : null;
  let alignment: Alignment = policyAlignment(policy, cutoffs, alignmentOptions(energy));
  let flaggedAlignment: string | null = null;
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

  // Frames arrive at the wire's pace; in energy time a step is `speed` times longer.
  const sampler = new Sampler({ windowSeconds: energy.sampleSeconds, maxStepSeconds: Math.max(30, (energy.modbus.pollMs / 1000) * 3) * clock.speed, source: protocol });
  const store = (sample: Sample | null) => {
    if (sample) enqueue("storing a reading", () => storeSample(db, sample));
  };

  const event = (e: Parameters<typeof recordEnergyEvent>[1]) => enqueue(`recording ${e.kind}`, () => recordEnergyEvent(db, e));

  /** The policy against the controller's cut-offs: flagged once per combination that does not clear them. */
  const checkAlignment = () => {
    alignment = policyAlignment(policy, cutoffs, alignmentOptions(energy));
    const key = JSON.stringify([cutoffs, policy.thresholds]);
    const alert = key === flaggedAlignment ? null : misalignmentAlert(alignment, new Date(clock.now()));
    if (!alert) return;
    flaggedAlignment = key;
    log.warn("power policy below the controller's cut-offs", { message: alert.message });
    event(alert);
  };
  if (cutoffs) checkAlignment();

  const linkChanged = (realNow: number) => {
    const { change } = link.evaluate(realNow);
    if (!change) return;
    dirty = true;
    // A reading after a lost or degraded stretch starts the plausibility reference afresh.
    if (change.to === "lost" || change.to === "degraded") filter.reset();
    const alert = linkAlert(change, {
      at: energyDate(realNow),
      timeoutMs: energy.telemetryTimeoutMs,
      baud: energy.serial.baud,
      protocol,
      lastReadingAt: lastValidAt === null ? null : new Date(lastValidAt).toISOString(),
      snapshot: link.snapshot(),
      details: { dropReasons: { ...dropReasons }, rejected: { ...rejected }, bridgeState: bridge.status.state, lastBridgeExit: bridge.status.lastExit?.message ?? null },
    });
    if (!alert) return;
    log[alert.severity === "info" ? "info" : "warn"](alert.kind.replace("_", " "), { from: change.from, to: change.to });
    event(alert);
  };

  const onReading = (raw: Reading, realAt: number) => {
    const at = clock.fromReal(realAt);
    framesDecoded++;
    link.frame(realAt);
    dirty = true;
    const verdict = filter.check(raw, at);
    if (!verdict.ok) {
      rejected[verdict.reason]++;
      return;
    }
    link.accepted(realAt);
    const reading = raw.soc === null && raw.batteryVoltage !== null ? { ...raw, soc: socFromVoltage(bank, raw.batteryVoltage), socSource: "voltage" as const } : raw;
    lastValidAt = at;
    recordedBridgeFailure = null;
    lastReading = { at: new Date(at).toISOString(), ...reading };
    linkChanged(realAt);
    if (reading.fault !== lastFault) {
      if (reading.fault) event({ at: new Date(at), kind: "controller_fault", severity: "warning", message: `Charge controller reports: ${reading.fault}`, details: { fault: reading.fault } });
      else event({ at: new Date(at), kind: "controller_fault_cleared", severity: "info", message: `Charge controller fault cleared: ${lastFault}`, details: { fault: lastFault } });
      lastFault = reading.fault;
    }
    store(sampler.add(reading, at));
    if (reading.soc === null) return;
    if (!committing) evaluate(reading, at);
    if (!forecasting && lookahead.due(at, reading.soc)) {
      forecasting = true;
      const soc = reading.soc;
      enqueue("forecasting the runway", async () => {
        try {
          await lookahead.run({ at, soc, loadW: reading.loadPower, pvW: reading.pvPower, level: policyState.level, policy, cutoffSoc: alignment.cutoffSoc });
          dirty = true;
        } finally {
          forecasting = false;
        }
      });
    }
  };

  const evaluate = (reading: Reading, at: number) => {
    const result = evaluatePolicy(policy, policyState, reading.soc!, at, energy.telemetryTimeoutMs * clock.speed, lookahead.floor);
    if (!result.change) {
      policyState = result.state;
      return;
    }
    const { from, to, cause } = result.change;
    committing = true;
    const snapshot = { at: new Date(at).toISOString(), ...reading };
    const forecast = cause === "forecast" && lookahead.summary ? { at: lookahead.summary.at, thresholds: lookahead.summary.thresholds } : null;
    enqueue("recording a power level change", async () => {
      try {
        const change = await recordLevelChange(db, { from, to, at: new Date(at), soc: reading.soc, reading: snapshot, policy, cause, forecast });
        if (!change) {
          // Someone else moved the level: start again from what is recorded.
          policyState = initialPolicyState(await currentPowerLevel(db));
          return;
        }
        policyState = result.state;
        log.warn("power level changed", { from, to, cause, soc: reading.soc, changeId: change.id });
        await dispatchPowerEmergency(db, queues, change).catch((error) => log.error("power-emergency enqueue failed; the sweep will retry", { changeId: change.id, error: serializeError(error) }));
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
    onData: (bytes, at) => {
      if (decoder) {
        link.bytes(bytes.length, at);
        decoder.push(bytes, at);
        return;
      }
      // Our own requests echoed by the adapter are not the controller talking.
      const echoed = modbus!.stats.echoBytes;
      modbus!.feed(bytes);
      link.bytes(bytes.length - (modbus!.stats.echoBytes - echoed), at);
    },
    onExit: (exit: BridgeExit) => {
      dirty = true;
      if (exit.message !== recordedBridgeFailure) {
        recordedBridgeFailure = exit.message;
        event({
          at: energyDate(Date.parse(exit.at)),
          kind: "bridge_failed",
          severity: "warning",
          message: `Serial bridge stopped: ${exit.message}`,
          details: { code: exit.code, restartInMs: exit.nextDelayMs },
        });
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
    pollLoop = runEpeverPoller({
      client: modbus,
      bridge,
      unitId: energy.modbus.unitId,
      pollMs: energy.modbus.pollMs,
      nominalVoltage: energy.battery.nominalVoltage,
      log,
      stopped: () => stopped,
      onReading,
      onPollFailed: () => {
        dropReasons.poll++;
        dirty = true;
      },
      onCutoffs: (read) => {
        cutoffs = read;
        dirty = true;
        checkAlignment();
      },
    });
  }

  const framesDropped = () => Object.values(dropReasons).reduce((a, b) => a + b, 0);
  const readingsRejected = () => Object.values(rejected).reduce((a, b) => a + b, 0);
  const saveState = () =>
    saveMonitorState(db, {
      protocol,
      startedAt,
      updatedAt: new Date(),
      telemetry: link.snapshot().state,
      lastReadingAt: lastValidAt === null ? null : new Date(lastValidAt),
      lastReading,
      framesDecoded,
      framesDropped: framesDropped(),
      bridgeState: bridge.status.state,
      bridgeRestarts: bridge.status.restarts,
      lastBridgeExit: bridge.status.lastExit && { code: bridge.status.lastExit.code, message: bridge.status.lastExit.message, at: bridge.status.lastExit.at },
      link: linkView(link.snapshot(), energy.telemetryTimeoutMs, (ms) => energyDate(ms).toISOString()),
      rejections: { ...dropReasons, ...rejected },
      clock: clock.spec,
      controllerSettings: cutoffs ? { cutoffs, alignment } : null,
      forecast: lookahead.summary ? { ...lookahead.summary, floor: lookahead.floor } : null,
    });

  await redispatchPendingChanges(db, queues).catch((error) => log.error("power-emergency sweep failed", { error: serializeError(error) }));
  await saveState();
  bridge.start();
  log.info("hardware monitor started", { protocol, port, baud: energy.serial.baud, powerLevel: policyState.level, clockSpeed: clock.speed });

  const timers: Timer[] = [];
  const watchdogMs = Math.max(50, Math.min(1000, energy.telemetryTimeoutMs / 4));
  timers.push(
    setInterval(() => {
      const now = Date.now();
      store(sampler.flushIfDue(clock.fromReal(now)));
      linkChanged(now);
    }, watchdogMs),
    setInterval(() => {
      if (!dirty) return;
      dirty = false;
      enqueue("saving the monitor state", saveState);
    }, STATE_SAVE_MS),
    setInterval(
      () =>
        enqueue("reloading the power policy", async () => {
          policy = (await getPowerPolicy(db)).policy;
          checkAlignment();
        }),
      POLICY_REFRESH_MS,
    ),
    setInterval(() => enqueue("re-dispatching power-emergency jobs", () => redispatchPendingChanges(db, queues)), SWEEP_MS),
    setInterval(() => enqueue("pruning old readings", () => pruneReadings(db, new Date(clock.now() - energy.retentionDays * 86_400_000))), PRUNE_MS),
  );

  return {
    clock,
    status: () => ({
      protocol,
      port: port!,
      telemetry: link.snapshot().state,
      lastReadingAt: lastValidAt === null ? null : new Date(lastValidAt),
      lastReading,
      framesDecoded,
      framesDropped: framesDropped(),
      dropReasons: { ...dropReasons },
      readingsRejected: readingsRejected(),
      rejected: { ...rejected },
      link: link.snapshot(),
      level: policyState.level,
      floor: lookahead.floor,
      forecast: lookahead.summary,
      cutoffs,
      alignment,
      clock: clock.spec,
      bridge: { ...bridge.status },
      modbus: modbus ? { ...modbus.stats } : null,
    }),
    killBridge: () => bridge.kill(),
    reloadPolicy: async () => {
      policy = (await getPowerPolicy(db)).policy;
      checkAlignment();
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
      await simulated?.close();
      log.info("hardware monitor stopped");
    },
  };
}
