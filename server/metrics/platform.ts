import { count, ne } from "drizzle-orm";
import { Counter, Gauge, type Registry } from "prom-client";
import { instances } from "../../db/schema";
import { queueHealth } from "../admin/queues";
import { INSTANCE_STATES, PRIORITIES } from "../compute/states";
import { POWER_LEVELS } from "../energy/levels";
import { energyStatus, type TelemetryState } from "../energy/status";
import type { Services } from "../services";
import { withTimeout } from "../waits";

const TELEMETRY_STATES: readonly TelemetryState[] = ["ok", "waiting", "lost", "unavailable"];
/** A source that has not answered by then counts as down for this scrape; /metrics never hangs on it. */
const SOURCE_TIMEOUT_MS = 2000;

type Outcome<T> = { ok: true; value: T } | { ok: false };

/**
 * A value read at scrape time, at most once per `ttlMs` however many gauges
 * and scrapers ask (one read in flight at a time), bounded by a timeout.
 */
function scrapeSource<T>(read: () => Promise<T>, ttlMs: number): () => Promise<Outcome<T>> {
  let last: { at: number; outcome: Outcome<T> } | undefined;
  let inflight: Promise<Outcome<T>> | undefined;
  return () => {
    if (last && performance.now() - last.at < ttlMs) return Promise.resolve(last.outcome);
    inflight ??= withTimeout(read(), SOURCE_TIMEOUT_MS)
      .then(
        (value): Outcome<T> => ({ ok: true, value }),
        (): Outcome<T> => ({ ok: false }),
      )
      .then((outcome) => {
        last = { at: performance.now(), outcome };
        inflight = undefined;
        return outcome;
      });
    return inflight;
  };
}

async function instancesByStateAndPriority(services: Services) {
  return services.db
    .select({ state: instances.state, priority: instances.priority, count: count() })
    .from(instances)
    .where(ne(instances.state, "deleted"))
    .groupBy(instances.state, instances.priority);
}

/**
 * Gauges read when Prometheus scrapes: queue depth and age, instances by state
 * and priority, power level, battery and telemetry. Each source (Redis, the
 * database's compute and energy tables) is cached for `cacheMs` and reported by
 * `sahary_metrics_source_up`; a source that is down leaves its gauges absent
 * rather than zero, so a dashboard shows a gap, not a lie.
 */
