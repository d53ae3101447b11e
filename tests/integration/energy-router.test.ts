import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, energyPolicies } from "../../db/schema";
import { DEFAULT_POLICY, type PowerPolicy } from "../../hardware/policy";
import { emptyReading } from "../../hardware/protocols/reading";
import type { Actor, Scope } from "../../server/auth/actor";
import { systemActor } from "../../server/auth/actor";
import { AppError, type AppErrorCode } from "../../server/errors";
import { recordEnergyEvent } from "../../server/energy/events";
import { currentPowerLevel, recordLevelChange } from "../../server/energy/power";
import { storeSample, type Sample } from "../../server/energy/readings";
import { sharedEnergyStatus } from "../../server/energy/status";
import { saveMonitorState } from "../../server/energy/telemetry";
import { appRouter } from "../../server/router";
import { createCallerFactory } from "../../server/trpc";
import { expectAppError } from "../harness/expect";
import { resetEnergyState, saveLiveMonitor } from "../harness/serial";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
let customer: Awaited<ReturnType<typeof createUserWithSession>>;
let operator: Awaited<ReturnType<typeof createUserWithSession>>;
let admin: Awaited<ReturnType<typeof createUserWithSession>>;
let suspended: Awaited<ReturnType<typeof createUserWithSession>>;

beforeAll(async () => {
  app = await startTestServer({ env: { ENERGY_GRID_CO2_G_PER_KWH: "500", BATTERY_CAPACITY_AH: "200", ENERGY_SAMPLE_SECONDS: "10" } });
  customer = await createUserWithSession(app.services, { role: "customer" });
  operator = await createUserWithSession(app.services, { role: "operator" });
  admin = await createUserWithSession(app.services, { role: "admin" });
  suspended = await createUserWithSession(app.services, { role: "admin", status: "suspended" });
});
afterAll(async () => {
  // The power level is platform-wide: leave it at normal for the other files.
  await resetEnergyState(app.services.db);
  await app.close();
});
beforeEach(() => resetEnergyState(app.services.db));

const db = () => app.services.db;
const HOUR = 3_600_000;

/** A caller acting through an API key (keys are issued by the auth module; here the actor is built directly). */
function apiKeyCaller(user: { id: string; email: string; name: string; role: "customer" | "operator" | "admin" }, scopes: Scope[]) {
  const actor: Actor = { kind: "apiKey", apiKeyId: crypto.randomUUID(), scopes, user: { ...user, status: "active", emailVerifiedAt: new Date() } as never };
  return createCallerFactory(appRouter)({ ...app.services, actor, request: { requestId: "test", ip: null, userAgent: null }, resHeaders: new Headers() });
}

async function expectCallerError(call: Promise<unknown>, code: AppErrorCode) {
  const error = await call.then(
    () => null,
    (e) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).appCode).toBe(code);
}

function sample(at: Date, over: Partial<Sample> = {}): Sample {
  return {
    at,
    seconds: 10,
    samples: 10,
    source: "vedirect",
    ...emptyReading(),
    socMin: null,
    socMax: null,
    pvPowerMax: null,
    pvWh: 0,
    loadWh: 0,
    batteryInWh: 0,
    batteryOutWh: 0,
    ...over,
  };
}

const client = (token?: string) => app.client(token ? { token } : {});

