import { mkdirSync } from "node:fs";
import { resolve } from "node:path";

export type PtyPair = {
  /** The end the (simulated) charge controller writes to. */
  device: string;
  /** The end the bridge opens, as it would open /dev/ttyUSB0. */
  host: string;
  close(): Promise<void>;
};

/**
 * A connected pair of pseudo-terminals from `socat`: bytes written to one end
 * come out of the other, both ways, through a real tty driver. This is how the
 * simulator stands in for a serial cable.
 */
export async function openPtyPair(dir: string, name = "tty", timeoutMs = 5000): Promise<PtyPair> {
  mkdirSync(dir, { recursive: true });
  const device = resolve(dir, `${name}-controller`);
  const host = resolve(dir, `${name}-host`);
  let proc: Bun.Subprocess<"ignore", "ignore", "pipe">;
  try {
    proc = Bun.spawn(["socat", "-d", "-d", `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${host}`], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  } catch (error) {
    throw new Error(`cannot start socat (install it: apt-get install socat): ${(error as Error).message}`);
  }
  const reader = proc.stderr.getReader();
  const decoder = new TextDecoder();
  let log = "";
  const ready = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`socat exited before the pty pair was ready: ${log.trim().split("\n").pop()}`);
      log += decoder.decode(value);
      if (log.includes("starting data transfer loop")) return;
    }
  })();
  let timer: Timer | undefined;
  try {
    await Promise.race([ready, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`socat did not open a pty pair within ${timeoutMs} ms`)), timeoutMs)))]);
  } catch (error) {
    proc.kill();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  // Keep draining socat's log so it never blocks on a full pipe.
  void (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {}
  })();
  return {
    device,
    host,
    async close() {
      proc.kill();
      await proc.exited;
    },
  };
}