export function registerPlatformMetrics(registry: Registry, services: Services, cacheMs: number): void {
  const sources = {
    queues: scrapeSource(() => queueHealth(services.queues), cacheMs),
    instances: scrapeSource(() => instancesByStateAndPriority(services), cacheMs),
    energy: scrapeSource(() => energyStatus(services.db, services.config.energy), cacheMs),
  };
  const registers = [registry];

  new Gauge({
    name: "sahary_metrics_source_up",
    help: "Whether a scrape-time source answered (1) or not (0): queues (Redis), instances and energy (database)",
    labelNames: ["source"] as const,
    registers,
    async collect() {
      const outcomes = await Promise.all(Object.entries(sources).map(async ([name, read]) => [name, await read()] as const));
      for (const [source, outcome] of outcomes) this.set({ source }, outcome.ok ? 1 : 0);
    },
  });

  // Queues (BullMQ on Redis).
  const queueGauge = (name: string, help: string, pick: (q: Awaited<ReturnType<typeof queueHealth>>["queues"][number]) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ["queue"] as const,
      registers,
      async collect() {
        this.reset();
        const outcome = await sources.queues();
        if (!outcome.ok) return;
        for (const q of outcome.value.queues) {
          const value = pick(q);
          if (value !== null) this.set({ queue: q.name }, value);
        }
      },
    });
  new Gauge({
    name: "sahary_queue_jobs",
    help: "Jobs per queue and state (failed: failed jobs still retained)",
    labelNames: ["queue", "state"] as const,
    registers,
    async collect() {
      this.reset();
      const outcome = await sources.queues();
      if (!outcome.ok) return;
      for (const q of outcome.value.queues) {
        for (const state of ["waiting", "active", "delayed", "failed", "completed"] as const) this.set({ queue: q.name, state }, q[state]);
      }
    },
  });
  queueGauge(
    "sahary_queue_oldest_waiting_seconds",
    "Age of the oldest job ready to run (waiting, or delayed and overdue); 0 when none",
    (q) => Math.max(q.oldestWaitingMs ?? 0, q.overdueDelayedMs ?? 0) / 1000,
  );
  queueGauge("sahary_queue_paused", "1 when the queue is paused", (q) => (q.paused ? 1 : 0));
  queueGauge("sahary_queue_workers", "Workers connected to the queue", (q) => q.workers);
  queueGauge("sahary_queue_stalled", "1 when ready jobs have waited over a minute with nothing active (a stuck worker)", (q) => (q.stalled ? 1 : 0));

  // Instances (database).
  new Gauge({
    name: "sahary_instances",
    help: "Instances that are not deleted, by state and priority",
    labelNames: ["state", "priority"] as const,
    registers,
    async collect() {
      this.reset();
      const outcome = await sources.instances();
      if (!outcome.ok) return;
      for (const state of INSTANCE_STATES) if (state !== "deleted") for (const priority of PRIORITIES) this.set({ state, priority }, 0);
      for (const row of outcome.value) this.set({ state: row.state, priority: row.priority }, row.count);
    },
  });

  // Energy (the monitor's published state and the level history, in the database).
  type Status = Awaited<ReturnType<typeof energyStatus>>;
  // Labelled by the controller's protocol: a family without labels would read 0 when there is no reading.
  const energyGauge = (name: string, help: string, pick: (s: Status) => number | null | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ["protocol"] as const,
      registers,
      async collect() {
        this.reset();
        const outcome = await sources.energy();
        const value = outcome.ok ? pick(outcome.value) : null;
        const protocol = outcome.ok ? outcome.value.telemetry.protocol : null;
        if (value !== null && value !== undefined && protocol) this.set({ protocol }, value);
      },
    });
  const oneHot = (name: string, help: string, label: string, values: readonly string[], pick: (s: Status) => string) =>
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers,
      async collect() {
        this.reset();
        const outcome = await sources.energy();
        if (!outcome.ok) return;
        const current = pick(outcome.value);
        for (const value of values) this.set({ [label]: value }, value === current ? 1 : 0);
      },
    });
  oneHot("sahary_power_level", "The platform's power level: 1 for the current one", "level", POWER_LEVELS, (s) => s.level.level);
  oneHot("sahary_telemetry_state", "Charge-controller telemetry: 1 for the current state", "state", TELEMETRY_STATES, (s) => s.telemetry.state);
  energyGauge("sahary_battery_soc_percent", "Battery state of charge (%) from the latest reading", (s) => s.reading?.soc);
  energyGauge("sahary_battery_voltage_volts", "Battery voltage from the latest reading", (s) => s.reading?.batteryVoltage);
  energyGauge("sahary_battery_current_amperes", "Battery current from the latest reading (+ charging, - discharging)", (s) => s.reading?.batteryCurrent);
  energyGauge("sahary_pv_power_watts", "Solar (PV) power from the latest reading", (s) => s.reading?.pvPower);
  energyGauge("sahary_load_power_watts", "Load power from the latest reading", (s) => s.reading?.loadPower);
  energyGauge("sahary_telemetry_last_reading_age_seconds", "Seconds since the last valid reading", (s) =>
    s.telemetry.lastReadingAt ? Math.max(0, (Date.now() - Date.parse(s.telemetry.lastReadingAt)) / 1000) : null,
  );

  // The monitor's own counters (they restart from zero with the monitor, as Prometheus counters may).
  const monitorCounter = (name: string, help: string, pick: (s: Status) => number) =>
    new Counter({
      name,
      help,
      labelNames: ["protocol"] as const,
      registers,
      async collect() {
        this.reset();
        const outcome = await sources.energy();
        const protocol = outcome.ok ? outcome.value.telemetry.protocol : null;
        if (outcome.ok && protocol) this.inc({ protocol }, pick(outcome.value));
      },
    });
  monitorCounter("sahary_telemetry_frames_decoded_total", "Controller frames decoded since the monitor started", (s) => s.telemetry.framesDecoded);
  monitorCounter("sahary_telemetry_frames_dropped_total", "Controller frames dropped (checksum, framing, timeouts) since the monitor started", (s) => s.telemetry.framesDropped);
  monitorCounter("sahary_telemetry_bridge_restarts_total", "Serial bridge restarts since the monitor started", (s) => s.telemetry.bridgeRestarts);
}