describe("who may call the energy procedures", () => {
  const reads = [
    ["status", (c: ReturnType<typeof client>) => c.energy.status.query()],
    ["history", (c: ReturnType<typeof client>) => c.energy.history.query({})],
    ["stats", (c: ReturnType<typeof client>) => c.energy.stats.query({ period: "day" })],
    ["forecast", (c: ReturnType<typeof client>) => c.energy.forecast.query()],
  ] as const;

  for (const [name, call] of reads) {
    test(`energy.${name}: any signed-in user; not anonymous, not suspended`, async () => {
      await expectAppError(call(client()), "UNAUTHENTICATED");
      await expectAppError(call(client(suspended.token)), "ACCOUNT_SUSPENDED");
      expect(await call(client(customer.token))).toBeTruthy();
      expect(await call(client(operator.token))).toBeTruthy();
    });

    test(`energy.${name}: API keys need the energy:read scope`, async () => {
      const procedures = {
        status: (c: any) => c.energy.status(),
        history: (c: any) => c.energy.history({}),
        stats: (c: any) => c.energy.stats({ period: "day" }),
        forecast: (c: any) => c.energy.forecast(),
      };
      const procedure = procedures[name];
      await expectCallerError(procedure(apiKeyCaller(customer.user, ["compute:read"])), "INSUFFICIENT_SCOPE");
      expect(await procedure(apiKeyCaller(customer.user, ["energy:read"]))).toBeTruthy();
    });
  }

  test("energy.events: operators and admins; customers are refused", async () => {
    await expectAppError(client().energy.events.query({}), "UNAUTHENTICATED");
    await expectAppError(client(customer.token).energy.events.query({}), "FORBIDDEN");
    expect(await client(operator.token).energy.events.query({})).toEqual({ items: [], nextCursor: null });
    expect(await client(admin.token).energy.events.query({})).toEqual({ items: [], nextCursor: null });
    await expectCallerError(apiKeyCaller(operator.user, ["compute:read"]).energy.events({}), "INSUFFICIENT_SCOPE");
    await expectCallerError(apiKeyCaller(customer.user, ["energy:read"]).energy.events({}), "FORBIDDEN");
    expect(await apiKeyCaller(operator.user, ["energy:read"]).energy.events({})).toEqual({ items: [], nextCursor: null });
  });

  test("energy.policy.get: admins only", async () => {
    await expectAppError(client().energy.policy.get.query(), "UNAUTHENTICATED");
    await expectAppError(client(customer.token).energy.policy.get.query(), "FORBIDDEN");
    await expectAppError(client(operator.token).energy.policy.get.query(), "FORBIDDEN");
    expect(await client(admin.token).energy.policy.get.query()).toMatchObject(DEFAULT_POLICY);
    await expectCallerError(apiKeyCaller(operator.user, ["energy:read"]).energy.policy.get(), "INSUFFICIENT_SCOPE");
    await expectCallerError(apiKeyCaller(admin.user, ["energy:read"]).energy.policy.get(), "INSUFFICIENT_SCOPE");
  });

  test("energy.policy.update: admins only, never with an API key", async () => {
    const p = { ...DEFAULT_POLICY, hysteresis: 4 };
    await expectAppError(client().energy.policy.update.mutate(p), "UNAUTHENTICATED");
    await expectAppError(client(customer.token).energy.policy.update.mutate(p), "FORBIDDEN");
    await expectAppError(client(operator.token).energy.policy.update.mutate(p), "FORBIDDEN");
    await expectAppError(client(suspended.token).energy.policy.update.mutate(p), "ACCOUNT_SUSPENDED");
    await expectCallerError(apiKeyCaller(admin.user, ["energy:read"]).energy.policy.update(p), "INSUFFICIENT_SCOPE");
    expect(await db().select().from(energyPolicies)).toHaveLength(0);
  });
});

describe("energy.policy", () => {
  test("the built-in default applies until an admin saves one", async () => {
    expect(await client(admin.token).energy.policy.get.query()).toEqual({ ...DEFAULT_POLICY, updatedAt: null, updatedBy: null });
  });

  test("an update replaces the policy, is attributed to the admin and audited with before and after", async () => {
    const next: PowerPolicy = { thresholds: { conserve: 60, critical: 35, shutdown: 20 }, hysteresis: 3, dwellSeconds: 45, recoveryDwellSeconds: 600 };
    const saved = await client(admin.token).energy.policy.update.mutate(next);
    expect(saved).toMatchObject({ ...next, updatedBy: admin.user.id });
    expect(await client(admin.token).energy.policy.get.query()).toEqual(saved);
    const [audit] = await db()
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "energy.policy.updated"), eq(auditLog.actorId, admin.user.id)));
    expect(audit).toMatchObject({ actorType: "user", targetType: "energy_policy", metadata: { before: DEFAULT_POLICY, after: next } });
  });

  test("thresholds out of order are refused, naming the field, and nothing is written", async () => {
    const auditsBefore = (await db().select().from(auditLog).where(eq(auditLog.action, "energy.policy.updated"))).length;
    const error = await expectAppError(client(admin.token).energy.policy.update.mutate({ ...DEFAULT_POLICY, thresholds: { conserve: 30, critical: 40, shutdown: 10 } }), "VALIDATION_FAILED");
    expect(error.data?.issues).toContainEqual({ path: "thresholds", message: "thresholds must be ordered: 0 < shutdown < critical < conserve" });
    await expectAppError(client(admin.token).energy.policy.update.mutate({ ...DEFAULT_POLICY, dwellSeconds: -5 }), "VALIDATION_FAILED");
    expect(await db().select().from(energyPolicies)).toHaveLength(0);
    expect((await db().select().from(auditLog).where(eq(auditLog.action, "energy.policy.updated"))).length).toBe(auditsBefore);
  });
});

