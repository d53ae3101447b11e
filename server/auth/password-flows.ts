import { eq } from "drizzle-orm";
import { users } from "../../db/schema";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import { recordEvent } from "../events/outbox";
import { queueMail } from "../mail/outbox";
import { dispatchCommitted, type AuthDeps, type Caller, type SessionCaller } from "./accounts";
import { countLiveApiKeys, revokeAllApiKeys } from "./api-keys";
import { findEmailToken, issueEmailToken, retireEmailTokens } from "./email-tokens";
import { passwordChangedMail, passwordResetMail } from "./mail";
import { assertStrongPassword, hashPassword, verifyPassword } from "./password";
import { accountKey, beginPasswordAttempt, clearPasswordFailures, hitLimit, ipKey, liftLock, lockedError, recordPasswordFailure } from "./rate-limit";

/**
 * Changing a password (knowing the current one) and resetting it (proving
 * the mailbox). Both end other sessions, retire outstanding reset links and
 * tell the owner by mail. Both revoke the account's API keys — whoever knew
 * the old password may have minted some — except that a change may keep them
 * on request (`keepApiKeys`: a routine rotation need not break automation);
 * a reset always revokes them (docs/api.md, "API keys and passwords").
 */

/**
 * requestPasswordReset answers no sooner than this after it starts, whether
 * or not the account exists, so the time it takes (writing a token and a
 * message, or not) tells nothing. The work fits well inside it.
 */
export const RESET_REQUEST_MIN_MS = 250;

export async function changePassword(deps: AuthDeps, caller: SessionCaller, input: { currentPassword: string; newPassword: string; keepApiKeys?: boolean | undefined }) {
  const { config, db } = deps;
  const me = caller.actor.user;
  assertStrongPassword(input.newPassword, me, input.newPassword === input.currentPassword ? ["same_as_current"] : []);

  // Guessing the current password from a stolen session counts like guessing at login.
  const account = accountKey(deps, me.email);
  const attempt = await beginPasswordAttempt(deps, account);
  if ("locked" in attempt) {
    throw lockedError(attempt.retryAfterSeconds);
  }
  const [row] = await db.select({ passwordHash: users.passwordHash }).from(users).where(eq(users.id, me.id));
  if (!row || !(await verifyPassword(input.currentPassword, row.passwordHash))) {
    const lockedNow = await recordPasswordFailure(deps, account, attempt.attempt);
    await db.transaction(async (tx) => {
      await recordAudit(tx, caller, { action: "auth.password.change_failed", targetType: "user", targetId: me.id, reason: "wrong current password" });
      if (lockedNow) await recordAudit(tx, caller, { action: "auth.account.locked", targetType: "user", targetId: me.id });
    });
    throw new AppError("INVALID_CREDENTIALS", "The current password is wrong");
  }
  await clearPasswordFailures(deps, account);

  const passwordHash = await hashPassword(input.newPassword, config.auth.passwordHash);
  const { sessionsEnded, apiKeysRevoked, messageId } = await db.transaction(async (tx) => {
    await tx.update(users).set({ passwordHash }).where(eq(users.id, me.id));
    const ended = await deps.sessions.invalidateAll(me.id, { keep: caller.actor.sessionId, tx });
    await retireEmailTokens(tx, me.id, "reset_password");
    const revoked = input.keepApiKeys ? 0 : await revokeAllApiKeys(tx, me.id);
    const keys = input.keepApiKeys ? { kept: await countLiveApiKeys(tx, me.id) } : { revoked };
    await recordAudit(tx, caller, { action: "auth.password.changed", targetType: "user", targetId: me.id, metadata: { sessionsEnded: ended, apiKeysRevoked: revoked } });
    await recordEvent(tx, { type: "account.security", userId: me.id, data: { kind: "password_changed", ip: caller.request?.ip ?? null, userAgent: caller.request?.userAgent ?? null } });
    return { sessionsEnded: ended, apiKeysRevoked: revoked, messageId: await queueMail(tx, passwordChangedMail(config, me.email, "changed", keys)) };
  });
  await dispatchCommitted(deps, messageId);
  return { sessionsEnded, apiKeysRevoked };
}

/**
 * Mails a reset link if the account exists. The answer, its errors (limits
 * count per address, existing or not) and its timing are the same either way.
 */
export async function requestPasswordReset(deps: AuthDeps, caller: Caller, input: { email: string }) {
  const started = performance.now();
  const { config, db } = deps;
  await hitLimit(deps, "reset", ipKey(caller.request?.ip ?? null));
  await hitLimit(deps, "mail", accountKey(deps, input.email));

  const [user] = await db.select({ id: users.id, email: users.email }).from(users).where(eq(users.email, input.email));
  if (user) {
    const messageId = await db.transaction(async (tx) => {
      const { token, expiresAt } = await issueEmailToken(tx, config.secret, user.id, "reset_password", config.auth.resetTokenTtlMs);
      await recordAudit(tx, caller, { action: "auth.password_reset.requested", targetType: "user", targetId: user.id });
      return queueMail(tx, passwordResetMail(config, user.email, token, expiresAt));
    });
    await dispatchCommitted(deps, messageId);
  } else {
    await recordAudit(db, caller, { action: "auth.password_reset.requested", reason: "no such account", metadata: { email: input.email } });
  }

  const wait = RESET_REQUEST_MIN_MS - (performance.now() - started);
  if (wait > 0) await Bun.sleep(wait);
  return { accepted: true };
}

/**
 * Sets a new password with a reset token (once). Every session ends, a lock
 * from failed logins is lifted, and an unverified address counts as verified:
 * the token came through that mailbox.
 */
export async function resetPassword(deps: AuthDeps, caller: Caller, input: { token: string; password: string }) {
  const { config, db } = deps;
  await hitLimit(deps, "reset", ipKey(caller.request?.ip ?? null));

  // Check the token and the password before the slow hash; consume it only after.
  const peeked = await findEmailToken(db, config.secret, "reset_password", input.token, { consume: false });
  const [owner] = await db.select().from(users).where(eq(users.id, peeked.userId));
  if (!owner) throw new AppError("TOKEN_INVALID", "This link is not valid");
  assertStrongPassword(input.password, owner);
  const passwordHash = await hashPassword(input.password, config.auth.passwordHash);

  const { sessionsEnded, apiKeysRevoked, messageId } = await db.transaction(async (tx) => {
    const token = await findEmailToken(tx, config.secret, "reset_password", input.token, { consume: true });
    const verified = owner.status === "unverified" ? { status: "active" as const, emailVerifiedAt: owner.emailVerifiedAt ?? new Date() } : {};
    await tx
      .update(users)
      .set({ passwordHash, ...verified })
      .where(eq(users.id, token.userId));
    await retireEmailTokens(tx, token.userId, "reset_password");
    const ended = await deps.sessions.invalidateAll(token.userId, { tx });
    const revoked = await revokeAllApiKeys(tx, token.userId);
    await recordAudit(tx, caller, { action: "auth.password_reset.completed", targetType: "user", targetId: token.userId, metadata: { sessionsEnded: ended, apiKeysRevoked: revoked } });
    await recordEvent(tx, { type: "account.security", userId: token.userId, data: { kind: "password_reset", ip: caller.request?.ip ?? null, userAgent: caller.request?.userAgent ?? null } });
    return { sessionsEnded: ended, apiKeysRevoked: revoked, messageId: await queueMail(tx, passwordChangedMail(config, owner.email, "reset", { revoked })) };
  });
  await liftLock(deps, accountKey(deps, owner.email));
  await dispatchCommitted(deps, messageId);
  return { sessionsEnded, apiKeysRevoked };
}
