import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import type { Services } from "../../server/services";
import { testRun } from "../harness/env";
import { freePort, processEnv, projectRoot } from "../harness/process";
import { eventually, startTestServices } from "../harness/server";
import { resetEnergyState } from "../harness/serial";
import { createUserWithSession } from "../harness/users";

const root = projectRoot;
const env = (extra: Record<string, string>) => processEnv({ DATA_DIR: resolve(testRun.dataDir, "energy-processes"), ...extra });

let services: Services;
beforeAll(async () => {
  services = await startTestServices();
  await resetEnergyState(services.db);
});
afterAll(() => services.close());

describe("hardware entry points", () => {
  test("the all-in-one process runs the monitor when a simulator is configured, and stops it on SIGTERM", async () => {
    const port = await freePort();
    const { token } = await createUserWithSession(services);
    const child = Bun.spawn([process.execPath, "server/main.ts"], {
      cwd: root,
      env: env({ PORT: String(port), ENERGY_SIMULATOR: "sunny-day", ENERGY_SIMULATOR_SPEED: "60", ENERGY_SAMPLE_SECONDS: "1" }),
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const status = await eventually(
        () =>
          fetch(`http://127.0.0.1:${port}/trpc/energy.status`, { headers: { authorization: `Bearer ${token}` } }).then(
            (r) => r.json() as Promise<any>,
            () => null,
          ),
        (body) => body?.result?.data?.telemetry?.state === "ok",
        { timeoutMs: 20_000, intervalMs: 250, what: "energy.status to report live telemetry" },
      );
      expect(status.result.data.reading).toMatchObject({ socSource: "voltage", loadPower: expect.any(Number) });
      expect(status.result.data.telemetry.protocol).toBe("vedirect");
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      const lines = (await new Response(child.stdout).text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(lines.some((l) => l.msg === "hardware monitor started")).toBe(true);
      expect(lines.some((l) => l.msg === "hardware monitor stopped")).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
  }, 40_000);

  test("hardware/main.ts with nothing to monitor exits 1, saying what to configure", async () => {
    const child = Bun.spawn([process.execPath, "hardware/main.ts"], { cwd: root, env: env({}), stdout: "pipe", stderr: "pipe" });
    expect(await child.exited).toBe(1);
    expect(await new Response(child.stdout).text()).toContain("set SERIAL_PORT");
  }, 20_000);

  test("the API-only process never runs the monitor, even when one is configured", async () => {
    const port = await freePort();
    const child = Bun.spawn([process.execPath, "server/api.ts"], { cwd: root, env: env({ PORT: String(port), ENERGY_SIMULATOR: "sunny-day" }), stdout: "pipe", stderr: "pipe" });
    try {
      await eventually(
        () =>
          fetch(`http://127.0.0.1:${port}/health`).then(
            (r) => r.status,
            () => 0,
          ),
        (s) => s === 200,
        { timeoutMs: 20_000, what: "/health" },
      );
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      expect(await new Response(child.stdout).text()).not.toContain("hardware monitor");
    } finally {
      child.kill("SIGKILL");
    }
  }, 40_000);
});
