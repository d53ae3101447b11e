import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Database } from "../../db/client";
import { energyAttributions, energyEvents, energyHourly, energyLevelChanges, energyMonitor, energyPolicies, energyReadings, usageEnergy } from "../../db/schema";
import { openPtyPair, type PtyPair } from "../../hardware/pty-pair";
import { type MonitorState, saveMonitorState } from "../../server/energy/telemetry";
import { testRun } from "./env";

const root = resolve(import.meta.dir, "../..");

/** A socat pty pair under this run's data folder: `device` for the controller side, `host` for the bridge. */
export function openTestPtyPair(name: string): Promise<PtyPair> {
  return openPtyPair(join(testRun.dataDir, "tty"), name);
}

/**
 * The controller's end of a pty, opened the way a device transmits: writes
 * never block (a full line drops bytes), reads poll without waiting.
 */
export function openControllerEnd(path: string) {
  const fd = openSync(path, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
  const buf = Buffer.alloc(4096);
  return {
    write(bytes: Uint8Array) {
      writeSync(fd, bytes);
    },
    /** Everything received so far. */
    read(): Uint8Array {
      const chunks: Buffer[] = [];
      for (;;) {
        try {
          const n = readSync(fd, buf, 0, buf.length, null);
          if (n <= 0) break;
          chunks.push(Buffer.from(buf.subarray(0, n)));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "EAGAIN") break;
          throw error;
        }
      }
      return new Uint8Array(Buffer.concat(chunks));
    },
    close: () => closeSync(fd),
  };
}

/** The command-line simulator (a separate process, as a developer runs it) on a tty. */
export function startSimulator(port: string, args: string[]) {
  const proc = Bun.spawn([process.execPath, join(root, "hardware/simulator/main.ts"), "--port", port, "--quiet", ...args], { cwd: root, stdout: "ignore", stderr: "pipe" });
  return {
    proc,
    /** Pull the cable: the simulator goes silent. */
    pull: () => proc.kill("SIGUSR1"),
    plug: () => proc.kill("SIGUSR2"),
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/** Energy state is platform-wide (one controller): each energy test file starts from none. */
export async function resetEnergyState(db: Database): Promise<void> {
  await db.delete(energyEvents);
  await db.delete(energyLevelChanges);
  await db.delete(energyReadings);
  await db.delete(energyHourly);
  await db.delete(energyPolicies);
  await db.delete(energyMonitor);
  await db.delete(energyAttributions);
  await db.delete(usageEnergy);
}

/**
 * Saves the monitor's state as a running VE.Direct monitor would, started a
 * minute before `reading` and healthy since; `over` changes the rest (counters).
 */
export function saveLiveMonitor(db: Database, reading: NonNullable<MonitorState["lastReading"]> & { at: string }, over: Partial<MonitorState> = {}): Promise<void> {
  const at = new Date(reading.at);
  return saveMonitorState(db, {
    protocol: "vedirect",
    startedAt: new Date(at.getTime() - 60_000),
    updatedAt: at,
    telemetry: "ok",
    lastReadingAt: at,
    lastReading: reading,
    framesDecoded: 60,
    framesDropped: 0,
    bridgeState: "running",
    bridgeRestarts: 0,
    ...over,
  });
}
