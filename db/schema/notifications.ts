import { sql } from "drizzle-orm";
import { bigint, boolean, index, integer, jsonb, pgEnum, pgTable, primaryKey, text, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { users } from "./auth";
import { createdAt, id, timestamptz, updatedAt } from "./columns";
import { instances } from "./compute";
import { powerLevel } from "./energy";

/**
 * The customer event stream (transactional outbox). A row is written in the
 * transaction that makes the change it reports, so it exists if and only if
 * the change does. The relay claims undispatched rows (FOR UPDATE SKIP LOCKED,
 * never an id cursor: ids and `seq` are taken before commit, so rows appear
 * out of order) and fans each out in the transaction that sets `dispatched_at`.
 * Rows are kept after dispatch: they are the payload of every later retry and
 * manual redelivery, and their id is the `webhook-id`.
 */
export const outboxEvents = pgTable(
  "outbox_events",
  {
    id: id(),
    type: text("type").notNull(),
    /** Version of the payload schema of `type` the row was written with. */
    version: integer("version").notNull(),
    /** The customer the event concerns; it goes to no one else. */
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    data: jsonb("data").$type<Record<string, unknown>>().notNull(),
    occurredAt: timestamptz("occurred_at").notNull().defaultNow(),
    /** Orders claims among rows that share a timestamp; not a cursor. */
    seq: bigint("seq", { mode: "number" }).generatedAlwaysAsIdentity(),
    dispatchedAt: timestamptz("dispatched_at"),
  },
  (t) => [index("outbox_events_undispatched_idx").on(t.seq).where(sql`${t.dispatchedAt} is null`), index("outbox_events_user_idx").on(t.userId, t.occurredAt)],
);

export const notificationChannel = pgEnum("notification_channel", ["in_app", "email", "webhook"]);

/**
 * Per customer and event type, the channels they want. No row: the event
 * type's defaults. Channels an event type makes mandatory (security) are
 * delivered whatever is stored here.
 */
export const notificationPreferences = pgTable(
  "notification_preferences",
  {
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    eventType: text("event_type").notNull(),
    inApp: boolean("in_app").notNull(),
    email: boolean("email").notNull(),
    webhook: boolean("webhook").notNull(),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.eventType] })],
);

/** The in-app notification centre: one row per event the customer wants to see in the console. */
export const notifications = pgTable(
  "notifications",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    eventId: uuid("event_id")
      .notNull()
      .references(() => outboxEvents.id, { onDelete: "cascade" }),
    type: text("type").notNull(),
    title: text("title").notNull(),
    body: text("body").notNull(),
    data: jsonb("data").$type<Record<string, unknown>>().notNull(),
    /** When the event happened (the list's order), not when it was fanned out. */
    createdAt: createdAt(),
    readAt: timestamptz("read_at"),
  },
  (t) => [
    uniqueIndex("notifications_event_key").on(t.eventId),
    index("notifications_user_created_idx").on(t.userId, t.createdAt, t.id),
    index("notifications_user_unread_idx").on(t.userId).where(sql`${t.readAt} is null`),
  ],
);

/**
 * Customers' webhook endpoints. The signing secret must be recoverable to
 * sign, so it is stored sealed (AES-256-GCM under a key derived from
 * APP_SECRET), never in clear. During a rotation the previous secret keeps
 * signing beside the new one until `previous_secret_expires_at`.
 */
