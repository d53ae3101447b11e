import { and, eq, isNull } from "drizzle-orm";
import type { Database } from "../../db/client";
import { emailTokens } from "../../db/schema";
import { AppError } from "../errors";
import { credentialMac, generateToken, TOKEN_PATTERN } from "./tokens";

/**
 * Single-use, expiring tokens delivered by email. One live token per user and
 * purpose: issuing a new one retires the previous, so only the latest link works.
 */

export type EmailTokenPurpose = (typeof emailTokens.$inferSelect)["purpose"];

export async function issueEmailToken(tx: Database, secret: string, userId: string, purpose: EmailTokenPurpose, ttlMs: number): Promise<{ token: string; expiresAt: Date }> {
  await tx.delete(emailTokens).where(and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, purpose), isNull(emailTokens.usedAt)));
  const token = generateToken();
  const expiresAt = new Date(Date.now() + ttlMs);
  await tx.insert(emailTokens).values({ userId, purpose, tokenHash: credentialMac(secret, purpose, token), expiresAt });
  return { token, expiresAt };
}

/**
 * The live token's row, or TOKEN_INVALID (unknown, used, retired, malformed) /
 * TOKEN_EXPIRED. With `consume`, call inside the transaction that acts on it:
 * the row is locked and marked used, so a second use fails even in a race.
 */
export async function findEmailToken(db: Database, secret: string, purpose: EmailTokenPurpose, token: string, opts: { consume: boolean }) {
  if (!TOKEN_PATTERN.test(token)) throw invalid();
  const query = db
    .select()
    .from(emailTokens)
    .where(and(eq(emailTokens.tokenHash, credentialMac(secret, purpose, token)), eq(emailTokens.purpose, purpose)));
  const [row] = opts.consume ? await query.for("update") : await query;
  if (!row || row.usedAt) throw invalid();
  if (row.expiresAt.getTime() <= Date.now()) throw new AppError("TOKEN_EXPIRED", "This link has expired; ask for a new one");
  if (opts.consume) await db.update(emailTokens).set({ usedAt: new Date() }).where(eq(emailTokens.id, row.id));
  return row;
}

/** Retires every unused token of the purpose (e.g. all reset links once the password changed). */
export async function retireEmailTokens(tx: Database, userId: string, purpose: EmailTokenPurpose): Promise<void> {
  await tx.delete(emailTokens).where(and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, purpose), isNull(emailTokens.usedAt)));
}

function invalid(): AppError {
  return new AppError("TOKEN_INVALID", "This link is not valid; it may have been used already");
}
