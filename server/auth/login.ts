import { eq } from "drizzle-orm";
import { users } from "../../db/schema";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import { publicUser, type AuthDeps, type Caller, type SessionCaller } from "./accounts";
import { needsRehash, hashPassword, verifyAgainstNothing, verifyPassword } from "./password";
import { accountKey, beginPasswordAttempt, clearPasswordFailures, hitLimit, ipKey, lockedError, recordPasswordFailure } from "./rate-limit";

/**
 * Signing in and out. A login answers INVALID_CREDENTIALS alike for an
 * unknown email and a wrong password, spending an Argon2 verification in both
 * cases; the account's status is only disclosed to someone who knows its
 * password.
 */
export async function login(deps: AuthDeps, caller: Caller, input: { email: string; password: string }) {
  const { config, db } = deps;
  const request = caller.request;
  await hitLimit(deps, "login", ipKey(request?.ip ?? null));

  const account = accountKey(deps, input.email);
  const attempt = await beginPasswordAttempt(deps, account);
  const [user] = await db.select().from(users).where(eq(users.email, input.email));
  const target = user ? { targetType: "user", targetId: user.id } : {};

  if ("locked" in attempt) {
    await recordAudit(db, caller, { action: "auth.login.refused", reason: "locked", ...target, metadata: { email: input.email } });
    throw lockedError(attempt.retryAfterSeconds);
  }

  const ok = user ? await verifyPassword(input.password, user.passwordHash) : await verifyAgainstNothing(input.password, config.auth.passwordHash);
  if (!user || !ok) {
    const lockedNow = await recordPasswordFailure(deps, account, attempt.attempt);
    await db.transaction(async (tx) => {
      await recordAudit(tx, caller, { action: "auth.login.failed", ...target, metadata: { email: input.email, attempt: attempt.attempt } });
      if (lockedNow) await recordAudit(tx, caller, { action: "auth.account.locked", ...target, metadata: { email: input.email } });
    });
    throw new AppError("INVALID_CREDENTIALS", "Email or password is wrong");
  }
  await clearPasswordFailures(deps, account);

  if (user.status === "suspended") {
    await recordAudit(db, caller, { action: "auth.login.refused", reason: "suspended", ...target });
    throw new AppError("ACCOUNT_SUSPENDED", "This account is suspended");
  }

  const rehash = needsRehash(user.passwordHash, config.auth.passwordHash) ? await hashPassword(input.password, config.auth.passwordHash) : null;
  const sessionUser = { id: user.id, email: user.email, name: user.name, role: user.role, status: user.status, emailVerifiedAt: user.emailVerifiedAt };
  const session = await db.transaction(async (tx) => {
    if (rehash) await tx.update(users).set({ passwordHash: rehash }).where(eq(users.id, user.id));
    const created = await deps.sessions.create(user.id, { ip: request?.ip ?? null, userAgent: request?.userAgent ?? null }, tx);
    await recordAudit(
      tx,
      { actor: { kind: "user", user: sessionUser, sessionId: created.sessionId, via: "bearer" }, request },
      { action: "auth.login.succeeded", targetType: "user", targetId: user.id, metadata: rehash ? { passwordRehashed: true } : {} },
    );
    return created;
  });
  return { token: session.token, cookie: session.cookie, expiresAt: session.expiresAt.toISOString(), user: publicUser(sessionUser) };
}

/** Ends the caller's session server-side: the token stops working everywhere at once. */
export async function logout(deps: AuthDeps, caller: SessionCaller) {
  await deps.db.transaction(async (tx) => {
    await deps.sessions.invalidate(caller.actor.sessionId, tx);
    await recordAudit(tx, caller, { action: "auth.logout", targetType: "user", targetId: caller.actor.user.id });
  });
  return { signedOut: true };
}

/** Ends every other session of the caller (this one stays). */
export async function logoutAll(deps: AuthDeps, caller: SessionCaller) {
  const sessionsEnded = await deps.db.transaction(async (tx) => {
    const ended = await deps.sessions.invalidateAll(caller.actor.user.id, { keep: caller.actor.sessionId, tx });
    await recordAudit(tx, caller, { action: "auth.logout_all", targetType: "user", targetId: caller.actor.user.id, metadata: { sessionsEnded: ended } });
    return ended;
  });
  return { sessionsEnded };
}