describe("energy.policy against the controller's cut-offs", () => {
  test("a shutdown below the controller's disconnect + margin is refused with the minimum; nothing is written", async () => {
    const now = new Date();
    const cutoffs = { source: "epever", lvd: 11.5, lvr: 12.6, uvWarning: 12, uvWarningRecover: 12.2, dischargeLimit: 10.6, tempCompMvPerCell: 3, batteryType: 1, capacityAh: 200, scaled: false };
    await saveMonitorState(db(), {
      protocol: "modbus",
      startedAt: now,
      updatedAt: now,
      telemetry: "ok",
      lastReadingAt: null,
      lastReading: null,
      framesDecoded: 0,
      framesDropped: 0,
      bridgeState: "running",
      bridgeRestarts: 0,
      controllerSettings: { cutoffs },
    });
    const error = await expectAppError(client(admin.token).energy.policy.update.mutate(DEFAULT_POLICY), "POLICY_BELOW_CUTOFF");
    expect(error.data.httpStatus).toBe(412);
    // 11.5 V + 0.27 V (3 mV/°C × 6 cells × 15 °C) + 0.2 V of sag, at rest.
    expect(error.data.details).toMatchObject({ field: "thresholds.shutdown", requiredVolts: 11.97, cutoffs: { lvd: 11.5 } });
    expect(error.message).toContain("11.5 V");
    expect(await db().select().from(energyPolicies)).toHaveLength(0);
    const minimum = (error.data.details as { minimumSoc: number }).minimumSoc;
    // Critical above the controller's own under-voltage warning (12.0 V + sag ≈ 57.2 %) too, so the policy is fully aligned.
    const saved = await client(admin.token).energy.policy.update.mutate({ ...DEFAULT_POLICY, thresholds: { conserve: 70, critical: 58, shutdown: minimum } });
    expect(saved.thresholds.shutdown).toBe(minimum);
    // The status shows the controller's cut-offs and how the policy sits against them.
    const status = await client(customer.token).energy.status.query();
    expect(status.controller).toMatchObject({ known: true, ok: true, cutoffs: { lvd: 11.5 }, margins: { temperatureVolts: 0.27, sagVolts: 0.2 } });
  });
});

describe("energy.status", () => {
  test("with no monitor ever run: level normal, telemetry unavailable, nothing estimated", async () => {
    const status = await client(customer.token).energy.status.query();
    expect(status).toMatchObject({
      level: { level: "normal", since: null, changeId: null },
      reading: null,
      telemetry: { state: "unavailable", lastReadingAt: null },
      battery: { chemistry: "lead-acid", nominalVoltage: 12, cells: 6, capacityAh: 200 },
      estimate: { trend: "unknown", minutesToEmpty: null, minutesToFull: null },
    });
  });

  test("reports the latest reading, the level, and time to empty from the averaged current", async () => {
    const now = Date.now();
    const soc = 60;
    const currents = [-9, -11, -10];
    for (const [i, current] of currents.entries()) {
      await storeSample(db(), sample(new Date(Math.floor((now - (3 - i) * 10_000) / 10_000) * 10_000), { batteryCurrent: current, batteryVoltage: 12.2, soc }));
    }
    const reading = { ...emptyReading(), at: new Date(now).toISOString(), batteryVoltage: 12.2, batteryCurrent: -10.4, soc, socSource: "voltage" as const };
    await saveLiveMonitor(db(), reading, { framesDecoded: 59, framesDropped: 1 });
    const change = await recordLevelChange(db(), { from: "normal", to: "conserve", at: new Date(now - 5000), soc: 49, reading: {}, policy: DEFAULT_POLICY });

    const status = await client(customer.token).energy.status.query();
    const averageCurrent = currents.reduce((a, b) => a + b, 0) / currents.length;
    expect(status.level).toEqual({ level: "conserve", since: change!.at.toISOString(), changeId: change!.id });
    expect(status.reading).toEqual(reading);
    expect(status.telemetry).toMatchObject({ state: "ok", protocol: "vedirect", framesDecoded: 59, framesDropped: 1, bridgeState: "running" });
    expect(status.estimate).toEqual({
      trend: "discharging",
      averageCurrent,
      minutesToEmpty: Math.round(((soc / 100) * 200 * 60) / -averageCurrent),
      minutesToShutdown: Math.round((((soc - DEFAULT_POLICY.thresholds.shutdown) / 100) * 200 * 60) / -averageCurrent),
      minutesToFull: null,
    });
  });

  test("a monitor whose last reading is older than the telemetry timeout reads as lost", async () => {
    const old = new Date(Date.now() - 10 * 60_000);
    await saveMonitorState(db(), {
      protocol: "modbus",
      startedAt: old,
      updatedAt: old,
      telemetry: "ok",
      lastReadingAt: old,
      lastReading: { ...emptyReading(), at: old.toISOString() },
      framesDecoded: 1,
      framesDropped: 0,
      bridgeState: "running",
      bridgeRestarts: 0,
    });
    const status = await client(customer.token).energy.status.query();
    expect(status.telemetry.state).toBe("lost");
    expect(status.estimate.trend).toBe("unknown");
  });
});

