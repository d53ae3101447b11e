import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_POLICY } from "../../hardware/policy";
import { emptyReading } from "../../hardware/protocols/reading";
import { recordLevelChange } from "../../server/energy/power";
import { listProcedures } from "../../server/procedures";
import { appRouter } from "../../server/router";
import { QUEUE_NAMES } from "../../workers/queues";
import { seedInstance } from "../harness/billing";
import { projectRoot } from "../harness/process";
import { resetEnergyState, saveLiveMonitor } from "../harness/serial";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

type Sample = { name: string; labels: Record<string, string>; value: number };

/** The samples of a Prometheus text exposition. */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of match[2]?.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g) ?? []) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

async function scrape(app: TestServer, headers: Record<string, string> = {}) {
  const res = await fetch(`${app.url}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  const text = await res.text();
  return { text, samples: parse(text) };
}

let app: TestServer;
beforeAll(async () => {
  // No cache, so each scrape reads what the test just wrote.
  app = await startTestServer({ env: { METRICS_CACHE_MS: "0" } });
  await resetEnergyState(app.services.db);
});
afterAll(async () => {
  await resetEnergyState(app.services.db);
  await app.close();
});

describe("/metrics", () => {
  test("shows process metrics, HTTP metrics and every procedure of the router from the first scrape", async () => {
    const { text, samples } = await scrape(app);
    for (const family of ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "nodejs_eventloop_lag_seconds"]) {
      expect(value(samples, family)).toBeGreaterThanOrEqual(0);
    }
    for (const family of ["http_requests_total", "sahary_trpc_calls_total", "sahary_trpc_errors_total", "sahary_trpc_call_duration_seconds", "sahary_ingress_requests_total"]) {
      expect(text).toContain(`# TYPE ${family} `);
    }
    const procedures = listProcedures(appRouter);
    expect(procedures.length).toBeGreaterThan(40);
    for (const { path, type } of procedures) {
      expect(value(samples, "sahary_trpc_calls_total", { procedure: path, type, result: "ok" })).toBeGreaterThanOrEqual(0);
    }
  });

  test("counts each call of a batch under its own procedure, with errors by appCode and a latency histogram", async () => {
    const { user, token } = await createUserWithSession(app.services, { status: "active" });
    expect(user.id).toBeTruthy();
    const before = (await scrape(app)).samples;
    // One HTTP request, three calls: two succeed, one is refused.
    const input = encodeURIComponent(JSON.stringify({ 0: null, 1: null, 2: null }));
    const res = await fetch(`${app.url}/trpc/auth.me,compute.plans.list,admin.stats.overview?batch=1&input=${input}`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(207);
    const after = (await scrape(app)).samples;
    const delta = (name: string, labels: Record<string, string>) => (value(after, name, labels) ?? 0) - (value(before, name, labels) ?? 0);

    expect(delta("sahary_trpc_calls_total", { procedure: "auth.me", type: "query", result: "ok" })).toBe(1);
    expect(delta("sahary_trpc_calls_total", { procedure: "compute.plans.list", type: "query", result: "ok" })).toBe(1);
    expect(delta("sahary_trpc_calls_total", { procedure: "admin.stats.overview", type: "query", result: "error" })).toBe(1);
    expect(delta("sahary_trpc_errors_total", { procedure: "admin.stats.overview", app_code: "FORBIDDEN" })).toBe(1);
    for (const procedure of ["auth.me", "compute.plans.list", "admin.stats.overview"]) {
      expect(delta("sahary_trpc_call_duration_seconds_count", { procedure, type: "query" })).toBe(1);
      expect(delta("sahary_trpc_call_duration_seconds_bucket", { procedure, type: "query", le: "+Inf" })).toBe(1);
    }
  });

  test("counts errors raised before a procedure runs, and never turns a request path into a label", async () => {
    const before = (await scrape(app)).samples;
    await fetch(`${app.url}/trpc/auth.login`, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
    await fetch(`${app.url}/trpc/no.such.procedure-${crypto.randomUUID()}`);
    await fetch(`${app.url}/trpc/auth.me`); // anonymous: refused inside the procedure chain
    const { text, samples: after } = await scrape(app);
    const delta = (name: string, labels: Record<string, string>) => (value(after, name, labels) ?? 0) - (value(before, name, labels) ?? 0);
    expect(delta("sahary_trpc_errors_total", { procedure: "auth.login", app_code: "MALFORMED_REQUEST" })).toBe(1);
    expect(delta("sahary_trpc_errors_total", { procedure: "(unknown)", app_code: "PROCEDURE_NOT_FOUND" })).toBe(1);
    expect(delta("sahary_trpc_errors_total", { procedure: "auth.me", app_code: "UNAUTHENTICATED" })).toBe(1);
    expect(text).not.toContain("no.such.procedure");
  });

  test("shows every queue's depth, age, workers and pause state", async () => {
    await app.services.queues.queue("mail").add("sweep", {}, { jobId: `metrics-probe-${crypto.randomUUID()}` });
    const { samples } = await scrape(app);
    for (const queue of QUEUE_NAMES) {
      for (const state of ["waiting", "active", "delayed", "failed", "completed"]) expect(value(samples, "sahary_queue_jobs", { queue, state })).toBeGreaterThanOrEqual(0);
      for (const family of ["sahary_queue_oldest_waiting_seconds", "sahary_queue_paused", "sahary_queue_workers", "sahary_queue_stalled"])
        expect(value(samples, family, { queue })).toBeGreaterThanOrEqual(0);
    }
    expect(value(samples, "sahary_queue_jobs", { queue: "mail", state: "waiting" })).toBeGreaterThanOrEqual(1);
    expect(value(samples, "sahary_metrics_source_up", { source: "queues" })).toBe(1);
    await app.services.queues.queue("mail").drain();
  });

  test("shows instances by state and priority (deleted ones left out)", async () => {
    const { user } = await createUserWithSession(app.services);
    const before = (await scrape(app)).samples;
    await seedInstance(app.services, user.id, { state: "running", priority: "critical" });
    await seedInstance(app.services, user.id, { state: "running", priority: "critical" });
    await seedInstance(app.services, user.id, { state: "paused", priority: "interruptible" });
    await seedInstance(app.services, user.id, { state: "deleted" });
    const after = (await scrape(app)).samples;
    const delta = (labels: Record<string, string>) => (value(after, "sahary_instances", labels) ?? 0) - (value(before, "sahary_instances", labels) ?? 0);
    expect(delta({ state: "running", priority: "critical" })).toBe(2);
    expect(delta({ state: "paused", priority: "interruptible" })).toBe(1);
    expect(value(after, "sahary_instances", { state: "error", priority: "standard" })).toBe(0);
    expect(after.some((s) => s.name === "sahary_instances" && s.labels.state === "deleted")).toBe(false);
  });

  test("shows power level, battery and telemetry from the monitor's published state", async () => {
    const db = app.services.db;
    let samples = (await scrape(app)).samples;
    // No monitor has ever run: telemetry unavailable, level normal, no battery figures (absent, not zero).
    expect(value(samples, "sahary_telemetry_state", { state: "unavailable" })).toBe(1);
    expect(value(samples, "sahary_power_level", { level: "normal" })).toBe(1);
    expect(value(samples, "sahary_battery_soc_percent")).toBeUndefined();
    expect(value(samples, "sahary_telemetry_frames_decoded_total")).toBeUndefined();

    const now = Date.now();
    await saveLiveMonitor(
      db,
      { ...emptyReading(), at: new Date(now).toISOString(), batteryVoltage: 12.4, batteryCurrent: -3.5, soc: 47.5, pvPower: 120, loadPower: 80 },
      { framesDecoded: 59, framesDropped: 2, bridgeRestarts: 1 },
    );
    await recordLevelChange(db, { from: "normal", to: "conserve", at: new Date(now - 1000), soc: 47.5, reading: {}, policy: DEFAULT_POLICY });
    samples = (await scrape(app)).samples;
    expect(value(samples, "sahary_power_level", { level: "conserve" })).toBe(1);
    expect(value(samples, "sahary_power_level", { level: "normal" })).toBe(0);
    expect(value(samples, "sahary_telemetry_state", { state: "ok" })).toBe(1);
    expect(value(samples, "sahary_telemetry_state", { state: "unavailable" })).toBe(0);
    expect(value(samples, "sahary_battery_soc_percent")).toBe(47.5);
    expect(value(samples, "sahary_battery_voltage_volts")).toBe(12.4);
    expect(value(samples, "sahary_battery_current_amperes")).toBe(-3.5);
    expect(value(samples, "sahary_pv_power_watts")).toBe(120);
    expect(value(samples, "sahary_load_power_watts")).toBe(80);
    expect(value(samples, "sahary_telemetry_frames_decoded_total")).toBe(59);
    expect(value(samples, "sahary_telemetry_frames_dropped_total")).toBe(2);
    expect(value(samples, "sahary_telemetry_bridge_restarts_total")).toBe(1);
    expect(value(samples, "sahary_telemetry_last_reading_age_seconds")).toBeLessThan(60);
  });
});

