import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { BRIDGE_SCRIPT } from "../../hardware/bridge-process";
import type { PtyPair } from "../../hardware/pty-pair";
import { eventually } from "../harness/server";
import { openControllerEnd, openTestPtyPair } from "../harness/serial";

const root = resolve(import.meta.dir, "../..");
const spawnBridge = (args: string[]) => Bun.spawn(["node", BRIDGE_SCRIPT, ...args], { cwd: root, stdin: "pipe", stdout: "pipe", stderr: "pipe" });

let pair: PtyPair;
beforeAll(async () => {
  pair = await openTestPtyPair("bridge");
});
afterAll(() => pair.close());

describe("the serial bridge (Node + serialport)", () => {
  test("opens a real tty and pipes raw bytes both ways", async () => {
    const controller = openControllerEnd(pair.device);
    const bridge = spawnBridge(["--path", pair.host, "--baud", "19200"]);
    try {
      const stderr = bridge.stderr.getReader();
      const { value } = await stderr.read();
      expect(new TextDecoder().decode(value)).toContain(`sahary-bridge: opened ${pair.host} (19200 8N1)`);

      // Every byte value, including NUL, CR, LF and ':', crosses unchanged.
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      controller.write(all);
      const received: number[] = [];
      const reader = bridge.stdout.getReader();
      while (received.length < all.length) {
        const chunk = await reader.read();
        if (chunk.done) break;
        received.push(...chunk.value);
      }
      expect(Uint8Array.from(received)).toEqual(all);

      // And the other way: a Modbus request written to the bridge's stdin reaches the controller.
      const request = Uint8Array.from([0x01, 0x04, 0x31, 0x04, 0x00, 0x01, 0x7e, 0xf7]);
      bridge.stdin.write(request);
      await bridge.stdin.flush();
      const atController = await eventually(
        async () => controller.read(),
        (bytes) => bytes.length > 0,
        { what: "the request at the controller" },
      );
      expect(atController).toEqual(request);

      // Closing stdin is how the monitor asks it to stop: it closes the port and exits 0.
      bridge.stdin.end();
      expect(await bridge.exited).toBe(0);
    } finally {
      bridge.kill();
      controller.close();
    }
  });

  test("exits non-zero, naming the port and the reason, when the port cannot be opened", async () => {
    const bridge = spawnBridge(["--path", "/dev/ttySAHARY-missing", "--baud", "115200", "--parity", "even"]);
    expect(await bridge.exited).toBe(2);
    const message = await new Response(bridge.stderr).text();
    expect(message).toContain("sahary-bridge: cannot open serial port /dev/ttySAHARY-missing (115200 8E1)");
    expect(message).toContain("No such file or directory");
  });

  test("refuses a second bridge on a port already in use", async () => {
    const first = spawnBridge(["--path", pair.host]);
    try {
      await first.stderr.getReader().read();
      const second = spawnBridge(["--path", pair.host]);
      expect(await second.exited).toBe(2);
      expect(await new Response(second.stderr).text()).toContain(`cannot open serial port ${pair.host}`);
    } finally {
      first.kill();
      await first.exited;
    }
  });

  test("rejects bad arguments with usage (exit 64)", async () => {
    const noPort = spawnBridge([]);
    expect(await noPort.exited).toBe(64);
    expect(await new Response(noPort.stderr).text()).toContain("no serial port given (--path)");
    const badParity = spawnBridge(["--path", pair.host, "--parity", "mark"]);
    expect(await badParity.exited).toBe(64);
    expect(await new Response(badParity.stderr).text()).toContain("--parity must be one of none, even, odd");
  });

  test("exits 3 when the port goes away under it (adapter unplugged)", async () => {
    const doomed = await openTestPtyPair("unplug");
    const bridge = spawnBridge(["--path", doomed.host]);
    try {
      const stderr = bridge.stderr.getReader();
      await stderr.read();
      await doomed.close();
      expect(await bridge.exited).toBe(3);
      const rest = await stderr.read();
      expect(new TextDecoder().decode(rest.value)).toContain("(device disconnected)");
    } finally {
      bridge.kill();
    }
  });
});
