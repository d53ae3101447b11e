import type { DatabaseHandle } from "../../db/client";
import type { Listener } from "../../db/listen";
import type { Logger } from "../log";
import type { Scope } from "./actor";
import type { SessionUser } from "./session";

/**
 * What credentials resolve to, kept in this process so that an authenticated
 * request costs no database round trip: sessions (by token hash), API keys
 * (by key MAC) and their users (status, role, email...).
 *
 * Correctness rests on invalidation, not on expiry. Database triggers announce
 * every change to sessions, users and API keys on the `sahary_auth` channel
 * when the change commits (db/migrations, "auth_invalidation"), whoever made
 * it; each process drops its copy when the message arrives. The cache is used
 * only while this process is subscribed: until the subscription is confirmed,
 * and from the moment it is lost until it is back (when everything is
 * forgotten, since messages may have been missed), lookups go to the database.
 * The TTL bounds the damage of a message lost while the connection looked
 * alive (a half-open TCP connection).
 *
 * A lookup racing a change could read the old row and store it after the
 * change's message was handled: every message bumps `generation`, and a row
 * read before the bump is used for that request but not stored.
 *
 * Messages arrive a little after the commit, and on a busy machine after the
 * client has already been told the change is done. So that a change made
 * through the API applies to the very next request in every process,
 * `settle()` (awaited before answering such a request, server/app.ts) sends a
 * barrier on the channel and waits until every subscribed process has
 * acknowledged it; a process acknowledges after handling every message
 * committed before the barrier, which includes the change. A change written
 * straight to the database (psql, a script) applies as its message arrives,
 * typically within a millisecond; call `settle()` after it to wait for that.
 */

export const AUTH_CHANNEL = "sahary_auth";
/** How long `settle()` waits for the slowest process (a hung one) before giving up on it. */
export const SETTLE_TIMEOUT_MS = 2000;

export type AuthCacheOptions = { ttlMs: number; maxEntries: number };

type UserEntry = { user: SessionUser; at: number; live: boolean };
export type CachedSession = { userId: string; expiresAt: number; absoluteExpiresAt: number; user: UserEntry; at: number };
export type CachedApiKey = { apiKeyId: string; scopes: Scope[]; lastUsedAt: number | null; user: UserEntry; at: number };

/** Taken before a database read; storing the result needs it still current. */
export type Ticket = number;

export type AuthCache = ReturnType<typeof createAuthCache>;

