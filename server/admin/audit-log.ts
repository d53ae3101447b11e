import { and, desc, eq, gte, like, lt } from "drizzle-orm";
import type { Database } from "../../db/client";
import { auditLog, users } from "../../db/schema";
import { after, cursorTime, decodeCursor, page } from "../pagination";

export type AuditFilters = {
  actorId?: string | undefined;
  /** An exact action (`admin.user.suspended`), or a prefix ending in `.*` (`admin.*`). */
  action?: string | undefined;
  targetType?: string | undefined;
  targetId?: string | undefined;
  /** Inclusive. */
  from?: Date | undefined;
  /** Exclusive. */
  to?: Date | undefined;
  cursor?: string | undefined;
  limit: number;
};

function actionFilter(action: string) {
  if (!action.endsWith(".*")) return eq(auditLog.action, action);
  // Actions are dotted identifiers (the schema allows no LIKE wildcards in them), so the prefix needs no escaping.
  return like(auditLog.action, `${action.slice(0, -1)}%`);
}

/** The audit log, newest first, a page at a time, with the actor's email when the actor is a user. */
export async function listAudit(db: Database, filters: AuditFilters) {
  const cursor = filters.cursor ? decodeCursor(filters.cursor) : null;
  const rows = await db
    .select({ entry: auditLog, actorEmail: users.email, id: auditLog.id, cursorAt: cursorTime(auditLog.at) })
    .from(auditLog)
    .leftJoin(users, eq(users.id, auditLog.actorId))
    .where(
      and(
        filters.actorId ? eq(auditLog.actorId, filters.actorId) : undefined,
        filters.action ? actionFilter(filters.action) : undefined,
        filters.targetType ? eq(auditLog.targetType, filters.targetType) : undefined,
        filters.targetId ? eq(auditLog.targetId, filters.targetId) : undefined,
        filters.from ? gte(auditLog.at, filters.from) : undefined,
        filters.to ? lt(auditLog.at, filters.to) : undefined,
        cursor ? after(auditLog.at, auditLog.id, cursor) : undefined,
      ),
    )
    .orderBy(desc(auditLog.at), desc(auditLog.id))
    .limit(filters.limit + 1);
  return page(rows, filters.limit, ({ entry, actorEmail }) => ({
    id: entry.id,
    at: entry.at.toISOString(),
    actorType: entry.actorType,
    actorId: entry.actorId,
    actorEmail,
    action: entry.action,
    targetType: entry.targetType,
    targetId: entry.targetId,
    reason: entry.reason,
    ip: entry.ip,
    userAgent: entry.userAgent,
    metadata: entry.metadata ?? null,
  }));
}
