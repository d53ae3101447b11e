import { eq } from "drizzle-orm";
import { users } from "../../db/schema";
import { recordAudit } from "../audit";
import { AppError } from "../errors";
import { dispatchMail, queueMail } from "../mail/outbox";
import type { Services } from "../services";
import type { RequestInfo } from "../trpc";
import type { Actor } from "./actor";
import { findEmailToken, issueEmailToken } from "./email-tokens";
import { accountExistsMail, verificationMail } from "./mail";
import { assertStrongPassword, hashPassword } from "./password";
import { accountKey, hitLimit, ipKey } from "./rate-limit";
import type { SessionUser } from "./session";

/**
 * Accounts: registration, email verification, profile. Services take the
 * process's dependencies first and the caller (actor + request, for
 * attribution and limits) second, so routers, workers and scripts share them.
 */

export type AuthDeps = Pick<Services, "db" | "redis" | "limits" | "config" | "queues" | "sessions" | "log">;
export type Caller = { actor: Actor; request: RequestInfo | null };
export type SessionCaller = { actor: Extract<Actor, { kind: "user" }>; request: RequestInfo | null };
export type AccountCaller = { actor: Extract<Actor, { kind: "user" | "apiKey" }>; request: RequestInfo | null };

/** The account as its owner sees it (plain JSON). */
export function publicUser(user: SessionUser) {
  const { id, email, name, role, status, emailVerifiedAt } = user;
  return { id, email, name, role, status, emailVerifiedAt: emailVerifiedAt?.toISOString() ?? null };
}

/**
 * The outbox row is committed; a failed enqueue is picked up by the mail
 * sweep, so it must not turn a completed request into an error.
 */
export async function dispatchCommitted(deps: Pick<Services, "queues" | "log">, messageId: string): Promise<void> {
  try {
    await dispatchMail(deps.queues, messageId);
  } catch (error) {
    deps.log.warn("mail enqueue failed; the outbox sweep will retry", { messageId, error });
  }
}

/**
 * Creates an unverified account and mails a verification link. Whether the
 * address was free is never revealed: a taken address gets an "you already
 * have an account" mail instead, and the answer is the same. No session is
 * returned for the same reason; the client signs in with `login`.
 */
export async function register(deps: AuthDeps, caller: Caller, input: { email: string; password: string; name: string }) {
  const { config } = deps;
  await hitLimit(deps, "register", ipKey(caller.request?.ip ?? null));
  assertStrongPassword(input.password, input);
  await hitLimit(deps, "mail", accountKey(deps, input.email));
  // Hash before looking anything up: both outcomes spend the same time.
  const passwordHash = await hashPassword(input.password, config.auth.passwordHash);

  const messageId = await deps.db.transaction(async (tx) => {
    const [created] = await tx.insert(users).values({ email: input.email, name: input.name, passwordHash }).onConflictDoNothing({ target: users.email }).returning({ id: users.id });
    if (created) {
      const { token, expiresAt } = await issueEmailToken(tx, config.secret, created.id, "verify_email", config.auth.verifyTokenTtlMs);
      await recordAudit(tx, caller, { action: "auth.account.registered", targetType: "user", targetId: created.id });
      return queueMail(tx, verificationMail(config, input.email, token, expiresAt));
    }
    const [existing] = await tx.select({ id: users.id }).from(users).where(eq(users.email, input.email));
    await recordAudit(tx, caller, { action: "auth.account.register_existing", targetType: "user", ...(existing ? { targetId: existing.id } : {}) });
    return queueMail(tx, accountExistsMail(config, input.email));
  });
  await dispatchCommitted(deps, messageId);
  return { email: input.email, next: "verify_email" as const };
}

/** Consumes a verification token: the address is verified and an unverified account becomes active. */
export async function verifyEmail(deps: AuthDeps, caller: Caller, token: string) {
  const user = await deps.db.transaction(async (tx) => {
    const row = await findEmailToken(tx, deps.config.secret, "verify_email", token, { consume: true });
    const [current] = await tx.select().from(users).where(eq(users.id, row.userId)).for("update");
    if (!current) throw new AppError("TOKEN_INVALID", "This link is not valid");
    // A suspended account stays suspended: verifying an address is not an appeal.
    const [updated] = await tx
      .update(users)
      .set({ emailVerifiedAt: current.emailVerifiedAt ?? new Date(), ...(current.status === "unverified" ? { status: "active" as const } : {}) })
      .where(eq(users.id, current.id))
      .returning();
    await recordAudit(tx, caller, { action: "auth.email.verified", targetType: "user", targetId: current.id });
    return updated!;
  });
  return publicUser(user);
}

/** Mails a fresh verification link (the previous one stops working). */
export async function resendVerification(deps: AuthDeps, caller: SessionCaller) {
  const { config } = deps;
  const user = caller.actor.user;
  if (user.status !== "unverified") return { sent: false, reason: "already_verified" as const };
  await hitLimit(deps, "mail", accountKey(deps, user.email));
  const messageId = await deps.db.transaction(async (tx) => {
    const { token, expiresAt } = await issueEmailToken(tx, config.secret, user.id, "verify_email", config.auth.verifyTokenTtlMs);
    await recordAudit(tx, caller, { action: "auth.email.verification_sent", targetType: "user", targetId: user.id });
    return queueMail(tx, verificationMail(config, user.email, token, expiresAt));
  });
  await dispatchCommitted(deps, messageId);
  return { sent: true, reason: null };
}

export async function updateProfile(deps: AuthDeps, caller: SessionCaller, input: { name: string }) {
  const user = await deps.db.transaction(async (tx) => {
    const [updated] = await tx.update(users).set({ name: input.name }).where(eq(users.id, caller.actor.user.id)).returning();
    if (!updated) throw new AppError("NOT_FOUND", "Account not found");
    await recordAudit(tx, caller, { action: "auth.profile.updated", targetType: "user", targetId: updated.id, metadata: { fields: ["name"] } });
    return updated;
  });
  return publicUser(user);
}
