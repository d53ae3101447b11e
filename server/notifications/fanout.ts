import { and, asc, eq, inArray, isNull } from "drizzle-orm";
import type { Database } from "../../db/client";
import { eventDeliveries, notificationPreferences, notifications, outboxEvents, users, webhookEndpoints } from "../../db/schema";
import { isEventType, type EventData, type EventType } from "../events/catalogue";
import { enqueueDeliveries, type DeliveryRef } from "../events/deliveries";
import type { OutboxEvent } from "../events/outbox";
import type { Logger } from "../log";
import type { Queues } from "../../workers/queues";
import { describeEvent } from "./messages";
import { effectiveChannels, mailedElsewhere, type ChannelSet } from "./policy";

export type FanOutDeps = { db: Database; queues: Queues; log: Logger };

/** What the fan-out needs to know about the customers of a batch of events. */
export type Audience = {
  /** Account status by user id (unverified addresses get no mail: nobody proved they own them). */
  status: ReadonlyMap<string, string>;
  /** Stored preferences by `${userId}\n${eventType}`. */
  preferences: ReadonlyMap<string, ChannelSet>;
  /** Enabled webhook endpoints by user id, with their event filter (empty: every type). */
  endpoints: ReadonlyMap<string, ReadonlyArray<{ id: string; eventTypes: readonly string[] }>>;
};

export type FanOutPlan = {
  notifications: Array<typeof notifications.$inferInsert>;
  deliveries: Array<{ eventId: string; userId: string; channel: "email" | "webhook"; endpointId: string | null }>;
  /** Events of a type this code does not know (written by a newer version): dispatched with no delivery. */
  unknown: string[];
};

export const preferenceKey = (userId: string, type: string) => `${userId}\n${type}`;

/**
 * Who receives each event, on which channel: in-app rows are complete here;
 * mail and webhooks become delivery rows that jobs carry out. Pure.
 */
export function planFanOut(events: readonly OutboxEvent[], audience: Audience): FanOutPlan {
  const plan: FanOutPlan = { notifications: [], deliveries: [], unknown: [] };
  for (const event of events) {
    if (!isEventType(event.type)) {
      plan.unknown.push(event.id);
      continue;
    }
    const type: EventType = event.type;
    const data = event.data as EventData<EventType>;
    const channels = effectiveChannels(type, audience.preferences.get(preferenceKey(event.userId, type)));
    if (channels.inApp) {
      const message = describeEvent(type, data);
      plan.notifications.push({ userId: event.userId, eventId: event.id, type, title: message.title, body: message.body, data: event.data, createdAt: event.occurredAt });
    }
    const status = audience.status.get(event.userId);
    if (channels.email && status !== undefined && status !== "unverified" && !mailedElsewhere(type, data)) {
      plan.deliveries.push({ eventId: event.id, userId: event.userId, channel: "email", endpointId: null });
    }
    if (channels.webhook) {
      for (const endpoint of audience.endpoints.get(event.userId) ?? []) {
        if (endpoint.eventTypes.length === 0 || endpoint.eventTypes.includes(type)) {
          plan.deliveries.push({ eventId: event.id, userId: event.userId, channel: "webhook", endpointId: endpoint.id });
        }
      }
    }
  }
  return plan;
}

// Rows per insert statement (each notification row binds 8 parameters).
const CHUNK = 1000;

/**
 * Claims up to `limit` undispatched events (FOR UPDATE SKIP LOCKED: relays in
 * other processes take other rows, and a row is never claimed by position, so
 * late committers are not skipped), writes their in-app notifications and
 * delivery rows and marks them dispatched, all in one transaction; then
 * enqueues one job per new delivery in one round trip. If the process dies
 * before the commit, nothing happened and the events are claimed again; if it
 * dies after, the sweep enqueues the deliveries (their rows are the truth).
 */
export async function relayBatch(deps: FanOutDeps, limit: number): Promise<{ events: number; deliveries: number }> {
  const fanned = await deps.db.transaction(async (tx) => {
    const claimed = await tx.select().from(outboxEvents).where(isNull(outboxEvents.dispatchedAt)).orderBy(asc(outboxEvents.seq)).limit(limit).for("update", { skipLocked: true });
    if (claimed.length === 0) return null;
    const plan = planFanOut(claimed, await loadAudience(tx, claimed));
    if (plan.unknown.length) deps.log.error("events of unknown types dispatched without delivery", { eventIds: plan.unknown });

    for (let i = 0; i < plan.notifications.length; i += CHUNK) {
      await tx
        .insert(notifications)
        .values(plan.notifications.slice(i, i + CHUNK))
        .onConflictDoNothing();
    }
    const refs: DeliveryRef[] = [];
    for (let i = 0; i < plan.deliveries.length; i += CHUNK) {
      const inserted = await tx
        .insert(eventDeliveries)
        .values(plan.deliveries.slice(i, i + CHUNK))
        .onConflictDoNothing()
        .returning({ id: eventDeliveries.id, generation: eventDeliveries.generation });
      refs.push(...inserted);
    }
    await tx
      .update(outboxEvents)
      .set({ dispatchedAt: new Date() })
      .where(
        inArray(
          outboxEvents.id,
          claimed.map((e) => e.id),
        ),
      );
    return { events: claimed.length, refs };
  });
  if (!fanned) return { events: 0, deliveries: 0 };
  await enqueueDeliveries(deps, fanned.refs);
  return { events: fanned.events, deliveries: fanned.refs.length };
}

async function loadAudience(tx: Database, events: readonly OutboxEvent[]): Promise<Audience> {
  const userIds = [...new Set(events.map((e) => e.userId))];
  const types = [...new Set(events.map((e) => e.type))];
  const people = await tx.select({ id: users.id, status: users.status }).from(users).where(inArray(users.id, userIds));
  const stored = await tx
    .select()
    .from(notificationPreferences)
    .where(and(inArray(notificationPreferences.userId, userIds), inArray(notificationPreferences.eventType, types)));
  const endpoints = await tx
    .select({ id: webhookEndpoints.id, userId: webhookEndpoints.userId, eventTypes: webhookEndpoints.eventTypes })
    .from(webhookEndpoints)
    .where(and(inArray(webhookEndpoints.userId, userIds), eq(webhookEndpoints.enabled, true)));
  const byUser = new Map<string, Array<{ id: string; eventTypes: string[] }>>();
  for (const endpoint of endpoints) {
    const list = byUser.get(endpoint.userId) ?? [];
    list.push(endpoint);
    byUser.set(endpoint.userId, list);
  }
  return {
    status: new Map(people.map((p) => [p.id, p.status])),
    preferences: new Map(stored.map((p) => [preferenceKey(p.userId, p.eventType), { inApp: p.inApp, email: p.email, webhook: p.webhook }])),
    endpoints: byUser,
  };
}
