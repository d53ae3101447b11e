import { resolve } from "node:path";
import type { Subprocess } from "bun";
import type { Logger } from "../server/log";

export const BRIDGE_SCRIPT = resolve(import.meta.dir, "bridge.mjs");

export type BridgeOptions = {
  nodeBin: string;
  port: string;
  baud: number;
  parity: "none" | "even" | "odd";
  restartMinMs: number;
  restartMaxMs: number;
  /** A bridge that ran this long before dying restarts after the minimum delay again. */
  stableMs?: number;
  log: Logger;
  onData: (bytes: Uint8Array, at: number) => void;
  /** Called when a bridge exits; `message` is its last stderr line. */
  onExit?: (exit: BridgeExit) => void;
};

export type BridgeExit = { code: number | null; message: string; at: string; uptimeMs: number; nextDelayMs: number };

export type BridgeStatus = {
  /** starting: spawned, port not open yet; running: port open; backoff: waiting to restart. */
  state: "starting" | "running" | "backoff" | "stopped";
  pid: number | null;
  restarts: number;
  lastExit: BridgeExit | null;
};

/**
 * Supervises the Node bridge: starts it, delivers its stdout bytes, writes to
 * its stdin, and restarts it when it dies — after a delay that doubles with
 * each quick failure (restartMinMs … restartMaxMs) and resets once a bridge
 * has stayed up.
 */
export class BridgeProcess {
  private proc: Subprocess<"pipe", "pipe", "pipe"> | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  private delayMs = 0;
  private loop: Promise<void> | null = null;
  readonly status: BridgeStatus = { state: "stopped", pid: null, restarts: 0, lastExit: null };

  constructor(private readonly opts: BridgeOptions) {}

  start(): void {
    this.stopped = false;
    this.loop ??= this.supervise();
  }

  write(bytes: Uint8Array): boolean {
    if (!this.proc || this.status.state !== "running") return false;
    this.proc.stdin.write(bytes);
    void this.proc.stdin.flush();
    return true;
  }

  /** Kills the running bridge (SIGKILL): the supervisor restarts it as if it had crashed. */
  kill(): void {
    this.proc?.kill("SIGKILL");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const proc = this.proc;
    if (proc) {
      // Closing stdin asks the bridge to close the port and exit; signals are the fallback.
      try {
        proc.stdin.end();
      } catch {}
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(2000).then(() => false)]);
      if (!exited) {
        proc.kill("SIGTERM");
        if (!(await Promise.race([proc.exited.then(() => true), Bun.sleep(1000).then(() => false)]))) proc.kill("SIGKILL");
      }
    }
    await this.loop;
    this.loop = null;
    this.status.state = "stopped";
    this.status.pid = null;
  }

  private async supervise(): Promise<void> {
    const { log } = this.opts;
    while (!this.stopped) {
      const started = Date.now();
      const { code, message } = await this.runOnce();
      if (this.stopped) break;
      const uptimeMs = Date.now() - started;
      this.delayMs = uptimeMs >= (this.opts.stableMs ?? 10_000) || this.delayMs === 0 ? this.opts.restartMinMs : Math.min(this.delayMs * 2, this.opts.restartMaxMs);
      const exit: BridgeExit = { code, message, at: new Date().toISOString(), uptimeMs, nextDelayMs: this.delayMs };
      this.status.lastExit = exit;
      this.status.state = "backoff";
      this.status.pid = null;
      log.warn("serial bridge exited; restarting", { code, message, uptimeMs, restartInMs: this.delayMs });
      this.opts.onExit?.(exit);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.delayMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
      if (!this.stopped) this.status.restarts++;
    }
  }

  private async runOnce(): Promise<{ code: number | null; message: string }> {
    const { nodeBin, port, baud, parity, log } = this.opts;
    this.status.state = "starting";
    let proc: Subprocess<"pipe", "pipe", "pipe">;
    try {
      proc = Bun.spawn([nodeBin, BRIDGE_SCRIPT, "--path", port, "--baud", String(baud), "--parity", parity], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    } catch (error) {
      return { code: null, message: `cannot start the bridge with SERIAL_BRIDGE_NODE=${nodeBin}: ${(error as Error).message}` };
    }
    this.proc = proc;
    this.status.pid = proc.pid;

    let lastLine = "";
    const stderr = (async () => {
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of proc.stderr) {
        pending += decoder.decode(chunk, { stream: true });
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines.filter(Boolean)) {
          lastLine = line.replace(/^sahary-bridge: /, "");
          // The bridge announces the open port; only then is it worth writing to.
          if (lastLine.startsWith("opened ")) this.status.state = "running";
          log.info("serial bridge", { message: lastLine });
        }
      }
      if (pending.trim()) lastLine = pending.trim().replace(/^sahary-bridge: /, "");
    })();
    const stdout = (async () => {
      for await (const chunk of proc.stdout) this.opts.onData(chunk, Date.now());
    })();

    const code = await proc.exited;
    await Promise.allSettled([stdout, stderr]);
    this.proc = null;
    return { code, message: lastLine || `exited with code ${code}` };
  }
}