export const webhookEndpoints = pgTable(
  "webhook_endpoints",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    url: text("url").notNull(),
    description: text("description").notNull().default(""),
    /** Event types delivered here; empty: every type. */
    eventTypes: text("event_types").array().notNull().default(sql`'{}'::text[]`),
    enabled: boolean("enabled").notNull().default(true),
    disabledReason: text("disabled_reason"),
    disabledAt: timestamptz("disabled_at"),
    secretSealed: text("secret_sealed").notNull(),
    previousSecretSealed: text("previous_secret_sealed"),
    previousSecretExpiresAt: timestamptz("previous_secret_expires_at"),
    /** Failed attempts since the last success; with `failing_since` they decide auto-disabling. */
    consecutiveFailures: integer("consecutive_failures").notNull().default(0),
    failingSince: timestamptz("failing_since"),
    lastSuccessAt: timestamptz("last_success_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [index("webhook_endpoints_user_idx").on(t.userId, t.createdAt)],
);

export const deliveryStatus = pgEnum("delivery_status", ["pending", "succeeded", "failed"]);

/**
 * One row per (event, channel) for email and per (event, endpoint) for
 * webhooks: the unique keys make a second fan-out of an event insert nothing.
 * The row is the truth about a delivery; the BullMQ job (id
 * `delivery.<id>.<generation>`) only carries it out, and a sweep re-enqueues
 * rows that are due and have no job (Redis lost, a worker killed before
 * enqueueing). A manual redelivery bumps `generation`, so its job has a new
 * id (BullMQ silently ignores a re-added id while the old job is kept).
 */
export const eventDeliveries = pgTable(
  "event_deliveries",
  {
    id: id(),
    eventId: uuid("event_id")
      .notNull()
      .references(() => outboxEvents.id, { onDelete: "cascade" }),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    channel: notificationChannel("channel").notNull(),
    endpointId: uuid("endpoint_id").references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    status: deliveryStatus("status").notNull().default("pending"),
    generation: integer("generation").notNull().default(0),
    /** Attempts in this generation. */
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: timestamptz("next_attempt_at").notNull().defaultNow(),
    lastAttemptAt: timestamptz("last_attempt_at"),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    createdAt: createdAt(),
    completedAt: timestamptz("completed_at"),
  },
  (t) => [
    uniqueIndex("event_deliveries_endpoint_key").on(t.eventId, t.endpointId).where(sql`${t.endpointId} is not null`),
    uniqueIndex("event_deliveries_channel_key").on(t.eventId, t.channel).where(sql`${t.endpointId} is null`),
    index("event_deliveries_due_idx").on(t.nextAttemptAt).where(sql`${t.status} = 'pending'`),
    index("event_deliveries_endpoint_idx").on(t.endpointId, t.createdAt, t.id),
    index("event_deliveries_user_idx").on(t.userId, t.channel, t.createdAt, t.id),
  ],
);

/**
 * Every webhook attempt. The row is written before the request is sent and
 * completed after, so an attempt cut short by a killed worker still shows
 * (with no outcome).
 */
export const webhookAttempts = pgTable(
  "webhook_attempts",
  {
    id: id(),
    deliveryId: uuid("delivery_id")
      .notNull()
      .references(() => eventDeliveries.id, { onDelete: "cascade" }),
    generation: integer("generation").notNull(),
    attempt: integer("attempt").notNull(),
    url: text("url").notNull(),
    /** The checked address the request was sent to; null when none was (refused, unresolvable). */
    address: text("address"),
    startedAt: timestamptz("started_at").notNull().defaultNow(),
    durationMs: integer("duration_ms"),
    /** `succeeded`, `failed`; null while in flight or when the worker died during it. */
    outcome: text("outcome"),
    statusCode: integer("status_code"),
    error: text("error"),
    /** The start of the response body, truncated. */
    responseBody: text("response_body"),
  },
  (t) => [uniqueIndex("webhook_attempts_key").on(t.deliveryId, t.generation, t.attempt)],
);

/**
 * Power notices sent, one per power episode and instance: the primary key is
 * what keeps a second reading, a retried job or a forecast that repeats
 * itself from notifying the owner twice.
 */
export const powerNotices = pgTable(
  "power_notices",
  {
    /** Named by the caller: the emergency worker uses the id of the level change that left `normal`, a forecast `forecast-<its energy event id>`. */
    episodeId: text("episode_id").notNull(),
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => instances.id, { onDelete: "cascade" }),
    level: powerLevel("level").notNull(),
    expectedAt: timestamptz("expected_at").notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.episodeId, t.instanceId] })],
);