export function createAuthCache(database: Pick<DatabaseHandle, "listen">, opts: AuthCacheOptions, log?: Logger) {
  const enabled = opts.ttlMs > 0 && opts.maxEntries > 0;
  const sessions = new Map<string, CachedSession>();
  const keys = new Map<string, CachedApiKey>();
  const keyMacs = new Map<string, string>();
  const users = new Map<string, UserEntry>();
  let generation = 0;
  let subscribed = false;
  let listener: Listener | undefined;
  let closed = false;
  /** Tells this process's acknowledgements apart from the others'. */
  const instance = crypto.randomUUID();
  /** Barriers this process is waiting on: who acknowledged, and how many are expected. */
  const barriers = new Map<string, { acks: Set<string>; expected: number; done(): void }>();

  function forgetAll() {
    generation++;
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

  function acknowledged(payload: string) {
    const [barrier, from] = payload.slice(2).split(":") as [string, string];
    const pending = barriers.get(barrier);
    if (!pending) return;
    pending.acks.add(from);
    if (pending.acks.size >= pending.expected) pending.done();
  }

  /**
   * A message from the channel: `s:<id>`, `u:<id>`, `k:<id>` or `*` from the
   * triggers; `b:<barrier>` and `a:<barrier>:<instance>` from `settle()`.
   */
  function handle(payload: string) {
    const id = payload.slice(2);
    switch (payload.slice(0, 2)) {
      case "s:":
        generation++;
        sessions.delete(id);
        return;
      case "u:":
        generation++;
        forgetUser(id);
        return;
      case "k:":
        generation++;
        forgetKey(id);
        return;
      case "b:":
        // Everything committed before the barrier has been handled (messages arrive in commit order).
        listener?.notify(`a:${id}:${instance}`).catch(() => {});
        return;
      case "a:":
        acknowledged(payload);
        return;
      default:
        if (payload === "*") forgetAll();
    }
  }

  /** Subscribes (once); lookups also call it, so processes that never resolve a credential (workers) hold no extra connection. */
  function start() {
    if (listener || closed || !enabled) return;
    listener = database.listen(AUTH_CHANNEL, {
      message: handle,
      up() {
        forgetAll();
        subscribed = true;
      },
      down(error) {
        subscribed = false;
        forgetAll();
        log?.warn("credential cache off: invalidation channel lost, resolving credentials from the database until it is back", {
          error: error instanceof Error ? error.message : undefined,
        });
      },
    });
  }

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
      return subscribed;
    },

    start,

    /**
     * Resolves once every process subscribed to the channel has handled every
     * change committed before the call (or after SETTLE_TIMEOUT_MS, logged).
     * Returns at once when this process is not subscribed: its own lookups
     * then go to the database, and it cannot hear the others.
     */
    async settle(): Promise<void> {
      if (!subscribed || !listener) return;
      const barrier = crypto.randomUUID();
      let done!: () => void;
      const settled = new Promise<void>((resolve) => (done = resolve));
      const pending = { acks: new Set<string>(), expected: Number.POSITIVE_INFINITY, done };
      barriers.set(barrier, pending);
      let timer: Timer | undefined;
      try {
        pending.expected = await listener.broadcast(`b:${barrier}`);
        if (pending.acks.size >= pending.expected) return;
        const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), SETTLE_TIMEOUT_MS)));
        if (await Promise.race([settled.then(() => false), timedOut])) {
          log?.warn("not every API process confirmed a credential change in time; the late ones apply it when its message arrives", {
            confirmed: pending.acks.size,
            expected: pending.expected,
          });
        }
      } catch (error) {
        log?.warn("could not confirm a credential change with the other API processes", { error: (error as Error).message });
      } finally {
        clearTimeout(timer);
        barriers.delete(barrier);
      }
    },

    /** Call before reading what you will `put`; null when nothing may be stored now. */
    ticket(): Ticket | null {
      start();
      return subscribed ? generation : null;
    },

    session(id: string, now: number): CachedSession | undefined {
      start();
      if (!subscribed) return undefined;
      const entry = sessions.get(id);
      if (!entry) return undefined;
      if (fresh(entry.at, now) && usable(entry.user, now)) return entry;
      sessions.delete(id);
      return undefined;
    },

    putSession(ticket: Ticket | null, id: string, row: { userId: string; expiresAt: number; absoluteExpiresAt: number; user: SessionUser }, now: number): CachedSession {
      if (ticket === null || ticket !== generation || !subscribed) return { ...row, user: { user: row.user, at: now, live: true }, at: now };
      const entry = { userId: row.userId, expiresAt: row.expiresAt, absoluteExpiresAt: row.absoluteExpiresAt, user: userEntry(row.user, now), at: now };
      sessions.set(id, entry);
      bound(sessions);
      return entry;
    },

    dropSession(id: string) {
      sessions.delete(id);
    },

    apiKey(mac: string, now: number): CachedApiKey | undefined {
      start();
      if (!subscribed) return undefined;
      const entry = keys.get(mac);
      if (!entry) return undefined;
      if (fresh(entry.at, now) && usable(entry.user, now)) return entry;
      keys.delete(mac);
      keyMacs.delete(entry.apiKeyId);
      return undefined;
    },

    putApiKey(ticket: Ticket | null, mac: string, row: { apiKeyId: string; scopes: Scope[]; lastUsedAt: number | null; user: SessionUser }, now: number): CachedApiKey {
      if (ticket === null || ticket !== generation || !subscribed) return { ...row, user: { user: row.user, at: now, live: true }, at: now };
      const entry = { apiKeyId: row.apiKeyId, scopes: row.scopes, lastUsedAt: row.lastUsedAt, user: userEntry(row.user, now), at: now };
      keys.set(mac, entry);
      keyMacs.set(row.apiKeyId, mac);
      bound(keys, (_, dropped) => keyMacs.delete(dropped.apiKeyId));
      return entry;
    },

    /** Entry counts, for tests and diagnostics. */
    size: () => ({ sessions: sessions.size, apiKeys: keys.size, users: users.size }),

    async close() {
      closed = true;
      subscribed = false;
      forgetAll();
      await listener?.close();
    },
  };
}

/** A cache that never stores: every lookup goes to the database. */
export const uncached: AuthCache = createAuthCache(
  {
    listen: () => {
      throw new Error("a disabled credential cache never listens");
    },
  },
  { ttlMs: 0, maxEntries: 0 },
);
