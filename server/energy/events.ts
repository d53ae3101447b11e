import { and, desc, lt, or, eq } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyEvents } from "../../db/schema";
import { AppError } from "../errors";

export type NewEnergyEvent = Omit<typeof energyEvents.$inferInsert, "id">;
export type EnergyEventKind = NewEnergyEvent["kind"];

export async function recordEnergyEvent(db: Database, event: NewEnergyEvent): Promise<string> {
  const [row] = await db.insert(energyEvents).values(event).returning({ id: energyEvents.id });
  return row!.id;
}

/** Cursor = the (at, id) of the last item seen, opaque to clients. */
function encodeCursor(at: Date, id: string): string {
  return Buffer.from(JSON.stringify([at.toISOString(), id])).toString("base64url");
}

function decodeCursor(cursor: string): { at: Date; id: string } {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as [string, string];
    const date = new Date(at);
    if (Number.isNaN(date.getTime()) || !/^[0-9a-f-]{36}$/.test(id)) throw new Error("bad cursor");
    return { at: date, id };
  } catch {
    throw new AppError("VALIDATION_FAILED", "The cursor is not one this API returned", { details: { field: "cursor" } });
  }
}

/** Newest first, keyset-paginated so pages stay stable while events are added. */
export async function listEnergyEvents(db: Database, opts: { cursor?: string | undefined; limit: number }) {
  const after = opts.cursor ? decodeCursor(opts.cursor) : null;
  const rows = await db
    .select()
    .from(energyEvents)
    .where(after ? or(lt(energyEvents.at, after.at), and(eq(energyEvents.at, after.at), lt(energyEvents.id, after.id))) : undefined)
    .orderBy(desc(energyEvents.at), desc(energyEvents.id))
    .limit(opts.limit + 1);
  const page = rows.slice(0, opts.limit);
  const last = page.at(-1);
  return {
    items: page.map((e) => ({
      id: e.id,
      at: e.at.toISOString(),
      kind: e.kind,
      severity: e.severity,
      message: e.message,
      levelChangeId: e.levelChangeId,
      details: e.details ?? null,
    })),
    nextCursor: rows.length > opts.limit && last ? encodeCursor(last.at, last.id) : null,
  };
}