describe("scrape-time gauges are cheap and bounded", () => {
  test("they are read at most once per METRICS_CACHE_MS", async () => {
    const cached = await startTestServer({ env: { METRICS_CACHE_MS: "600000" } });
    try {
      const { user } = await createUserWithSession(cached.services);
      const before = value((await scrape(cached)).samples, "sahary_instances", { state: "stopped", priority: "standard" }) ?? 0;
      await seedInstance(cached.services, user.id, { state: "stopped" });
      // Within the cache window the figure is the cached one…
      expect(value((await scrape(cached)).samples, "sahary_instances", { state: "stopped", priority: "standard" })).toBe(before);
      // …while a server without a cache sees the new row.
      expect(value((await scrape(app)).samples, "sahary_instances", { state: "stopped", priority: "standard" })).toBeGreaterThanOrEqual(before + 1);
    } finally {
      await cached.close();
    }
  });

  test("a source that is down leaves its gauges absent, reports source_up 0, and /metrics still answers", async () => {
    const broken = await startTestServer({ env: { METRICS_CACHE_MS: "0" } });
    try {
      broken.services.redis.disconnect();
      const started = performance.now();
      const { samples } = await scrape(broken);
      expect(performance.now() - started).toBeLessThan(15_000);
      expect(value(samples, "sahary_metrics_source_up", { source: "queues" })).toBe(0);
      expect(value(samples, "sahary_metrics_source_up", { source: "instances" })).toBe(1);
      expect(samples.some((s) => s.name === "sahary_queue_jobs")).toBe(false);
      expect(value(samples, "sahary_instances", { state: "running", priority: "standard" })).toBeGreaterThanOrEqual(0);
    } finally {
      await broken.close();
    }
  });
});

