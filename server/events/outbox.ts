import * as v from "valibot";
import { sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { outboxEvents } from "../../db/schema";
import { pgArray } from "../billing/arrays";
import { EVENT_TYPES, type EventData, type EventType } from "./catalogue";

export type OutboxEvent = typeof outboxEvents.$inferSelect;

/** An event to record: its type, the customer it concerns, and its payload. */
export type NewEvent = { [T in EventType]: { type: T; userId: string; data: EventData<T>; occurredAt?: Date } }[EventType];

/**
 * Writes events to the outbox. Call with the transaction that makes the
 * change they report: they then exist if and only if the change does, and the
 * relay fans them out after the commit. A payload that does not match its
 * schema is a bug and throws (rolling the change back with it).
 */
export async function recordEvents(db: Database, events: readonly NewEvent[]): Promise<string[]> {
  if (events.length === 0) return [];
  const rows = events.map((event) => {
    const definition = EVENT_TYPES[event.type];
    const data = v.parse(definition.data as v.GenericSchema, event.data) as Record<string, unknown>;
    // The id is made here (a random UUID, as the column's default would) so that a batch of any size is one statement without RETURNING.
    return { id: crypto.randomUUID(), type: event.type, version: definition.version, userId: event.userId, data: JSON.stringify(data), occurredAt: event.occurredAt ?? null };
  });
  const column = <K extends keyof (typeof rows)[number]>(key: K) => pgArray(rows.map((row) => row[key] as string | number | Date | null));
  // In array order, so `seq` (an identity) numbers them as given; occurred_at defaults to the transaction's time, as the column does.
  await db.execute(sql`
    insert into ${outboxEvents} (id, type, version, user_id, data, occurred_at)
    select e.id, e.type, e.version, e.user_id, e.data, coalesce(e.occurred_at, now())
    from unnest(${column("id")}::uuid[], ${column("type")}::text[], ${column("version")}::int[], ${column("userId")}::uuid[], ${column("data")}::jsonb[], ${column("occurredAt")}::timestamptz[])
      with ordinality as e(id, type, version, user_id, data, occurred_at, n)
    order by e.n`);
  return rows.map((row) => row.id);
}

export async function recordEvent(db: Database, event: NewEvent): Promise<string> {
  const [id] = await recordEvents(db, [event]);
  return id!;
}

/**
 * The body every channel that speaks JSON receives (webhooks): the Standard
 * Webhooks shape `{type, timestamp, data}` plus the event id (also the
 * `webhook-id` header) and the payload schema's version. Built from the stored
 * row, so every retry and redelivery sends the same bytes.
 */
export function wirePayload(event: OutboxEvent): string {
  return JSON.stringify({ id: event.id, type: event.type, version: event.version, timestamp: event.occurredAt.toISOString(), data: event.data });
}
