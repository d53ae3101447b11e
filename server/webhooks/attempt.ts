import { and, eq, gt, isNotNull, isNull, lt, or, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { eventDeliveries, webhookAttempts, webhookEndpoints } from "../../db/schema";
import { systemActor } from "../auth/actor";
import { recordAudit } from "../audit";
import type { Config } from "../config";
import type { Delivery } from "../events/deliveries";
import { recordEvent, wirePayload, type OutboxEvent } from "../events/outbox";
import type { Logger } from "../log";
import { failPendingDeliveries, policyFor, signingSecrets, type Endpoint } from "./endpoints";
import { signatureHeader } from "./secrets";
import { sendWebhook, type SendResult } from "./send";
import { resolveTarget, TargetRefused, checkUrlShape } from "./targets";

export type AttemptDeps = { db: Database; config: Config; log: Logger };

/** What became of a delivery after one attempt: done either way, or to be tried again after `delayMs`. */
export type AttemptOutcome = { status: "succeeded" | "failed" | "skipped"; reason?: string } | { status: "retry"; delayMs: number };

/** A receiver's Retry-After is honoured up to this; beyond it the schedule's own wait applies. */
const MAX_RETRY_AFTER_MS = 24 * 3_600_000;
const WEBHOOKS_ACTOR = systemActor("webhooks");
/** `last_success_at` is kept to the minute, as API keys' last use is. */
const LAST_SUCCESS_RESOLUTION_MS = 60_000;

/**
 * One attempt at a webhook delivery. The attempt is counted and its row
 * written before anything is sent, then the request goes to a checked
 * address, and the outcome is recorded in one transaction with its effect on
 * the endpoint:
 * - 2xx: delivered; the endpoint's failure streak ends.
 * - 410 Gone: the receiver asks us to stop; the endpoint is disabled at once.
 * - anything else (3xx, 4xx, 5xx, timeout, refused address): failed; retried
 *   after the next wait of WEBHOOK_RETRY_SCHEDULE (or the receiver's
 *   Retry-After, if longer), given up after the last. An endpoint failing for
 *   WEBHOOK_DISABLE_AFTER_HOURS with at least WEBHOOK_DISABLE_MIN_FAILURES
 *   failures in a row is disabled, and its owner told (webhook.endpoint_disabled).
 */
export async function attemptWebhook(deps: AttemptDeps, delivery: Delivery, endpoint: Endpoint, event: OutboxEvent): Promise<AttemptOutcome> {
  const { db, config } = deps;
  if (!endpoint.enabled) {
    await giveUp(db, delivery, "the endpoint is disabled");
    return { status: "failed", reason: "the endpoint is disabled" };
  }

  const attempt = await claimAttempt(db, delivery, endpoint.url);
  if (!attempt) return { status: "skipped", reason: "the delivery was finished or redelivered meanwhile" };

  const at = new Date();
  const body = wirePayload(event);
  let result: SendResult & { address: string | null };
  try {
    const target = await resolveTarget(checkUrlShape(endpoint.url, policyFor(config)), policyFor(config));
    const headers = {
      "webhook-id": event.id,
      "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
      "webhook-signature": signatureHeader(signingSecrets(config.secret, endpoint, at), event.id, at, body),
    };
    result = { ...(await sendWebhook(target, { headers, body }, { timeoutMs: config.webhooks.timeoutMs })), address: target.address };
  } catch (error) {
    // Nothing here touches the database: what can fail is the target (refused) or the sealed secret
    // (APP_SECRET changed). Either is this attempt's failure, counted like any other, so an endpoint
    // that can never be served is eventually disabled rather than retried forever.
    const reason = error instanceof TargetRefused ? `refused: ${error.message}` : `the signing secret cannot be used (${(error as Error).message}); rotate it`;
    result = { statusCode: null, durationMs: 0, body: null, retryAfterMs: null, error: reason, address: null };
  }
  return recordOutcome(deps, delivery, endpoint, attempt, result);
}

/** Counts the attempt on the delivery (only while it is pending in this generation) and writes its row. */
async function claimAttempt(db: Database, delivery: Delivery, url: string): Promise<{ id: string; number: number } | null> {
  return db.transaction(async (tx) => {
    await relaxCommit(tx);
    const [claimed] = await tx
      .update(eventDeliveries)
      .set({ attempts: sql`${eventDeliveries.attempts} + 1`, lastAttemptAt: new Date() })
      .where(and(eq(eventDeliveries.id, delivery.id), eq(eventDeliveries.status, "pending"), eq(eventDeliveries.generation, delivery.generation)))
      .returning({ attempts: eventDeliveries.attempts });
    if (!claimed) return null;
    const [row] = await tx.insert(webhookAttempts).values({ deliveryId: delivery.id, generation: delivery.generation, attempt: claimed.attempts, url }).returning({ id: webhookAttempts.id });
    return { id: row!.id, number: claimed.attempts };
  });
}

async function recordOutcome(
  deps: AttemptDeps,
  delivery: Delivery,
  endpoint: Endpoint,
  attempt: { id: string; number: number },
  result: SendResult & { address: string | null },
): Promise<AttemptOutcome> {
  const { db, config } = deps;
  const code = result.statusCode;
  const succeeded = code !== null && code >= 200 && code < 300;
  const gone = code === 410;
  const error = result.error ?? (succeeded ? null : code !== null && code >= 300 && code < 400 ? `redirect (${code}) not followed` : `HTTP ${code}`);
  const schedule = config.webhooks.retryScheduleMs;
  const retryable = !succeeded && !gone && attempt.number <= schedule.length;
  const delayMs = retryable ? Math.max(jittered(schedule[attempt.number - 1]!), Math.min(result.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS)) : 0;
  const now = new Date();

  return db.transaction(async (tx) => {
    await relaxCommit(tx);
    await tx
      .update(webhookAttempts)
      .set({ outcome: succeeded ? "succeeded" : "failed", statusCode: code, durationMs: result.durationMs, error, responseBody: result.body, address: result.address })
      .where(eq(webhookAttempts.id, attempt.id));
    const [current] = await tx
      .update(eventDeliveries)
      .set({
        status: succeeded ? "succeeded" : retryable ? "pending" : "failed",
        lastStatusCode: code,
        lastError: error,
        ...(retryable ? { nextAttemptAt: new Date(now.getTime() + delayMs) } : { completedAt: now }),
      })
      .where(and(eq(eventDeliveries.id, delivery.id), eq(eventDeliveries.generation, delivery.generation), eq(eventDeliveries.status, "pending")))
      .returning({ id: eventDeliveries.id });

    if (succeeded) {
      // Only when there is a streak to end or a stale last-success time: every delivery to a busy
      // endpoint writing its row would make them all queue on that one row lock.
      await tx
        .update(webhookEndpoints)
        .set({ consecutiveFailures: 0, failingSince: null, lastSuccessAt: now })
        .where(
          and(
            eq(webhookEndpoints.id, endpoint.id),
            or(
              gt(webhookEndpoints.consecutiveFailures, 0),
              isNotNull(webhookEndpoints.failingSince),
              isNull(webhookEndpoints.lastSuccessAt),
              lt(webhookEndpoints.lastSuccessAt, new Date(now.getTime() - LAST_SUCCESS_RESOLUTION_MS)),
            ),
          ),
        );
      return { status: "succeeded" } as const;
    }
    const [streak] = await tx
      .update(webhookEndpoints)
      .set({ consecutiveFailures: sql`${webhookEndpoints.consecutiveFailures} + 1`, failingSince: sql`coalesce(${webhookEndpoints.failingSince}, now())` })
      .where(eq(webhookEndpoints.id, endpoint.id))
      .returning();
    const sustained = streak && streak.consecutiveFailures >= config.webhooks.disableMinFailures && now.getTime() - (streak.failingSince ?? now).getTime() >= config.webhooks.disableAfterMs;
    const reason = gone ? "the receiver answered 410 Gone" : sustained ? `every delivery failed since ${streak.failingSince!.toISOString()} (${streak.consecutiveFailures} attempts in a row)` : null;
    if (reason && (await disableEndpoint(tx, endpoint, reason))) {
      deps.log.warn("webhook endpoint disabled", { endpointId: endpoint.id, reason });
      return { status: "failed", reason } as const;
    }
    // Redelivered or finished by another run meanwhile: this attempt's job has nothing more to do.
    if (!current) return { status: "skipped", reason: "the delivery changed during the attempt" } as const;
    return retryable ? ({ status: "retry", delayMs } as const) : ({ status: "failed", reason: error ?? "failed" } as const);
  });
}

/**
 * Disables the endpoint (once: false when it already was), ends its pending
 * deliveries and tells the owner in the same transaction.
 */
async function disableEndpoint(tx: Database, endpoint: Endpoint, reason: string): Promise<boolean> {
  const [disabled] = await tx
    .update(webhookEndpoints)
    .set({ enabled: false, disabledReason: reason, disabledAt: new Date() })
    .where(and(eq(webhookEndpoints.id, endpoint.id), eq(webhookEndpoints.enabled, true)))
    .returning({ id: webhookEndpoints.id });
  if (!disabled) return false;
  await failPendingDeliveries(tx, endpoint.id, `the endpoint was disabled: ${reason}`);
  await recordEvent(tx, { type: "webhook.endpoint_disabled", userId: endpoint.userId, data: { endpointId: endpoint.id, url: endpoint.url, reason } });
  await recordAudit(tx, { actor: WEBHOOKS_ACTOR }, { action: "webhooks.endpoint.disabled", targetType: "webhook_endpoint", targetId: endpoint.id, reason });
  return true;
}

async function giveUp(db: Database, delivery: Delivery, reason: string): Promise<void> {
  await db
    .update(eventDeliveries)
    .set({ status: "failed", lastError: reason, completedAt: new Date() })
    .where(and(eq(eventDeliveries.id, delivery.id), eq(eventDeliveries.generation, delivery.generation), eq(eventDeliveries.status, "pending")));
}

/** Up to 10 % more, so deliveries that failed together do not all come back at the same instant. */
const jittered = (ms: number) => Math.round(ms * (1 + Math.random() * 0.1));

/**
 * An attempt's bookkeeping commits without waiting for the WAL flush (on this
 * machine a flushed commit costs 10–20 ms, two per attempt, and dominated
 * delivery time). What a database crash could lose is the last moments of
 * attempt records: the delivery is then still pending and is sent again with
 * the same webhook-id, which receivers dedupe on anyway (at-least-once is the
 * contract). Nothing else is relaxed: events and fan-out commit durably.
 */
async function relaxCommit(tx: Database): Promise<void> {
  await tx.execute(sql`set local synchronous_commit = off`);
}
