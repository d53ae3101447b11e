import { and, asc, desc, eq, inArray, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { type deliveryStatus, eventDeliveries, outboxEvents, webhookAttempts, webhookEndpoints } from "../../db/schema";
import { recordAudit } from "../audit";
import { enqueueDeliveries } from "../events/deliveries";
import { AppError } from "../errors";
import type { Logger } from "../log";
import { after, cursorTime, decodeCursor, page } from "../pagination";
import type { Queues } from "../../workers/queues";
import type { EndpointOwner } from "./endpoints";

export type DeliveryStatus = (typeof deliveryStatus.enumValues)[number];

/**
 * The owner's webhook deliveries, newest first, each with its attempts in
 * order (status code, duration, error, the start of the response).
 */
export async function listDeliveries(
  db: Database,
  ownerId: string,
  opts: { endpointId?: string | undefined; eventId?: string | undefined; status?: DeliveryStatus | undefined; cursor?: string | undefined; limit?: number | undefined },
) {
  const limit = opts.limit ?? 20;
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const rows = await db
    .select({ delivery: eventDeliveries, type: outboxEvents.type, id: eventDeliveries.id, cursorAt: cursorTime(eventDeliveries.createdAt) })
    .from(eventDeliveries)
    .innerJoin(outboxEvents, eq(outboxEvents.id, eventDeliveries.eventId))
    .where(
      and(
        eq(eventDeliveries.userId, ownerId),
        eq(eventDeliveries.channel, "webhook"),
        opts.endpointId ? eq(eventDeliveries.endpointId, opts.endpointId) : undefined,
        opts.eventId ? eq(eventDeliveries.eventId, opts.eventId) : undefined,
        opts.status ? eq(eventDeliveries.status, opts.status) : undefined,
        cursor ? after(eventDeliveries.createdAt, eventDeliveries.id, cursor) : undefined,
      ),
    )
    .orderBy(desc(eventDeliveries.createdAt), desc(eventDeliveries.id))
    .limit(limit + 1);
  const ids = rows.slice(0, limit).map((row) => row.id);
  const attempts = ids.length ? await db.select().from(webhookAttempts).where(inArray(webhookAttempts.deliveryId, ids)).orderBy(asc(webhookAttempts.startedAt), asc(webhookAttempts.attempt)) : [];
  return page(rows, limit, ({ delivery, type }) => ({
    id: delivery.id,
    eventId: delivery.eventId,
    eventType: type,
    endpointId: delivery.endpointId,
    status: delivery.status,
    generation: delivery.generation,
    attempts: delivery.attempts,
    nextAttemptAt: delivery.status === "pending" ? delivery.nextAttemptAt.toISOString() : null,
    lastStatusCode: delivery.lastStatusCode,
    lastError: delivery.lastError,
    createdAt: delivery.createdAt.toISOString(),
    completedAt: delivery.completedAt?.toISOString() ?? null,
    history: attempts
      .filter((a) => a.deliveryId === delivery.id)
      .map((a) => ({
        generation: a.generation,
        attempt: a.attempt,
        url: a.url,
        address: a.address,
        startedAt: a.startedAt.toISOString(),
        durationMs: a.durationMs,
        outcome: a.outcome,
        statusCode: a.statusCode,
        error: a.error,
        responseBody: a.responseBody,
      })),
  }));
}

/**
 * Sends a delivery again now, whatever its state, with the same event (same
 * `webhook-id` and body, so receivers that already have it can tell) and a
 * fresh retry schedule. The delivery moves to its next generation; a job of
 * the previous one still waiting finds it changed and does nothing.
 */
export async function redeliver(deps: { db: Database; queues: Queues; log: Logger }, who: EndpointOwner, deliveryId: string) {
  const ref = await deps.db.transaction(async (tx) => {
    const [found] = await tx
      .select({ delivery: eventDeliveries, endpoint: webhookEndpoints })
      .from(eventDeliveries)
      .innerJoin(webhookEndpoints, eq(webhookEndpoints.id, eventDeliveries.endpointId))
      .where(eq(eventDeliveries.id, deliveryId))
      .for("update");
    if (!found || found.endpoint.userId !== who.ownerId) throw new AppError("NOT_FOUND", "No such webhook delivery", { details: { deliveryId } });
    if (!found.endpoint.enabled) {
      throw new AppError("WEBHOOK_ENDPOINT_DISABLED", "The endpoint is disabled; enable it before redelivering", {
        details: { endpointId: found.endpoint.id, disabledReason: found.endpoint.disabledReason },
      });
    }
    const [row] = await tx
      .update(eventDeliveries)
      .set({ status: "pending", generation: sql`${eventDeliveries.generation} + 1`, attempts: 0, nextAttemptAt: new Date(), completedAt: null })
      .where(eq(eventDeliveries.id, deliveryId))
      .returning();
    await recordAudit(tx, who, { action: "webhooks.delivery.redelivered", targetType: "webhook_delivery", targetId: deliveryId, metadata: { eventId: row!.eventId, generation: row!.generation } });
    return row!;
  });
  await enqueueDeliveries(deps, [{ id: ref.id, generation: ref.generation }]);
  return { id: ref.id, status: ref.status, generation: ref.generation, eventId: ref.eventId, endpointId: ref.endpointId };
}
