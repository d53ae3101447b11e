import { and, eq, lt, ne, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { sessions, users } from "../../db/schema";
import { uncached, type AuthCache, type CachedSession } from "./cache";
import { generateToken, sha256Hex, TOKEN_PATTERN } from "./tokens";

/**
 * Sessions, after Lucia's own guide for replacing Lucia v3 (lucia-auth.com,
 * "Sessions"): the client holds a random token (256 bits, base32); the
 * database holds only its SHA-256, the session id, so a copy of the table
 * yields no usable credential. On top of the guide:
 * - a sliding expiry (refreshed when half of it has passed) and an absolute
 *   lifetime that no refresh extends;
 * - at most one refresh write (and one Set-Cookie) per session per refresh
 *   window, also under concurrency and across processes: one refresh in
 *   flight per session in this process, and a conditional UPDATE that only
 *   one process can win;
 * - lookups answered from the process's credential cache (./cache.ts) when
 *   one is given, the database otherwise, through prepared statements;
 * - production cookies use the `__Host-` prefix (Secure, Path=/, no Domain).
 *
 * Same token format, hash and table as under Lucia: sessions issued before
 * the change stay valid.
 */

export const SLIDING_LIFETIME_DAYS = 7;
export const ABSOLUTE_LIFETIME_DAYS = 30;
const SLIDING_MS = SLIDING_LIFETIME_DAYS * 86_400_000;
const ABSOLUTE_MS = ABSOLUTE_LIFETIME_DAYS * 86_400_000;
/** A session is refreshed once less than this is left of its sliding expiry. */
const REFRESH_WITHIN_MS = SLIDING_MS / 2;

export type SessionUser = {
  id: string;
  email: string;
  name: string;
  role: (typeof users.$inferSelect)["role"];
  status: (typeof users.$inferSelect)["status"];
  emailVerifiedAt: Date | null;
};

export type ValidSession = {
  id: string;
  userId: string;
  expiresAt: Date;
  absoluteExpiresAt: Date;
  /** True when this request extended the sliding expiry: the cookie should be re-sent. */
  refreshed: boolean;
};

/** The session id for a client token. */
export const sessionIdOf = (token: string) => sha256Hex(token);

export type SessionManager = ReturnType<typeof createSessionManager>;

const userColumns = { id: users.id, email: users.email, name: users.name, role: users.role, status: users.status, emailVerifiedAt: users.emailVerifiedAt };

function prepareStatements(db: Database) {
  return {
    lookup: db
      .select({ userId: sessions.userId, expiresAt: sessions.expiresAt, absoluteExpiresAt: sessions.absoluteExpiresAt, user: userColumns })
      .from(sessions)
      .innerJoin(users, eq(users.id, sessions.userId))
      .where(eq(sessions.id, sql.placeholder("id")))
      .prepare("auth_session_lookup"),
    // Only a session still inside its refresh window is extended: of concurrent refreshes, one matches.
    refresh: db
      .update(sessions)
      .set({ expiresAt: sql`${sql.placeholder("expiresAt")}::timestamptz` })
      .where(and(eq(sessions.id, sql.placeholder("id")), lt(sessions.expiresAt, sql`${sql.placeholder("refreshBefore")}::timestamptz`)))
      .returning({ id: sessions.id })
      .prepare("auth_session_refresh"),
    remove: db
      .delete(sessions)
      .where(eq(sessions.id, sql.placeholder("id")))
      .prepare("auth_session_remove"),
  };
}

export function createSessionManager(db: Database, opts: { production: boolean; cache?: AuthCache }) {
  const cookieName = opts.production ? "__Host-sahary_session" : "sahary_session";
  const cookieAttributes = `; HttpOnly; Path=/; SameSite=Lax${opts.production ? "; Secure" : ""}`;
  const cache = opts.cache ?? uncached;
  let statements: ReturnType<typeof prepareStatements> | undefined;
  const prepared = () => (statements ??= prepareStatements(db));
  /** Refreshes in flight in this process, by session id: the others wait for it instead of writing too. */
  const refreshing = new Map<string, Promise<void>>();

  const cookie = (token: string, maxAgeSeconds: number) => `${cookieName}=${token}${cookieAttributes}; Max-Age=${maxAgeSeconds}`;
  const secondsUntil = (at: number) => Math.max(0, Math.floor((at - Date.now()) / 1000));

  async function find(id: string, now: number): Promise<CachedSession | null> {
    const cached = cache.session(id, now);
    if (cached) return cached;
    const ticket = cache.ticket();
    const [row] = await prepared().lookup.execute({ id });
    if (!row) return null;
    return cache.putSession(ticket, id, { userId: row.userId, expiresAt: row.expiresAt.getTime(), absoluteExpiresAt: row.absoluteExpiresAt.getTime(), user: row.user }, now);
  }

  /** Extends the sliding expiry; true if this call wrote it (and so should send the cookie). */
  async function refresh(id: string, session: CachedSession, now: number): Promise<boolean> {
    const inFlight = refreshing.get(id);
    if (inFlight) {
      await inFlight;
      return false;
    }
    let wrote = false;
    const expiresAt = Math.min(now + SLIDING_MS, session.absoluteExpiresAt);
    const writing = prepared()
      .refresh.execute({ id, expiresAt: new Date(expiresAt).toISOString(), refreshBefore: new Date(now + REFRESH_WITHIN_MS).toISOString() })
      .then((rows) => {
        wrote = rows.length > 0;
        // Lost the race to another process (or the session just ended): read it afresh next time.
        if (wrote) session.expiresAt = expiresAt;
        else cache.dropSession(id);
      });
    refreshing.set(id, writing);
    try {
      await writing;
    } finally {
      refreshing.delete(id);
    }
    return wrote;
  }

  return {
    cookieName,

    /**
     * Starts a session. Pass the transaction that records the sign-in so the
     * session exists if and only if its audit row does.
     */
    async create(userId: string, meta: { ip: string | null; userAgent: string | null }, tx: Database = db) {
      const token = generateToken();
      const id = sessionIdOf(token);
      const now = Date.now();
      const expiresAt = new Date(now + SLIDING_MS);
      // Listed field by field: nothing from a user row can reach the id (stack-pitfalls L-2).
      await tx.insert(sessions).values({
        id,
        userId,
        expiresAt,
        absoluteExpiresAt: new Date(now + ABSOLUTE_MS),
        ip: meta.ip,
        userAgent: meta.userAgent?.slice(0, 512) ?? null,
      });
      return { token, sessionId: id, expiresAt, cookie: cookie(token, SLIDING_MS / 1000) };
    },

    /** Resolves a client token to its session and user, or null. */
    async validate(token: string): Promise<{ session: ValidSession; user: SessionUser } | null> {
      if (!TOKEN_PATTERN.test(token)) return null;
      const id = sessionIdOf(token);
      const now = Date.now();
      const session = await find(id, now);
      if (!session) return null;
      if (now >= session.expiresAt || now >= session.absoluteExpiresAt) {
        cache.dropSession(id);
        await prepared().remove.execute({ id });
        return null;
      }
      const due = session.expiresAt - now < REFRESH_WITHIN_MS && session.expiresAt < session.absoluteExpiresAt;
      const refreshed = due ? await refresh(id, session, now) : false;
      return {
        session: { id, userId: session.userId, expiresAt: new Date(session.expiresAt), absoluteExpiresAt: new Date(session.absoluteExpiresAt), refreshed },
        user: session.user.user,
      };
    },

    /** The cookie that carries `token` until `expiresAt`. */
    cookieFor: (token: string, expiresAt: Date) => cookie(token, secondsUntil(expiresAt.getTime())),
    blankCookie: () => `${cookieName}=${cookieAttributes}; Max-Age=0`,
    /** The session token in a Cookie header, if any. */
    readCookie(cookieHeader: string): string | null {
      for (const part of cookieHeader.split(";")) {
        const at = part.indexOf("=");
        if (at > 0 && part.slice(0, at).trim() === cookieName) return part.slice(at + 1).trim();
      }
      return null;
    },

    /** Ends one session (by its id, the token hash); true if it existed. */
    async invalidate(sessionId: string, tx: Database = db): Promise<boolean> {
      const deleted = await tx.delete(sessions).where(eq(sessions.id, sessionId)).returning({ id: sessions.id });
      return deleted.length > 0;
    },

    /** Ends every session of the user, or every one but `keep`; returns how many ended. */
    async invalidateAll(userId: string, opts: { keep?: string; tx?: Database } = {}): Promise<number> {
      const where = opts.keep ? and(eq(sessions.userId, userId), ne(sessions.id, opts.keep)) : eq(sessions.userId, userId);
      const deleted = await (opts.tx ?? db).delete(sessions).where(where).returning({ id: sessions.id });
      return deleted.length;
    },
  };
}
