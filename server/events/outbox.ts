import * as v from "valibot";
import type { Database } from "../../db/client";
import { outboxEvents } from "../../db/schema";
import { EVENT_TYPES, type EventData, type EventType } from "./catalogue";

export type OutboxEvent = typeof outboxEvents.$inferSelect;

/** An event to record: its type, the customer it concerns, and its payload. */
export type NewEvent = { [T in EventType]: { type: T; userId: string; data: EventData<T>; occurredAt?: Date } }[EventType];

// Bounds one statement's parameters well under PostgreSQL's 65,535.
const INSERT_CHUNK = 2000;

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
    return {
      type: event.type,
      version: definition.version,
      userId: event.userId,
      data: v.parse(definition.data as v.GenericSchema, event.data) as Record<string, unknown>,
      ...(event.occurredAt ? { occurredAt: event.occurredAt } : {}),
    };
  });
  const ids: string[] = [];
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const inserted = await db.insert(outboxEvents).values(rows.slice(i, i + INSERT_CHUNK)).returning({ id: outboxEvents.id });
    ids.push(...inserted.map((row) => row.id));
  }
  return ids;
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
