import { desc } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyEvents } from "../../db/schema";
import { after, cursorTime, decodeCursor, page } from "../pagination";

export type NewEnergyEvent = Omit<typeof energyEvents.$inferInsert, "id">;
export type EnergyEventKind = NewEnergyEvent["kind"];

export async function recordEnergyEvent(db: Database, event: NewEnergyEvent): Promise<string> {
  const [row] = await db.insert(energyEvents).values(event).returning({ id: energyEvents.id });
  return row!.id;
}

/** Newest first, keyset-paginated so pages stay stable while events are added. */
export async function listEnergyEvents(db: Database, opts: { cursor?: string | undefined; limit: number }) {
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const rows = await db
    .select({ event: energyEvents, id: energyEvents.id, cursorAt: cursorTime(energyEvents.at) })
    .from(energyEvents)
    .where(cursor ? after(energyEvents.at, energyEvents.id, cursor) : undefined)
    .orderBy(desc(energyEvents.at), desc(energyEvents.id))
    .limit(opts.limit + 1);
  return page(rows, opts.limit, ({ event: e }) => ({
    id: e.id,
    at: e.at.toISOString(),
    kind: e.kind,
    severity: e.severity,
    message: e.message,
    levelChangeId: e.levelChangeId,
    details: e.details ?? null,
  }));
}
