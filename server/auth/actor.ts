import type { SessionUser } from "./session";

/**
 * Who is acting. Attribution (audit rows, ownership) is always derived from the
 * actor, never from input.
 */
export type Actor =
  | { kind: "anonymous" }
  | { kind: "user"; user: SessionUser; sessionId: string; via: "cookie" | "bearer" }
  | { kind: "apiKey"; user: SessionUser; apiKeyId: string; scopes: readonly Scope[] }
  | { kind: "system"; name: string }
  | { kind: "webhook"; source: "stripe" };

export type AuthenticatedActor = Extract<Actor, { kind: "user" | "apiKey" }>;

/** What an API key may be allowed to do. Procedures name the scope they need. */
export const SCOPES = [
  "account:read",
  "compute:read",
  "compute:write",
  "billing:read",
  "billing:write",
  "energy:read",
  "notifications:read",
  "notifications:write",
  "webhooks:read",
  "webhooks:write",
] as const;
export type Scope = (typeof SCOPES)[number];

export const anonymous: Actor = { kind: "anonymous" };

export function systemActor(name: string): Actor {
  return { kind: "system", name };
}

/** The user id an audit row should carry for this actor, if any. */
export function actorUserId(actor: Actor): string | null {
  return actor.kind === "user" || actor.kind === "apiKey" ? actor.user.id : null;
}

/** Who made a request, for its log line: the user, and the API key when one was used. */
export function callerIds(actor: Actor): { userId?: string; apiKeyId?: string } {
  if (actor.kind === "user") return { userId: actor.user.id };
  if (actor.kind === "apiKey") return { userId: actor.user.id, apiKeyId: actor.apiKeyId };
  return {};
}
