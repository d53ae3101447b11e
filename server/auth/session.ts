import { DrizzlePostgreSQLAdapter } from "@lucia-auth/adapter-drizzle";
import { and, eq, ne } from "drizzle-orm";
import { Lucia, TimeSpan } from "lucia";
import type { Database } from "../../db/client";
import { sessions, users } from "../../db/schema";

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

    async create(userId: string, meta: { ip: string | null; userAgent: string | null }) {
      const token = generateToken();
      const id = await hashToken(token);
      const absoluteExpiresAt = new Date(Date.now() + ABSOLUTE_LIFETIME_DAYS * 86_400_000);
      const attributes = { absoluteExpiresAt, ip: meta.ip, userAgent: meta.userAgent?.slice(0, 512) ?? null };
      const session = await lucia.createSession(userId, attributes, { sessionId: id });
      if (session.id !== id) throw new Error("session id was not the token hash");
      return { token, sessionId: id, expiresAt: session.expiresAt, cookie: lucia.createSessionCookie(token).serialize() };
    },

    /** Resolves a client token to its session and user, or null. */
    async validate(token: string): Promise<{ session: ValidSession; user: SessionUser } | null> {
      if (!/^[a-z0-9]{40,80}$/.test(token)) return null;
      const id = await hashToken(token);
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

    invalidate: (sessionId: string) => lucia.invalidateSession(sessionId),

    /** Ends every session of the user, or every one but `keepSessionId`. */
    async invalidateAll(userId: string, keepSessionId?: string) {
      const where = keepSessionId ? and(eq(sessions.userId, userId), ne(sessions.id, keepSessionId)) : eq(sessions.userId, userId);
      await db.delete(sessions).where(where);
    },
  };
}

/** 256 bits from the CSPRNG, lower-case base32-ish alphabet (cookie and header safe). */
export function generateToken(bytes = 32): string {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(buffer << (5 - bits)) & 31];
  return out;
}

export async function hashToken(token: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  return Buffer.from(digest).toString("hex");
}