describe("energy.forecast", () => {
  test("without a reading there is nothing to forecast from, and it says why", async () => {
    expect(await client(customer.token).energy.forecast.query()).toEqual({ forecast: null, trajectory: [], reason: "telemetry is unavailable" });
  });

  test("from the latest reading: time to each threshold with its band, and the hourly trajectory", async () => {
    const now = Date.now();
    // 60 % of 200 Ah × 12 V under 100 W, no history: 10 points (240 Wh) to conserve take 2.4 h.
    const reading = { ...emptyReading(), at: new Date(now).toISOString(), batteryVoltage: 12.2, batteryCurrent: -8.2, soc: 60, socSource: "controller" as const, loadPower: 100, pvPower: 0 };
    await saveLiveMonitor(db(), reading, { framesDecoded: 10 });
    const { forecast, trajectory, reason } = await client(customer.token).energy.forecast.query();
    expect(reason).toBeNull();
    expect(forecast).toMatchObject({ soc: 60, horizonHours: 48, capacityWh: { rated: 2400, estimated: null, used: 2400 }, historyDays: 0, clearSkyIndex: null });
    expect(forecast!.thresholds.conserve!.minutes).toEqual({ expected: 144, earliest: 144, latest: 144 });
    expect(forecast!.thresholds.critical!.minutes.expected).toBe(432);
    expect(forecast!.thresholds.shutdown!.minutes.expected).toBe(648);
    expect(forecast!.thresholds.cutoff).toBeUndefined();
    expect(trajectory[0]).toMatchObject({ expected: 60, pessimistic: 60, optimistic: 60 });
    expect(trajectory.length).toBeGreaterThanOrEqual(48);
    expect(trajectory.at(-1)!.expected).toBe(0);
    // energy.status carries the same forecast.
    const status = await client(customer.token).energy.status.query();
    expect(status.forecast!.thresholds.conserve!.minutes.expected).toBe(144);
    expect(status.forecast!.floor).toBe("normal");
  });
});

