import { sql, type AnyColumn, type SQL } from "drizzle-orm";
import { AppError } from "./errors";

/**
 * Keyset cursors for every list in the API, each ordered newest first by
 * (timestamp, id). The timestamp travels at the database's microsecond
 * precision, as text, so a cursor never lands between two rows that share a
 * millisecond, and the comparison stays a plain row comparison an index on
 * the timestamp can serve. New rows only ever appear before the first page,
 * so paging is stable while rows are added.
 */

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type Cursor = { at: string; id: string };

/** Select this beside the row: the exact timestamp the next cursor carries. */
export const cursorTime = (column: AnyColumn) => sql<string>`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Rows strictly after the cursor in newest-first order. */
export const after = (time: AnyColumn, id: AnyColumn, cursor: Cursor): SQL => sql`(${time}, ${id}) < (${cursor.at}::timestamptz, ${cursor.id}::uuid)`;

export function decodeCursor(cursor: string): Cursor {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as [unknown, unknown];
    if (typeof at !== "string" || !CURSOR_TIME.test(at) || typeof id !== "string" || !UUID.test(id)) throw new Error("bad cursor");
    return { at, id };
  } catch {
    throw new AppError("VALIDATION_FAILED", "The cursor is not one this API returned", { details: { field: "cursor" } });
  }
}

/** Cuts the extra row fetched to know whether another page exists, and names the next cursor. */
export function page<Row extends { cursorAt: string; id: string }, Item>(rows: Row[], limit: number, view: (row: Row) => Item) {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return {
    items: items.map(view),
    nextCursor: rows.length > limit && last ? Buffer.from(JSON.stringify([last.cursorAt, last.id])).toString("base64url") : null,
  };
}
