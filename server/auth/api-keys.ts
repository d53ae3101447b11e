import { and, count, desc, eq, isNull, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { apiKeys, users } from "../../db/schema";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import { recordEvent } from "../events/outbox";
import { SCOPES, type Scope } from "./actor";
import type { AccountCaller, SessionCaller } from "./accounts";
import { uncached, type AuthCache } from "./cache";
import type { SessionUser } from "./session";
import { credentialMac, generateToken } from "./tokens";

/**
 * API keys for programmatic clients. A key is `sahary_` + 52 base32
 * characters: the prefix lets the resolver tell it from a session token (and
 * secret scanners find leaked ones). The database keeps an HMAC of the key
 * and its first characters; the key itself is returned once, at creation.
 */

export const API_KEY_PREFIX = "sahary_";
const API_KEY_PATTERN = /^sahary_[a-z2-7]{52}$/;
const SHOWN_CHARACTERS = API_KEY_PREFIX.length + 6;
export const MAX_ACTIVE_KEYS = 25;
/** Writing last-used on every request would turn each read into a write; a minute is precise enough. */
const LAST_USED_RESOLUTION_MS = 60_000;

const isScope = (value: string): value is Scope => (SCOPES as readonly string[]).includes(value);

function listed(row: typeof apiKeys.$inferSelect) {
  return {
    id: row.id,
    name: row.name,
    start: row.start,
    scopes: row.scopes.filter(isScope),
    createdAt: row.createdAt.toISOString(),
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
  };
}

export async function createApiKey(db: Database, secret: string, caller: SessionCaller, input: { name: string; scopes: readonly Scope[] }) {
  const userId = caller.actor.user.id;
  const scopes = SCOPES.filter((scope) => input.scopes.includes(scope));
  const key = API_KEY_PREFIX + generateToken();
  const created = await db.transaction(async (tx) => {
    // Serialises concurrent creations by the same user so the cap holds.
    await tx.select({ id: users.id }).from(users).where(eq(users.id, userId)).for("update");
    const [active] = await tx
      .select({ n: count() })
      .from(apiKeys)
      .where(and(eq(apiKeys.userId, userId), isNull(apiKeys.revokedAt)));
    if ((active?.n ?? 0) >= MAX_ACTIVE_KEYS) {
      throw new AppError("QUOTA_EXCEEDED", `At most ${MAX_ACTIVE_KEYS} active API keys; revoke one first`, { details: { limit: MAX_ACTIVE_KEYS } });
    }
    const [row] = await tx
      .insert(apiKeys)
      .values({ userId, name: input.name, start: key.slice(0, SHOWN_CHARACTERS), keyHash: credentialMac(secret, "api_key", key), scopes })
      .returning();
    await recordAudit(tx, caller, { action: "auth.api_key.created", targetType: "api_key", targetId: row!.id, metadata: { name: input.name, scopes } });
    await recordEvent(tx, { type: "account.security", userId, data: { kind: "api_key_created", apiKeyId: row!.id, apiKeyName: input.name, ...requestOf(caller) } });
    return row!;
  });
  return { ...listed(created), key };
}

/** The caller's active keys, newest first. Never the key itself. */
export async function listApiKeys(db: Database, caller: AccountCaller) {
  const rows = await db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.userId, caller.actor.user.id), isNull(apiKeys.revokedAt)))
    .orderBy(desc(apiKeys.createdAt));
  return rows.map(listed);
}

/** Revokes one of the caller's keys; someone else's key (or an unknown one) is NOT_FOUND. */
export async function revokeApiKey(db: Database, caller: SessionCaller, id: string) {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .update(apiKeys)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiKeys.id, id), eq(apiKeys.userId, caller.actor.user.id), isNull(apiKeys.revokedAt)))
      .returning();
    if (!row) throw new AppError("NOT_FOUND", "No such API key");
    await recordAudit(tx, caller, { action: "auth.api_key.revoked", targetType: "api_key", targetId: row.id, metadata: { name: row.name } });
    await recordEvent(tx, { type: "account.security", userId: row.userId, data: { kind: "api_key_revoked", apiKeyId: row.id, apiKeyName: row.name, ...requestOf(caller) } });
    return { id: row.id, revokedAt: row.revokedAt!.toISOString() };
  });
}

const requestOf = (caller: SessionCaller) => ({ ip: caller.request?.ip ?? null, userAgent: caller.request?.userAgent ?? null });
/**
 * Revokes every live key of the user (a password reset or change: whoever
 * knew the old password may have minted keys). Part of the caller's
 * transaction; returns how many were revoked.
 */
export async function revokeAllApiKeys(tx: Database, userId: string): Promise<number> {
  const revoked = await tx
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(and(eq(apiKeys.userId, userId), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id });
  return revoked.length;
}

/** How many live keys the user has (the password-change notice says they still work). */
export async function countLiveApiKeys(tx: Database, userId: string): Promise<number> {
  const [row] = await tx
    .select({ n: count() })
    .from(apiKeys)
    .where(and(eq(apiKeys.userId, userId), isNull(apiKeys.revokedAt)));
  return row?.n ?? 0;
}

export function looksLikeApiKey(credential: string): boolean {
  return credential.startsWith(API_KEY_PREFIX);
}

const lookups = new WeakMap<Database, ReturnType<typeof prepareLookup>>();
function lookup(db: Database) {
  let statement = lookups.get(db);
  if (!statement) {
    statement = prepareLookup(db);
    lookups.set(db, statement);
  }
  return statement;
}

function prepareLookup(db: Database) {
  return db
    .select({
      id: apiKeys.id,
      scopes: apiKeys.scopes,
      lastUsedAt: apiKeys.lastUsedAt,
      user: { id: users.id, email: users.email, name: users.name, role: users.role, status: users.status, emailVerifiedAt: users.emailVerifiedAt },
    })
    .from(apiKeys)
    .innerJoin(users, eq(apiKeys.userId, users.id))
    .where(and(eq(apiKeys.keyHash, sql.placeholder("keyHash")), isNull(apiKeys.revokedAt)))
    .prepare("auth_api_key_lookup");
}

/**
 * The owner and scopes of a live key, or null; from the process's credential
 * cache when given one (./cache.ts). Records last use at most once a minute.
 */
export async function authenticateApiKey(db: Database, secret: string, key: string, cache: AuthCache = uncached): Promise<{ apiKeyId: string; user: SessionUser; scopes: Scope[] } | null> {
  if (!API_KEY_PATTERN.test(key)) return null;
  const mac = credentialMac(secret, "api_key", key);
  const now = Date.now();
  let found = cache.apiKey(mac, now);
  if (!found) {
    const ticket = cache.ticket();
    const [row] = await lookup(db).execute({ keyHash: mac });
    if (!row) return null;
    found = cache.putApiKey(ticket, mac, { apiKeyId: row.id, scopes: row.scopes.filter(isScope), lastUsedAt: row.lastUsedAt?.getTime() ?? null, user: row.user }, now);
  }
  if (found.lastUsedAt === null || now - found.lastUsedAt >= LAST_USED_RESOLUTION_MS) {
    // Claimed before the write, so concurrent requests with this key write once.
    found.lastUsedAt = now;
    await db
      .update(apiKeys)
      .set({ lastUsedAt: new Date(now) })
      .where(eq(apiKeys.id, found.apiKeyId));
  }
  return { apiKeyId: found.apiKeyId, user: found.user.user, scopes: found.scopes };
}
