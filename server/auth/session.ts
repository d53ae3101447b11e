import { DrizzlePostgreSQLAdapter } from "@lucia-auth/adapter-drizzle";
import { and, eq, ne } from "drizzle-orm";
import { Lucia, TimeSpan } from "lucia";
import type { Database } from "../../db/client";
import { sessions, users } from "../../db/schema";
import { generateToken, sha256Hex, TOKEN_PATTERN } from "./tokens";

/**
 * The only module that knows Lucia exists. Lucia v3 is unmaintained and leaves
 * gaps (stack-pitfalls L-2, L-7) that are closed here:
 * - the client holds a random token; the database holds only its SHA-256, which
 *   is what Lucia sees as the session id;
 * - session attributes are built field by field, never spread from a row, so
 *   nothing can overwrite the id;
 * - an absolute lifetime is enforced beside Lucia's sliding expiry;
 * - production cookies use the `__Host-` prefix (Secure, Path=/, no Domain).
 */

export const SLIDING_LIFETIME_DAYS = 7;
export const ABSOLUTE_LIFETIME_DAYS = 30;

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
  /** True when the sliding expiry was just extended: the cookie should be re-sent. */
  refreshed: boolean;
};

function createLucia(db: Database, production: boolean) {
  const adapter = new DrizzlePostgreSQLAdapter(db, sessions, users);
  return new Lucia(adapter, {
    sessionExpiresIn: new TimeSpan(SLIDING_LIFETIME_DAYS, "d"),
    sessionCookie: {
      name: production ? "__Host-sahary_session" : "sahary_session",
      attributes: { secure: production, sameSite: "lax", path: "/" },
    },
    getSessionAttributes: (attributes) => ({ absoluteExpiresAt: attributes.absoluteExpiresAt }),
    getUserAttributes: (attributes) => ({
      email: attributes.email,
      name: attributes.name,
      role: attributes.role,
      status: attributes.status,
      emailVerifiedAt: attributes.emailVerifiedAt,
    }),
  });
}

declare module "lucia" {
  interface Register {
    Lucia: ReturnType<typeof createLucia>;
    UserId: string;
    DatabaseSessionAttributes: { absoluteExpiresAt: Date; ip: string | null; userAgent: string | null };
    DatabaseUserAttributes: typeof users.$inferSelect;
  }
}

export type SessionManager = ReturnType<typeof createSessionManager>;

export function createSessionManager(db: Database, opts: { production: boolean }) {
  const lucia = createLucia(db, opts.production);

  return {
    cookieName: lucia.sessionCookieName,

    /**
     * Starts a session. Pass the transaction that records the sign-in so the
     * session exists if and only if its audit row does.
     */
    async create(userId: string, meta: { ip: string | null; userAgent: string | null }, tx: Database = db) {
      const token = generateToken();
      const id = sha256Hex(token);
      const absoluteExpiresAt = new Date(Date.now() + ABSOLUTE_LIFETIME_DAYS * 86_400_000);
      const attributes = { absoluteExpiresAt, ip: meta.ip, userAgent: meta.userAgent?.slice(0, 512) ?? null };
      const writer = tx === db ? lucia : createLucia(tx, opts.production);
      const session = await writer.createSession(userId, attributes, { sessionId: id });
      if (session.id !== id) throw new Error("session id was not the token hash");
      return { token, sessionId: id, expiresAt: session.expiresAt, cookie: lucia.createSessionCookie(token).serialize() };
    },

    /** Resolves a client token to its session and user, or null. */
    async validate(token: string): Promise<{ session: ValidSession; user: SessionUser } | null> {
      if (!TOKEN_PATTERN.test(token)) return null;
      const id = sha256Hex(token);
      const { session, user } = await lucia.validateSession(id);
      if (!session || !user) return null;
      if (session.absoluteExpiresAt.getTime() <= Date.now()) {
        await lucia.invalidateSession(id);
        return null;
      }
      return {
        session: { id, userId: session.userId, expiresAt: session.expiresAt, absoluteExpiresAt: session.absoluteExpiresAt, refreshed: session.fresh },
        user: { id: user.id, email: user.email, name: user.name, role: user.role, status: user.status, emailVerifiedAt: user.emailVerifiedAt },
      };
    },

    cookieFor: (token: string) => lucia.createSessionCookie(token).serialize(),
    blankCookie: () => lucia.createBlankSessionCookie().serialize(),
    readCookie: (cookieHeader: string) => lucia.readSessionCookie(cookieHeader),

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
