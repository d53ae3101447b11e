import { and, count, desc, eq } from "drizzle-orm";
import type { Database } from "../../db/client";
import { eventDeliveries, users, webhookEndpoints } from "../../db/schema";
import type { Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import type { Config } from "../config";
import { AppError } from "../errors";
import type { EventType } from "../events/catalogue";
import { recordEvent } from "../events/outbox";
import type { RequestInfo } from "../trpc";
import { generateSecret, openSecret, sealSecret } from "./secrets";
import { targetPolicy, validateTargetUrl, type TargetPolicy } from "./targets";

export type Endpoint = typeof webhookEndpoints.$inferSelect;
export type EndpointDeps = { db: Database; config: Config };
export type EndpointOwner = { actor: Actor; request?: RequestInfo | null; ownerId: string };

/** Endpoints per customer: enough for every environment they run, few enough that fan-out stays cheap. */
export const MAX_ENDPOINTS = 20;

const policies = new WeakMap<Config, TargetPolicy>();
/** The configuration's target policy, built once (it lists the host's interfaces). */
export function policyFor(config: Config): TargetPolicy {
  let policy = policies.get(config);
  if (!policy) {
    policy = targetPolicy(config);
    policies.set(config, policy);
  }
  return policy;
}

export function endpointView(endpoint: Endpoint) {
  return {
    id: endpoint.id,
    url: endpoint.url,
    description: endpoint.description,
    eventTypes: endpoint.eventTypes as EventType[],
    enabled: endpoint.enabled,
    disabledReason: endpoint.disabledReason,
    disabledAt: endpoint.disabledAt?.toISOString() ?? null,
    /** Until then, deliveries are also signed with the secret the last rotation replaced. */
    previousSecretExpiresAt: endpoint.previousSecretExpiresAt?.toISOString() ?? null,
    consecutiveFailures: endpoint.consecutiveFailures,
    failingSince: endpoint.failingSince?.toISOString() ?? null,
    lastSuccessAt: endpoint.lastSuccessAt?.toISOString() ?? null,
    createdAt: endpoint.createdAt.toISOString(),
    updatedAt: endpoint.updatedAt.toISOString(),
  };
}

/**
 * Registers an endpoint. The URL is checked against the SSRF rules; the
 * signing secret is returned once, here, and stored sealed.
 */
export async function createEndpoint(deps: EndpointDeps, who: EndpointOwner, input: { url: string; description?: string | undefined; eventTypes?: EventType[] | undefined }) {
  const url = await validateTargetUrl(input.url, policyFor(deps.config));
  const secret = generateSecret();
  const endpoint = await deps.db.transaction(async (tx) => {
    // Serialises concurrent creations by the same customer so the cap holds.
    await tx.select({ id: users.id }).from(users).where(eq(users.id, who.ownerId)).for("update");
    const [existing] = await tx.select({ n: count() }).from(webhookEndpoints).where(eq(webhookEndpoints.userId, who.ownerId));
    if ((existing?.n ?? 0) >= MAX_ENDPOINTS) {
      throw new AppError("QUOTA_EXCEEDED", `At most ${MAX_ENDPOINTS} webhook endpoints; delete one first`, { details: { limit: MAX_ENDPOINTS } });
    }
    const [row] = await tx
      .insert(webhookEndpoints)
      .values({ userId: who.ownerId, url, description: input.description ?? "", eventTypes: unique(input.eventTypes ?? []), secretSealed: sealSecret(deps.config.secret, secret) })
      .returning();
    await recordAudit(tx, who, { action: "webhooks.endpoint.created", targetType: "webhook_endpoint", targetId: row!.id, metadata: { url, eventTypes: row!.eventTypes } });
    // Whoever adds an endpoint receives the account's events from then on: its owner hears of it, like a new API key.
    await recordEvent(tx, {
      type: "account.security",
      userId: who.ownerId,
      data: { kind: "webhook_endpoint_created", endpointId: row!.id, endpointUrl: url, ip: who.request?.ip ?? null, userAgent: who.request?.userAgent ?? null },
    });
    return row!;
  });
  return { endpoint: endpointView(endpoint), secret };
}

export async function listEndpoints(db: Database, ownerId: string) {
  const rows = await db.select().from(webhookEndpoints).where(eq(webhookEndpoints.userId, ownerId)).orderBy(desc(webhookEndpoints.createdAt), desc(webhookEndpoints.id));
  return rows.map(endpointView);
}

/** The owner's endpoint, locked for the rest of the transaction; anyone else's is NOT_FOUND. */
export async function lockEndpoint(tx: Database, ownerId: string | null, endpointId: string): Promise<Endpoint> {
  const [row] = await tx.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, endpointId)).for("update");
  if (!row || (ownerId !== null && row.userId !== ownerId)) throw new AppError("NOT_FOUND", "No such webhook endpoint", { details: { endpointId } });
  return row;
}

