import { and, eq, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { eventDeliveries, outboxEvents, users, webhookEndpoints } from "../../db/schema";
import type { Config } from "../config";
import type { Delivery } from "../events/deliveries";
import type { OutboxEvent } from "../events/outbox";
import type { Logger } from "../log";
import { dispatchMail, queueMail } from "../mail/outbox";
import { attemptWebhook, type AttemptOutcome } from "../webhooks/attempt";
import type { Queues } from "../../workers/queues";
import { renderEventMail } from "./mail";

export type DeliverDeps = { db: Database; queues: Queues; config: Config; log: Logger };

/**
 * Waits before the retries of an email delivery. The mail itself is retried
 * by the mail outbox; what can fail here is rendering it (the database).
 */
const EMAIL_RETRY_MS = [10_000, 60_000, 300_000, 1_800_000];

/**
 * Carries out one delivery if it is still pending in the generation the job
 * was made for (anything else: a duplicate job, or one overtaken by a
 * redelivery, and nothing is done).
 */
export async function performDelivery(deps: DeliverDeps, deliveryId: string, generation: number): Promise<AttemptOutcome> {
  // Everything either channel needs, in one round trip.
  const [found] = await deps.db
    .select({ delivery: eventDeliveries, event: outboxEvents, endpoint: webhookEndpoints, recipient: { name: users.name, email: users.email } })
    .from(eventDeliveries)
    .innerJoin(outboxEvents, eq(outboxEvents.id, eventDeliveries.eventId))
    .innerJoin(users, eq(users.id, eventDeliveries.userId))
    .leftJoin(webhookEndpoints, eq(webhookEndpoints.id, eventDeliveries.endpointId))
    .where(eq(eventDeliveries.id, deliveryId));
  if (found?.delivery.status !== "pending" || found.delivery.generation !== generation) return { status: "skipped", reason: "nothing left to do for this job" };
  if (found.delivery.channel !== "webhook") return deliverEmail(deps, found.delivery, found.event, found.recipient);
  // Deleted with its endpoint (the delivery row goes too, but the job may have read it first).
  if (!found.endpoint) return { status: "skipped", reason: "the endpoint was deleted" };
  return attemptWebhook(deps, found.delivery, found.endpoint, found.event);
}

/**
 * Renders the event's mail and hands it to the mail outbox in the
 * transaction that marks the delivery done, so one delivery makes one mail
 * however often its job runs.
 */
async function deliverEmail(deps: DeliverDeps, delivery: Delivery, event: OutboxEvent, recipient: { name: string; email: string }): Promise<AttemptOutcome> {
  const { db } = deps;
  const current = and(eq(eventDeliveries.id, delivery.id), eq(eventDeliveries.status, "pending"), eq(eventDeliveries.generation, delivery.generation));
  try {
    const mail = await renderEventMail(deps, event, recipient);
    const messageId = await db.transaction(async (tx) => {
      const [done] = await tx
        .update(eventDeliveries)
        .set({ status: "succeeded", attempts: sql`${eventDeliveries.attempts} + 1`, lastAttemptAt: new Date(), completedAt: new Date(), lastError: null })
        .where(current)
        .returning({ id: eventDeliveries.id });
      if (!done) return null;
      return queueMail(tx, { to: recipient.email, kind: `event.${event.type}`, ...mail });
    });
    if (!messageId) return { status: "skipped", reason: "the delivery changed meanwhile" };
    await dispatchMail(deps.queues, messageId).catch((error) => deps.log.warn("mail enqueue failed; the outbox sweep will retry", { messageId, error: (error as Error).message }));
    return { status: "succeeded" };
  } catch (error) {
    const message = (error as Error).message.slice(0, 500);
    deps.log.warn("event mail could not be prepared", { deliveryId: delivery.id, eventType: event.type, error: message });
    const [row] = await db
      .update(eventDeliveries)
      .set({ attempts: sql`${eventDeliveries.attempts} + 1`, lastAttemptAt: new Date(), lastError: message })
      .where(current)
      .returning({ attempts: eventDeliveries.attempts });
    if (!row) return { status: "skipped", reason: "the delivery changed meanwhile" };
    const delayMs = EMAIL_RETRY_MS[row.attempts - 1];
    if (delayMs === undefined) {
      await db.update(eventDeliveries).set({ status: "failed", completedAt: new Date() }).where(current);
      return { status: "failed", reason: message };
    }
    await db
      .update(eventDeliveries)
      .set({ nextAttemptAt: new Date(Date.now() + delayMs) })
      .where(current);
    return { status: "retry", delayMs };
  }
}