describe("energy.history and energy.stats", () => {
  /** Three hours of windows, every 10 minutes, with known energies. */
  async function seedThreeHours() {
    const firstHour = Math.floor(Date.now() / HOUR) * HOUR - 3 * HOUR;
    const windows: Sample[] = [];
    for (let i = 0; i < 18; i++) {
      const hourIndex = Math.floor(i / 6);
      windows.push(
        sample(new Date(firstHour + i * 10 * 60_000), {
          pvPower: 100 * (hourIndex + 1),
          pvPowerMax: 120 * (hourIndex + 1),
          loadPower: 60,
          batteryVoltage: 12 + hourIndex * 0.1,
          soc: 40 + i,
          socMin: 40 + i - 0.5,
          socMax: 40 + i + 0.5,
          pvWh: 100 * (hourIndex + 1) * (10 / 3600),
          loadWh: 60 * (10 / 3600),
          batteryInWh: 30 * (10 / 3600),
          batteryOutWh: 5 * (10 / 3600),
        }),
      );
    }
    for (const w of windows) await storeSample(db(), w);
    return { firstHour, windows };
  }

  test("sample resolution returns the stored windows; hour and day resolutions aggregate them exactly", async () => {
    const { firstHour, windows } = await seedThreeHours();
    const from = new Date(firstHour).toISOString();
    const to = new Date(firstHour + 3 * HOUR).toISOString();
    const c = client(customer.token);

    const samples = await c.energy.history.query({ from, to, resolution: "sample" });
    expect(samples.resolution).toBe("sample");
    expect(samples.points.map((p) => p.at)).toEqual(windows.map((w) => w.at.toISOString()));
    expect(samples.points[7]).toMatchObject({ pvPower: 200, loadPower: 60, soc: 47, socMin: 46.5 });

    const hours = await c.energy.history.query({ from, to, resolution: "hour" });
    expect(hours.points).toHaveLength(3);
    for (const [h, point] of hours.points.entries()) {
      const inHour = windows.slice(h * 6, h * 6 + 6);
      const sum = (f: (w: Sample) => number) => inHour.reduce((a, w) => a + f(w), 0);
      expect(point.at).toBe(new Date(firstHour + h * HOUR).toISOString());
      expect(point.pvWh).toBeCloseTo(
        sum((w) => w.pvWh),
        3,
      );
      expect(point.loadWh).toBeCloseTo(
        sum((w) => w.loadWh),
        3,
      );
      expect(point.pvPower).toBeCloseTo((sum((w) => w.pvWh) * 3600) / sum((w) => w.seconds), 1);
      expect(point.pvPowerMax).toBe(Math.max(...inHour.map((w) => w.pvPowerMax!)));
      expect(point.soc).toBeCloseTo(sum((w) => w.soc!) / 6, 1);
      expect(point.socMin).toBe(Math.min(...inHour.map((w) => w.socMin!)));
      expect(point.socMax).toBe(Math.max(...inHour.map((w) => w.socMax!)));
      expect(point.batteryVoltage).toBeCloseTo(inHour[0]!.batteryVoltage!, 3);
    }

    const days = await c.energy.history.query({ from: new Date(firstHour - 2 * 24 * HOUR).toISOString(), to, resolution: "day" });
    const totalPv = windows.reduce((a, w) => a + w.pvWh, 0);
    expect(days.points.reduce((a, p) => a + p.pvWh, 0)).toBeCloseTo(totalPv, 3);
    for (const p of days.points) expect(new Date(p.at).getUTCHours()).toBe(0);
  });

  test("auto picks the finest resolution that fits; an oversized or inverted range is refused", async () => {
    const c = client(customer.token);
    const now = Date.now();
    expect((await c.energy.history.query({ from: new Date(now - HOUR).toISOString(), to: new Date(now).toISOString() })).resolution).toBe("sample");
    expect((await c.energy.history.query({ from: new Date(now - 30 * 24 * HOUR).toISOString(), to: new Date(now).toISOString() })).resolution).toBe("hour");
    expect((await c.energy.history.query({ from: new Date(now - 3 * 365 * 24 * HOUR).toISOString(), to: new Date(now).toISOString() })).resolution).toBe("day");
    await expectAppError(c.energy.history.query({ from: new Date(now - 30 * 24 * HOUR).toISOString(), to: new Date(now).toISOString(), resolution: "sample" }), "VALIDATION_FAILED");
    await expectAppError(c.energy.history.query({ from: new Date(now).toISOString(), to: new Date(now - HOUR).toISOString() }), "VALIDATION_FAILED");
    await expectAppError(c.energy.history.query({ from: "yesterday" }), "VALIDATION_FAILED");
  });

  test("stats: solar and load energy, efficiency, CO2 avoided at the configured grid factor, coverage", async () => {
    const { windows } = await seedThreeHours();
    const stats = await client(customer.token).energy.stats.query({ period: "day" });
    const sum = (f: (w: Sample) => number) => windows.reduce((a, w) => a + f(w), 0);
    const pvWh = sum((w) => w.pvWh);
    const loadWh = sum((w) => w.loadWh);
    const inWh = sum((w) => w.batteryInWh);
    const outWh = sum((w) => w.batteryOutWh);
    expect(stats.period).toBe("day");
    expect(stats.solarKwh).toBeCloseTo(pvWh / 1000, 3);
    expect(stats.loadKwh).toBeCloseTo(loadWh / 1000, 3);
    expect(stats.efficiency!).toBeCloseTo((loadWh + inWh - outWh) / pvWh, 3);
    expect(stats.co2AvoidedKg).toBeCloseTo((pvWh / 1000) * 0.5, 3);
    expect(stats.gridCo2GramsPerKwh).toBe(500);
    expect(stats.coverage).toBeCloseTo(sum((w) => w.seconds) / 86_400, 3);
    expect(new Date(stats.to).getTime() - new Date(stats.from).getTime()).toBe(24 * HOUR);
  });

  test("stats of a period without data are zero, with no efficiency", async () => {
    expect(await client(customer.token).energy.stats.query({ period: "year" })).toMatchObject({ solarKwh: 0, loadKwh: 0, efficiency: null, co2AvoidedKg: 0, coverage: 0 });
    await expectAppError(client(customer.token).energy.stats.query({ period: "fortnight" as never }), "VALIDATION_FAILED");
  });
});