describe("METRICS_TOKEN", () => {
  test("when set, /metrics answers only a scraper presenting it", async () => {
    const token = "scrape-token-0123456789abcdef";
    const guarded = await startTestServer({ env: { METRICS_TOKEN: token } });
    try {
      const anonymous = await fetch(`${guarded.url}/metrics`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get("www-authenticate")).toContain("Bearer");
      expect(((await anonymous.json()) as any).error.data.appCode).toBe("UNAUTHENTICATED");
      const wrong = await fetch(`${guarded.url}/metrics`, { headers: { authorization: `Bearer ${token}x` } });
      expect(wrong.status).toBe(401);
      const { samples } = await scrape(guarded, { authorization: `Bearer ${token}` });
      expect(value(samples, "process_cpu_seconds_total")).toBeGreaterThan(0);
    } finally {
      await guarded.close();
    }
  });
});

describe("the Grafana dashboard (ops/grafana/sahary.json)", () => {
  test("charts only families /metrics exposes, and covers each area", async () => {
    const dashboard = JSON.parse(readFileSync(join(projectRoot, "ops/grafana/sahary.json"), "utf8")) as { panels: Array<{ type: string; targets?: Array<{ expr: string }> }> };
    const expressions = dashboard.panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr);
    expect(expressions.length).toBeGreaterThan(20);
    const { text } = await scrape(app);
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const used = new Set(expressions.flatMap((expr) => [...expr.matchAll(/\b((?:sahary|http|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, ""))));
    for (const name of used) expect(`${name}: ${families.has(name)}`).toBe(`${name}: true`);
    for (const family of [
      "sahary_trpc_calls_total",
      "sahary_trpc_errors_total",
      "sahary_queue_jobs",
      "sahary_instances",
      "sahary_power_level",
      "sahary_battery_soc_percent",
      "sahary_telemetry_state",
      "sahary_ingress_requests_total",
      "process_cpu_seconds_total",
    ]) {
      expect(used.has(family)).toBe(true);
    }
  });
});
