import type { InvalidationChannel } from "../../db/invalidation";
import type { Scope } from "./actor";
import type { SessionUser } from "./session";

/**
 * What credentials resolve to, kept in this process so that an authenticated
 * request costs no database round trip: sessions (by token hash), API keys
 * (by key MAC) and their users (status, role, email...).
 *
 * Correctness rests on invalidation, not on expiry. Database triggers announce
 * every change to sessions, users and API keys on the changes channel
 * (db/invalidation.ts: subscription state, generations, barriers) when the
 * change commits (db/migrations, "auth_invalidation"), whoever made it; each
 * process drops its copy when the message arrives. Payloads: `s:<session id>`,
 * `u:<user id>`, `k:<api key id>`, `*`. The TTL bounds the damage of a
 * message lost while the connection looked alive (a half-open TCP
 * connection). A change made through the API applies to the very next request
 * in every process: its answer waits for the channel's `settle()`
 * (server/app.ts). A change written straight to the database (psql, a script)
 * applies as its message arrives, typically within a millisecond.
 */

export type AuthCacheOptions = { ttlMs: number; maxEntries: number };

type UserEntry = { user: SessionUser; at: number; live: boolean };
export type CachedSession = { userId: string; expiresAt: number; absoluteExpiresAt: number; user: UserEntry; at: number };
export type CachedApiKey = { apiKeyId: string; scopes: Scope[]; lastUsedAt: number | null; user: UserEntry; at: number };

/** Taken before a database read; storing the result needs it still current. */
export type Ticket = number;

export type AuthCache = ReturnType<typeof createAuthCache>;

export function createAuthCache(changes: InvalidationChannel | null, opts: AuthCacheOptions) {
  const enabled = changes !== null && opts.ttlMs > 0 && opts.maxEntries > 0;
  const sessions = new Map<string, CachedSession>();
  const keys = new Map<string, CachedApiKey>();
  const keyMacs = new Map<string, string>();
  const users = new Map<string, UserEntry>();

  function forgetAll() {
    sessions.clear();
    keys.clear();
    keyMacs.clear();
    for (const entry of users.values()) entry.live = false;
    users.clear();
  }

  function forgetUser(id: string) {
    const entry = users.get(id);
    if (entry) {
      entry.live = false;
      users.delete(id);
    }
  }

  function forgetKey(id: string) {
    const mac = keyMacs.get(id);
    if (mac !== undefined) {
      keys.delete(mac);
      keyMacs.delete(id);
    }
  }

  if (enabled) {
    changes.subscribe({
      reset: forgetAll,
      message(payload) {
        const id = payload.slice(2);
        switch (payload.slice(0, 2)) {
          case "s:":
            sessions.delete(id);
            return;
          case "u:":
            forgetUser(id);
            return;
          case "k:":
            forgetKey(id);
            return;
          default:
            if (payload === "*") forgetAll();
        }
      },
    });
  }
  /** Lookups answer from memory only while the channel is subscribed (it starts on the first lookup). */
  const active = () => enabled && changes.ready();
  const current = (ticket: Ticket | null) => enabled && changes.current(ticket);

  const fresh = (at: number, now: number) => now - at < opts.ttlMs;

  /** Keeps each map within its bound by dropping the oldest insertions. */
  function bound<V>(map: Map<string, V>, onDrop?: (key: string, value: V) => void) {
    while (map.size > opts.maxEntries) {
      const [key, value] = map.entries().next().value as [string, V];
      map.delete(key);
      onDrop?.(key, value);
    }
  }

  function userEntry(user: SessionUser, now: number): UserEntry {
    const existing = users.get(user.id);
    if (existing) {
      existing.user = user;
      existing.at = now;
      return existing;
    }
    const entry = { user, at: now, live: true };
    users.set(user.id, entry);
    bound(users, (_, dropped) => (dropped.live = false));
    return entry;
  }

  const usable = (user: UserEntry, now: number) => user.live && fresh(user.at, now);

  return {
    enabled,
    /** True while lookups may be answered from memory. */
    get active() {
      return enabled && changes.active;
    },

    /** Call before reading what you will `put`; null when nothing may be stored now. */
    ticket(): Ticket | null {
      return enabled ? changes.ticket() : null;
    },

    session(id: string, now: number): CachedSession | undefined {
      if (!active()) return undefined;
      const entry = sessions.get(id);
      if (!entry) return undefined;
      if (fresh(entry.at, now) && usable(entry.user, now)) return entry;
      sessions.delete(id);
      return undefined;
    },

    putSession(ticket: Ticket | null, id: string, row: { userId: string; expiresAt: number; absoluteExpiresAt: number; user: SessionUser }, now: number): CachedSession {
      if (!current(ticket)) return { ...row, user: { user: row.user, at: now, live: true }, at: now };
      const entry = { userId: row.userId, expiresAt: row.expiresAt, absoluteExpiresAt: row.absoluteExpiresAt, user: userEntry(row.user, now), at: now };
      sessions.set(id, entry);
      bound(sessions);
      return entry;
    },

    dropSession(id: string) {
      sessions.delete(id);
    },

    apiKey(mac: string, now: number): CachedApiKey | undefined {
      if (!active()) return undefined;
      const entry = keys.get(mac);
      if (!entry) return undefined;
      if (fresh(entry.at, now) && usable(entry.user, now)) return entry;
      keys.delete(mac);
      keyMacs.delete(entry.apiKeyId);
      return undefined;
    },

    putApiKey(ticket: Ticket | null, mac: string, row: { apiKeyId: string; scopes: Scope[]; lastUsedAt: number | null; user: SessionUser }, now: number): CachedApiKey {
      if (!current(ticket)) return { ...row, user: { user: row.user, at: now, live: true }, at: now };
      const entry = { apiKeyId: row.apiKeyId, scopes: row.scopes, lastUsedAt: row.lastUsedAt, user: userEntry(row.user, now), at: now };
      keys.set(mac, entry);
      keyMacs.set(row.apiKeyId, mac);
      bound(keys, (_, dropped) => keyMacs.delete(dropped.apiKeyId));
      return entry;
    },

    /** Entry counts, for tests and diagnostics. */
    size: () => ({ sessions: sessions.size, apiKeys: keys.size, users: users.size }),
  };
}

/** A cache that never stores: every lookup goes to the database. */
export const uncached: AuthCache = createAuthCache(null, { ttlMs: 0, maxEntries: 0 });
