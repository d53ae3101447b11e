import { and, count, desc, eq, inArray, isNull, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { notifications } from "../../db/schema";
import { AppError } from "../errors";
import { after, cursorTime, decodeCursor, page } from "../pagination";

/** The in-app notification centre: a customer's notifications, newest first, and their read state. */

export type Notification = typeof notifications.$inferSelect;

export function notificationView(row: Notification) {
  return {
    id: row.id,
    eventId: row.eventId,
    type: row.type,
    title: row.title,
    body: row.body,
    data: row.data,
    createdAt: row.createdAt.toISOString(),
    readAt: row.readAt?.toISOString() ?? null,
  };
}

export async function listNotifications(db: Database, ownerId: string, opts: { unreadOnly?: boolean | undefined; cursor?: string | undefined; limit?: number | undefined }) {
  const limit = opts.limit ?? 20;
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const rows = await db
    .select({ notification: notifications, id: notifications.id, cursorAt: cursorTime(notifications.createdAt) })
    .from(notifications)
    .where(and(eq(notifications.userId, ownerId), opts.unreadOnly ? isNull(notifications.readAt) : undefined, cursor ? after(notifications.createdAt, notifications.id, cursor) : undefined))
    .orderBy(desc(notifications.createdAt), desc(notifications.id))
    .limit(limit + 1);
  return page(rows, limit, (row) => notificationView(row.notification));
}

export async function unreadCount(db: Database, ownerId: string): Promise<{ unread: number }> {
  const [row] = await db
    .select({ n: count() })
    .from(notifications)
    .where(and(eq(notifications.userId, ownerId), isNull(notifications.readAt)));
  return { unread: row?.n ?? 0 };
}

/**
 * Marks the caller's notifications read (already-read ones keep their time).
 * All or nothing: an id that is not one of theirs is NOT_FOUND and nothing changes.
 */
export async function markRead(db: Database, ownerId: string, ids: readonly string[]) {
  const wanted = [...new Set(ids)];
  return db.transaction(async (tx) => {
    const rows = await tx
      .update(notifications)
      .set({ readAt: sql`coalesce(${notifications.readAt}, now())` })
      .where(and(inArray(notifications.id, wanted), eq(notifications.userId, ownerId)))
      .returning();
    if (rows.length !== wanted.length) {
      const found = new Set(rows.map((r) => r.id));
      throw new AppError("NOT_FOUND", "No such notification", { details: { notificationIds: wanted.filter((id) => !found.has(id)) } });
    }
    return { items: rows.map(notificationView) };
  });
}

export async function markAllRead(db: Database, ownerId: string): Promise<{ marked: number }> {
  const rows = await db
    .update(notifications)
    .set({ readAt: new Date() })
    .where(and(eq(notifications.userId, ownerId), isNull(notifications.readAt)))
    .returning({ id: notifications.id });
  return { marked: rows.length };
}
