import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { instances } from "../../db/schema";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { emptyReading } from "../../hardware/protocols/reading";
import { POWER_EMERGENCY_REASON } from "../../server/compute/states";
import { recordLevelChange } from "../../server/energy/power";
import { storeSample } from "../../server/energy/readings";
import { wantsJson } from "../../server/status/http";
import { seedInstance } from "../harness/billing";
import { retireOtherInstances } from "../harness/compute";
import { resetEnergyState, saveLiveMonitor } from "../harness/serial";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer({ env: { BATTERY_CAPACITY_AH: "100" } });
  await retireOtherInstances(app.services);
  await resetEnergyState(app.services.db);
});
afterAll(async () => {
  await resetEnergyState(app.services.db);
  await app.close();
});

const page = (accept?: string) => fetch(`${app.url}/status`, { headers: accept ? { accept } : {} });

describe("the public status page", () => {
  test("with no controller yet: an honest page, readable on a phone, with no external assets", async () => {
    const response = await page("text/html");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/html");
    const html = await response.text();
    expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(html).toContain("No forecast: the charge controller is not reporting.");
    // Nothing fetched from elsewhere, nothing to execute; light.
    expect(html).not.toMatch(/<script|<link|<img|src=|@import|url\(/i);
    expect(html.length).toBeLessThan(8000);
  });

  test("battery, power level, solar today, forecast and the instances held, in HTML and as JSON — and nothing about any tenant", async () => {
    const now = Date.now();
    const today = Math.floor(now / 86_400_000) * 86_400_000;
    // Two hours of sun today: 1.5 kWh.
    for (const hour of [1, 2]) {
      await storeSample(app.services.db, {
        at: new Date(today + hour * 3_600_000),
        seconds: 3600,
        samples: 360,
        source: "vedirect",
        ...emptyReading(),
        socMin: null,
        socMax: null,
        pvPowerMax: 800,
        pvWh: 750,
        loadWh: 100,
        batteryInWh: 600,
        batteryOutWh: 0,
      });
    }
    const reading = { ...emptyReading(), at: new Date(now).toISOString(), batteryVoltage: 12.1, batteryCurrent: -6.5, soc: 28.4, socSource: "voltage" as const, loadPower: 78.6, pvPower: 0 };
    await saveLiveMonitor(app.services.db, reading);
    await recordLevelChange(app.services.db, { from: "normal", to: "critical", at: new Date(now - 60_000), soc: 28.9, reading: {}, policy: DEFAULT_POLICY });
    const owner = await createUserWithSession(app.services, { name: "Ada Secret" });
    const held = [await seedInstance(app.services, owner.user.id, { name: "private-batch" }), await seedInstance(app.services, owner.user.id, { name: "private-crawler" })];
    await app.services.db.update(instances).set({ state: "paused", stateReason: POWER_EMERGENCY_REASON }).where(eq(instances.id, held[0]!.id));
    await app.services.db.update(instances).set({ state: "stopped", stateReason: POWER_EMERGENCY_REASON }).where(eq(instances.id, held[1]!.id));

    // The page is computed at most every 5 s, whoever asks: the first test's answer may still be served.
    const json = await eventually(
      async () => (await (await page("application/json")).json()) as { level: string; forecast: { next: { inMinutes: number } } } & Record<string, unknown>,
      (j) => j.level === "critical",
      { timeoutMs: 15_000, intervalMs: 500, what: "the cached status to expire" },
    );
    expect(json).toMatchObject({
      level: "critical",
      telemetry: "ok",
      battery: { soc: 28.4, voltage: 12.1, trend: "discharging" },
      power: { solarW: 0, loadW: 78.6 },
      solarTodayKwh: 1.5,
      instances: { paused: 1, stopped: 1, throttled: 0 },
    });
    // 28.4 % of 1200 Wh, drawing ~80–100 W: the next threshold down is shutdown, within hours.
    expect(json.forecast.next).toMatchObject({ level: "shutdown", belowSoc: 15 });
    expect(json.forecast.next.inMinutes).toBeGreaterThan(60);
    expect(json.forecast.next.inMinutes).toBeLessThan(4 * 60);

    const html = await (await page()).text();
    expect(html).toContain("28.4 %");
    expect(html).toContain("Critical");
    expect(html).toContain("1.50 kWh");
    expect(html).toContain("2 paused or stopped");
    expect(html).toContain("Expected to fall below 15 % — power level shutdown — in about");
    // The battery meter is the page: filled to the state of charge.
    expect(html).toContain("#fff3c4 28.4%");

    for (const secret of [owner.user.id, owner.user.email, "Ada Secret", ...held.flatMap((i) => [i.id, i.name])]) {
      expect(JSON.stringify(json)).not.toContain(secret);
      expect(html).not.toContain(secret);
    }
  });

  test("JSON only when asked for ahead of HTML; cached briefly for everyone", async () => {
    expect(wantsJson("application/json")).toBe(true);
    expect(wantsJson("application/json, text/html;q=0.5")).toBe(true);
    expect(wantsJson("text/html,application/xhtml+xml,application/json;q=0.9")).toBe(false);
    expect(wantsJson("*/*")).toBe(false);
    expect(wantsJson(undefined)).toBe(false);
    const response = await page("application/json");
    expect(response.headers.get("cache-control")).toBe("public, max-age=5");
    expect(response.headers.get("vary")?.toLowerCase()).toContain("accept");
  });

  test("turned off by configuration it is simply not there", async () => {
    const off = await startTestServer({ env: { STATUS_PAGE_ENABLED: "false" } });
    try {
      const response = await fetch(`${off.url}/status`);
      expect(response.status).toBe(404);
      expect(((await response.json()) as { error: { data: { appCode: string } } }).error.data.appCode).toBe("NOT_FOUND");
    } finally {
      await off.close();
    }
  });
});
