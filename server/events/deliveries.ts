import { and, eq, lt, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { eventDeliveries } from "../../db/schema";
import { jobId, type Queues } from "../../workers/queues";
import type { Logger } from "../log";

export type Delivery = typeof eventDeliveries.$inferSelect;
export type DeliveryRef = { id: string; generation: number };

export const deliveryJobId = (ref: DeliveryRef) => jobId("delivery", ref.id, ref.generation);

/**
 * BullMQ's own retries only cover a handler that throws unexpectedly (the
 * database is down); the delivery's schedule is kept by the handler, which
 * moves its job to `delayed` (docs/notifications.md, "Outgoing webhooks").
 */
const DELIVERY_JOB = { attempts: 8, backoff: { type: "exponential", delay: 5000 } } as const;

/**
 * Puts delivery jobs on the queue in one round trip. Ids are stable, so
 * enqueueing a delivery whose job exists is a no-op. Never throws: the rows
 * are committed, and the sweep enqueues whatever this could not.
 */
export async function enqueueDeliveries(deps: { queues: Queues; log: Logger }, refs: readonly DeliveryRef[], opts: { delayMs?: number } = {}): Promise<boolean> {
  if (refs.length === 0) return true;
  try {
    await deps.queues.queue("notify").addBulk(
      refs.map((ref) => ({
        name: "deliver",
        data: { deliveryId: ref.id, generation: ref.generation },
        opts: { ...DELIVERY_JOB, jobId: deliveryJobId(ref), ...(opts.delayMs ? { delay: opts.delayMs } : {}) },
      })),
    );
    return true;
  } catch (error) {
    deps.log.warn("delivery enqueue failed; the sweep will retry", { deliveries: refs.length, error: (error as Error).message });
    return false;
  }
}

/**
 * Deliveries that have been due for longer than `graceMs` and whose job is
 * gone (Redis lost it, or the process died between commit and enqueue) are
 * enqueued again. A job that ended while its row is still pending (it used up
 * BullMQ's retries on an outage) cannot be re-added under its id, so the row
 * moves to the next generation and gets a fresh job. The database is the truth.
 */
export async function requeueOverdueDeliveries(deps: { db: Database; queues: Queues; log: Logger }, graceMs: number, limit = 500) {
  const overdue = await deps.db
    .select({ id: eventDeliveries.id, generation: eventDeliveries.generation })
    .from(eventDeliveries)
    .where(and(eq(eventDeliveries.status, "pending"), lt(eventDeliveries.nextAttemptAt, new Date(Date.now() - graceMs))))
    .orderBy(eventDeliveries.nextAttemptAt)
    .limit(limit);
  const queue = deps.queues.queue("notify");
  const missing: DeliveryRef[] = [];
  for (const ref of overdue) {
    const job = await queue.getJob(deliveryJobId(ref));
    const state = job ? await job.getState() : "missing";
    if (state === "missing" || state === "unknown") {
      missing.push(ref);
    } else if (state === "completed" || state === "failed") {
      const [next] = await deps.db
        .update(eventDeliveries)
        .set({ generation: sql`${eventDeliveries.generation} + 1`, attempts: 0 })
        .where(and(eq(eventDeliveries.id, ref.id), eq(eventDeliveries.generation, ref.generation), eq(eventDeliveries.status, "pending")))
        .returning({ id: eventDeliveries.id, generation: eventDeliveries.generation });
      if (next) missing.push(next);
    }
  }
  if (missing.length) {
    deps.log.warn("re-enqueueing deliveries whose job was lost", { deliveries: missing.length });
    await enqueueDeliveries(deps, missing);
  }
  return { overdue: overdue.length, requeued: missing.length };
}
