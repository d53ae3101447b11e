import { doublePrecision, index, integer, jsonb, pgEnum, pgTable, primaryKey, text, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { createdAt, id, timestamptz, updatedAt } from "./columns";
import { users } from "./auth";
import { instances } from "./compute";

export const powerLevel = pgEnum("power_level", ["normal", "conserve", "critical", "shutdown"]);
export const energyEventKind = pgEnum("energy_event_kind", [
  "level_changed",
  "telemetry_lost",
  "telemetry_restored",
  "controller_fault",
  "controller_fault_cleared",
  "bridge_failed",
  // The emergency worker's effects: instances paused or stopped, brought back, backup power signalled.
  "instances_shed",
  "instances_restored",
  "backup_signalled",
  // Bytes arrive but nothing valid decodes (wrong baud rate, noise): distinct from telemetry_lost (silence).
  "link_degraded",
  // The runway forecast expects a threshold to be crossed soon (the seam for tenant notices).
  "forecast_warning",
  // The policy's thresholds sit below the controller's own cut-offs (with margin).
  "policy_misaligned",
]);
export const energySeverity = pgEnum("energy_severity", ["info", "warning", "critical"]);

const measures = {
  pvVoltage: doublePrecision("pv_voltage"),
  pvCurrent: doublePrecision("pv_current"),
  pvPower: doublePrecision("pv_power"),
  batteryVoltage: doublePrecision("battery_voltage"),
  batteryCurrent: doublePrecision("battery_current"),
  soc: doublePrecision("soc"),
  loadVoltage: doublePrecision("load_voltage"),
  loadCurrent: doublePrecision("load_current"),
  loadPower: doublePrecision("load_power"),
  batteryTemperature: doublePrecision("battery_temperature"),
  controllerTemperature: doublePrecision("controller_temperature"),
};

/**
 * Decimated readings: one row per sampling window (ENERGY_SAMPLE_SECONDS,
 * aligned to the clock) holding the window's means, its last discrete values,
 * and the energy that flowed during it (integrated from every raw reading).
 */
export const energyReadings = pgTable(
  "energy_readings",
  {
    id: id(),
    /** Start of the window. */
    at: timestamptz("at").notNull(),
    seconds: integer("seconds").notNull(),
    samples: integer("samples").notNull(),
    source: text("source").notNull(),
    ...measures,
    pvPowerMax: doublePrecision("pv_power_max"),
    socMin: doublePrecision("soc_min"),
    socMax: doublePrecision("soc_max"),
    socSource: text("soc_source"),
    chargeState: text("charge_state"),
    fault: text("fault"),
    yieldTodayKwh: doublePrecision("yield_today_kwh"),
    pvWh: doublePrecision("pv_wh").notNull(),
    loadWh: doublePrecision("load_wh").notNull(),
    batteryInWh: doublePrecision("battery_in_wh").notNull(),
    batteryOutWh: doublePrecision("battery_out_wh").notNull(),
  },
  (t) => [uniqueIndex("energy_readings_at_key").on(t.at)],
);

/** Hourly roll-up of the readings, kept for good: history and statistics over long ranges. */
export const energyHourly = pgTable(
  "energy_hourly",
  {
    id: id(),
    hour: timestamptz("hour").notNull(),
    samples: integer("samples").notNull(),
    seconds: integer("seconds").notNull(),
    pvWh: doublePrecision("pv_wh").notNull(),
    loadWh: doublePrecision("load_wh").notNull(),
    batteryInWh: doublePrecision("battery_in_wh").notNull(),
    batteryOutWh: doublePrecision("battery_out_wh").notNull(),
    pvPowerMax: doublePrecision("pv_power_max"),
    socSum: doublePrecision("soc_sum").notNull(),
    socCount: integer("soc_count").notNull(),
    socMin: doublePrecision("soc_min"),
    socMax: doublePrecision("soc_max"),
    batteryVoltageSum: doublePrecision("battery_voltage_sum").notNull(),
    batteryVoltageCount: integer("battery_voltage_count").notNull(),
    batteryVoltageMin: doublePrecision("battery_voltage_min"),
    batteryVoltageMax: doublePrecision("battery_voltage_max"),
  },
  (t) => [uniqueIndex("energy_hourly_hour_key").on(t.hour)],
);

/** The power policy; every update is a new row, the latest applies. */
export const energyPolicies = pgTable(
  "energy_policies",
  {
    id: id(),
    createdAt: createdAt(),
    conserveBelow: doublePrecision("conserve_below").notNull(),
    criticalBelow: doublePrecision("critical_below").notNull(),
    shutdownBelow: doublePrecision("shutdown_below").notNull(),
    hysteresis: doublePrecision("hysteresis").notNull(),
    dwellSeconds: integer("dwell_seconds").notNull(),
    recoveryDwellSeconds: integer("recovery_dwell_seconds").notNull(),
    createdBy: uuid("created_by").references(() => users.id, { onDelete: "set null" }),
  },
  (t) => [index("energy_policies_created_at_idx").on(t.createdAt)],
);

/**
 * Power level changes, in order. `seq` is unique, so two writers racing to
 * record the same change cannot both succeed. `enqueuedAt` is set once the
 * power-emergency job is on the queue (an outbox: unset rows are re-dispatched).
 */
export const energyLevelChanges = pgTable(
  "energy_level_changes",
  {
    id: id(),
    seq: integer("seq").notNull(),
    at: timestamptz("at").notNull(),
    fromLevel: powerLevel("from_level").notNull(),
    toLevel: powerLevel("to_level").notNull(),
    soc: doublePrecision("soc"),
    reading: jsonb("reading").$type<Record<string, unknown>>().notNull(),
    policy: jsonb("policy").$type<Record<string, unknown>>().notNull(),
    /** `soc`: the state of charge crossed a threshold; `forecast`: the runway forecast stepped down early. */
    cause: text("cause").notNull().default("soc"),
    enqueuedAt: timestamptz("enqueued_at"),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("energy_level_changes_seq_key").on(t.seq)],
);

/** What operators read: level changes, telemetry lost/restored, controller faults, bridge failures, emergency actions. */
export const energyEvents = pgTable(
  "energy_events",
  {
    id: id(),
    at: timestamptz("at").notNull(),
    kind: energyEventKind("kind").notNull(),
    severity: energySeverity("severity").notNull(),
    message: text("message").notNull(),
    levelChangeId: uuid("level_change_id").references(() => energyLevelChanges.id, { onDelete: "set null" }),
    details: jsonb("details").$type<Record<string, unknown>>(),
  },
  (t) => [index("energy_events_at_idx").on(t.at, t.id)],
);

/**
 * The hardware monitor's own state, one row per monitor (there is one charge
 * controller), so any API process can report telemetry health.
 */
export const energyMonitor = pgTable("energy_monitor", {
  id: text("id").primaryKey(),
  protocol: text("protocol").notNull(),
  startedAt: timestamptz("started_at").notNull(),
  updatedAt: timestamptz("updated_at").notNull(),
  telemetry: text("telemetry").notNull(),
  lastReadingAt: timestamptz("last_reading_at"),
  lastReading: jsonb("last_reading").$type<Record<string, unknown>>(),
  framesDecoded: integer("frames_decoded").notNull().default(0),
  framesDropped: integer("frames_dropped").notNull().default(0),
  bridgeState: text("bridge_state").notNull(),
  bridgeRestarts: integer("bridge_restarts").notNull().default(0),
  lastBridgeExit: jsonb("last_bridge_exit").$type<{ code: number | null; message: string; at: string }>(),
  /** Link health: state, bytes/frames/accepted totals and over the last telemetry timeout. */
  link: jsonb("link").$type<Record<string, unknown>>(),
  /** Blocks and readings refused, by reason (decoder drops, failed polls, implausible readings). */
  rejections: jsonb("rejections").$type<Record<string, number>>().notNull().default({}),
  /** The energy clock the monitor runs on (null: real time); see server/energy/clock.ts. */
  clock: jsonb("clock").$type<{ speed: number; realEpochMs: number; simEpochMs: number }>(),
  /** The controller's own battery cut-offs (read from an EPEver, or configured), in volts. */
  controllerSettings: jsonb("controller_settings").$type<Record<string, unknown>>(),
  /** The latest runway forecast summary (time to each threshold). */
  forecast: jsonb("forecast").$type<Record<string, unknown>>(),
});

/**
 * Each instance's share of the measured load energy per UTC hour (watt-hours),
 * split by where the energy came from: the panels directly, the battery
 * (stored sunlight), or backup power. Added by the metering tick in the same
 * transaction that records the attribution window (energy_attributions), so a
 * window is shared out once. Model: docs/billing.md, "Per-tenant solar accounting".
 */
export const usageEnergy = pgTable(
  "usage_energy",
  {
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => instances.id),
    hour: timestamptz("hour").notNull(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    loadWh: doublePrecision("load_wh").notNull().default(0),
    solarWh: doublePrecision("solar_wh").notNull().default(0),
    batteryWh: doublePrecision("battery_wh").notNull().default(0),
    backupWh: doublePrecision("backup_wh").notNull().default(0),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.instanceId, t.hour] }), index("usage_energy_user_hour_idx").on(t.userId, t.hour)],
);

/**
 * The windows of measured load energy shared out so far, back to back: the
 * latest `until` is where the next window starts, and the unique `from` makes
 * two ticks racing for one window share it once. `unattributedWh` is load
 * energy no instance was live to take (an empty platform's own draw).
 */
export const energyAttributions = pgTable(
  "energy_attributions",
  {
    id: id(),
    from: timestamptz("from").notNull(),
    until: timestamptz("until").notNull(),
    loadWh: doublePrecision("load_wh").notNull(),
    solarWh: doublePrecision("solar_wh").notNull(),
    batteryWh: doublePrecision("battery_wh").notNull(),
    backupWh: doublePrecision("backup_wh").notNull(),
    idleWh: doublePrecision("idle_wh").notNull(),
    attributedWh: doublePrecision("attributed_wh").notNull(),
    unattributedWh: doublePrecision("unattributed_wh").notNull(),
    instances: integer("instances").notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("energy_attributions_from_key").on(t.from), index("energy_attributions_until_idx").on(t.until)],
);
