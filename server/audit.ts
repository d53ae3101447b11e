import type { Database } from "../db/client";
import { auditLog } from "../db/schema";
import { actorUserId, type Actor } from "./auth/actor";
import type { RequestInfo } from "./trpc";

export type AuditEntry = {
  /** Dotted verb, e.g. `auth.login.failed`, `admin.user.suspended`. */
  action: string;
  targetType?: string;
  targetId?: string;
  reason?: string;
  metadata?: Record<string, unknown>;
};

/**
 * Writes one audit row. Pass the transaction that makes the change so the row
 * exists if and only if the change does. Who acted comes from the actor.
 */
export async function recordAudit(db: Database, who: { actor: Actor; request?: RequestInfo | null }, entry: AuditEntry | readonly AuditEntry[]): Promise<void> {
  const { actor, request } = who;
  const entries = Array.isArray(entry) ? entry : [entry as AuditEntry];
  if (entries.length === 0) return;
  await db.insert(auditLog).values(
    entries.map((e) => {
      const metadata = { ...e.metadata };
      if (actor.kind === "apiKey") metadata.apiKeyId = actor.apiKeyId;
      if (actor.kind === "system") metadata.system = actor.name;
      if (actor.kind === "webhook") metadata.webhook = actor.source;
      return {
        actorType: actor.kind,
        actorId: actorUserId(actor),
        action: e.action,
        targetType: e.targetType ?? null,
        targetId: e.targetId ?? null,
        reason: e.reason ?? null,
        ip: request?.ip ?? null,
        userAgent: request?.userAgent ?? null,
        metadata: Object.keys(metadata).length ? metadata : null,
      };
    }),
  );
}