describe("energy.events", () => {
  test("newest first, paged with an opaque cursor", async () => {
    const base = Date.now() - 60_000;
    for (let i = 0; i < 5; i++) {
      await recordEnergyEvent(db(), { at: new Date(base + i * 1000), kind: i % 2 ? "telemetry_restored" : "telemetry_lost", severity: i % 2 ? "info" : "critical", message: `event ${i}` });
    }
    const c = client(operator.token);
    const first = await c.energy.events.query({ limit: 2 });
    expect(first.items.map((e) => e.message)).toEqual(["event 4", "event 3"]);
    const second = await c.energy.events.query({ limit: 2, cursor: first.nextCursor! });
    expect(second.items.map((e) => e.message)).toEqual(["event 2", "event 1"]);
    const third = await c.energy.events.query({ limit: 2, cursor: second.nextCursor! });
    expect(third.items.map((e) => e.message)).toEqual(["event 0"]);
    expect(third.nextCursor).toBeNull();
    expect(first.items[0]).toMatchObject({ kind: "telemetry_lost", severity: "critical", levelChangeId: null });
    await expectAppError(c.energy.events.query({ cursor: "not-a-cursor" }), "VALIDATION_FAILED");
    await expectAppError(c.energy.events.query({ limit: 1000 }), "VALIDATION_FAILED");
  });

  test("a level change appears as an event linked to the change", async () => {
    const change = await recordLevelChange(db(), { from: "normal", to: "critical", at: new Date(), soc: 22.5, reading: { soc: 22.5 }, policy: DEFAULT_POLICY });
    const { items } = await client(admin.token).energy.events.query({});
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ kind: "level_changed", severity: "critical", levelChangeId: change!.id, message: "Power level normal → critical at SOC 22.5 %" });
  });
});

describe("the power level service (compute's admission check)", () => {
  test("currentPowerLevel is normal until a change is recorded, then the latest change's level", async () => {
    expect(await currentPowerLevel(db())).toBe("normal");
    await recordLevelChange(db(), { from: "normal", to: "conserve", at: new Date(), soc: 45, reading: {}, policy: DEFAULT_POLICY });
    expect(await currentPowerLevel(db())).toBe("conserve");
  });

  test("a change from a level that is no longer current is refused; racing writers record it once", async () => {
    const input = { from: "normal", to: "critical", at: new Date(), soc: 25, reading: {}, policy: DEFAULT_POLICY } as const;
    const results = await Promise.all([recordLevelChange(db(), input), recordLevelChange(db(), input), recordLevelChange(db(), input)]);
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await recordLevelChange(db(), input)).toBeNull();
    expect(await currentPowerLevel(db())).toBe("critical");
  });

  test("the system actor can save a policy too (audited without a user)", async () => {
    const saved = await import("../../server/energy/policy").then((m) => m.updatePowerPolicy(db(), { actor: systemActor("ops-script") }, DEFAULT_POLICY));
    expect(saved.updatedBy).toBeNull();
    const rows = await db()
      .select()
      .from(auditLog)
      .where(eq(auditLog.targetId, (await db().select().from(energyPolicies))[0]!.id));
    expect(rows[0]).toMatchObject({ actorType: "system", metadata: { system: "ops-script" } });
  });
});

describe("energy.status under many callers", () => {
  test("callers asking at the same time share one computation; a caller after it gets a fresh one", async () => {
    const { db, config } = app.services;
    const together = await Promise.all(Array.from({ length: 20 }, () => sharedEnergyStatus(db, config.energy)));
    expect(new Set(together).size).toBe(1);
    // The shared answer is the full status, not a placeholder.
    expect(together[0]!.level.level).toBe(await currentPowerLevel(db));
    const later = await sharedEnergyStatus(db, config.energy);
    expect(later).not.toBe(together[0]);
    expect(later.level).toEqual(together[0]!.level);
  });
});