/**
 * Changes the URL, description, event filter, or enables/disables the
 * endpoint. Enabling one the platform disabled starts its failure count afresh.
 */
export async function updateEndpoint(
  deps: EndpointDeps,
  who: EndpointOwner,
  input: { id: string; url?: string | undefined; description?: string | undefined; eventTypes?: EventType[] | undefined; enabled?: boolean | undefined },
) {
  const url = input.url === undefined ? undefined : await validateTargetUrl(input.url, policyFor(deps.config));
  return deps.db.transaction(async (tx) => {
    const current = await lockEndpoint(tx, who.ownerId, input.id);
    const set: Partial<typeof webhookEndpoints.$inferInsert> = {};
    if (url !== undefined) set.url = url;
    if (input.description !== undefined) set.description = input.description;
    if (input.eventTypes !== undefined) set.eventTypes = unique(input.eventTypes);
    if (input.enabled === true && !current.enabled) Object.assign(set, { enabled: true, disabledReason: null, disabledAt: null, consecutiveFailures: 0, failingSince: null });
    if (input.enabled === false && current.enabled) Object.assign(set, { enabled: false, disabledReason: "disabled by its owner", disabledAt: new Date() });
    if (Object.keys(set).length === 0) return endpointView(current);
    const [row] = await tx.update(webhookEndpoints).set(set).where(eq(webhookEndpoints.id, current.id)).returning();
    if (input.enabled === false && current.enabled) await failPendingDeliveries(tx, current.id, "the endpoint was disabled by its owner");
    const { secretSealed: _s, previousSecretSealed: _p, ...changes } = set;
    await recordAudit(tx, who, { action: "webhooks.endpoint.updated", targetType: "webhook_endpoint", targetId: current.id, metadata: changes });
    return endpointView(row!);
  });
}

export async function deleteEndpoint(deps: EndpointDeps, who: EndpointOwner, endpointId: string) {
  return deps.db.transaction(async (tx) => {
    const current = await lockEndpoint(tx, who.ownerId, endpointId);
    // Its deliveries and their attempts go with it (cascade); jobs still queued find nothing and stop.
    await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.id, current.id));
    await recordAudit(tx, who, { action: "webhooks.endpoint.deleted", targetType: "webhook_endpoint", targetId: current.id, metadata: { url: current.url } });
    return { id: current.id, deleted: true };
  });
}

/**
 * Replaces the signing secret and returns the new one (once). The old one
 * keeps signing beside it for WEBHOOK_SECRET_GRACE_HOURS, so receivers can
 * switch without losing deliveries: during that time the header carries both
 * signatures.
 */
export async function rotateSecret(deps: EndpointDeps, who: EndpointOwner, endpointId: string) {
  const secret = generateSecret();
  return deps.db.transaction(async (tx) => {
    const current = await lockEndpoint(tx, who.ownerId, endpointId);
    const graceMs = deps.config.webhooks.secretGraceMs;
    const previousSecretExpiresAt = graceMs > 0 ? new Date(Date.now() + graceMs) : null;
    const [row] = await tx
      .update(webhookEndpoints)
      .set({
        secretSealed: sealSecret(deps.config.secret, secret),
        previousSecretSealed: previousSecretExpiresAt ? current.secretSealed : null,
        previousSecretExpiresAt,
      })
      .where(eq(webhookEndpoints.id, current.id))
      .returning();
    await recordAudit(tx, who, {
      action: "webhooks.endpoint.secret_rotated",
      targetType: "webhook_endpoint",
      targetId: current.id,
      metadata: { previousSecretExpiresAt: previousSecretExpiresAt?.toISOString() ?? null },
    });
    return { endpoint: endpointView(row!), secret };
  });
}

/** The secrets a delivery made now is signed with: the current one, then the previous one during its grace period. */
export function signingSecrets(appSecret: string, endpoint: Endpoint, now = new Date()): string[] {
  const secrets = [openSecret(appSecret, endpoint.secretSealed)];
  if (endpoint.previousSecretSealed && endpoint.previousSecretExpiresAt && endpoint.previousSecretExpiresAt > now) {
    secrets.push(openSecret(appSecret, endpoint.previousSecretSealed));
  }
  return secrets;
}

/** Ends the endpoint's pending deliveries (it was disabled); their queued jobs then find nothing to do. */
export async function failPendingDeliveries(tx: Database, endpointId: string, reason: string): Promise<void> {
  await tx
    .update(eventDeliveries)
    .set({ status: "failed", lastError: reason, completedAt: new Date() })
    .where(and(eq(eventDeliveries.endpointId, endpointId), eq(eventDeliveries.status, "pending")));
}

const unique = <T>(list: readonly T[]): T[] => [...new Set(list)];
