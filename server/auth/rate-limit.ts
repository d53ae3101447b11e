import type { Services } from "../services";
import { AppError } from "../errors";
import { isRefusal, retryAfterSeconds, type AuthLimit } from "../limits/limiters";
import { credentialMac } from "./tokens";

/**
 * Abuse protection for the sign-in flows, on the shared limiters
 * (server/limits/limiters.ts; they fail closed: without Redis these
 * procedures answer 503 rather than run unchecked). Account keys are an HMAC
 * of the normalised email, never the address itself.
 *
 * - fixed-window request limits per IP and per mailbox -> RATE_LIMITED;
 * - password attempts per account: counted *before* the password is checked,
 *   so parallel guesses cannot exceed the allowance; the failure that
 *   exhausts it locks the account for LOGIN_LOCKOUT_MINUTES (ACCOUNT_LOCKED),
 *   a success clears the count. Locking is keyed by email whether or not the
 *   account exists, so it reveals nothing.
 */

export type LimitDeps = Pick<Services, "limits" | "config">;

/** Account identities become opaque, fixed-length key parts. */
export function accountKey(deps: Pick<Services, "config">, email: string): string {
  return credentialMac(deps.config.secret, "rate_limit", email).slice(0, 32);
}

/** Counts one request against `limit` for `who`; throws RATE_LIMITED beyond its allowance. */
export async function hitLimit(deps: LimitDeps, limit: AuthLimit, who: string): Promise<void> {
  try {
    await deps.limits.auth[limit].consume(who);
  } catch (reason) {
    if (!isRefusal(reason)) throw unavailable(reason);
    const wait = retryAfterSeconds(reason);
    throw new AppError("RATE_LIMITED", `Too many requests; retry in ${wait} s`, { details: { retryAfterSeconds: wait } });
  }
}

export const ipKey = (ip: string | null) => ip ?? "unknown";

export type Attempt = { attempt: number } | { locked: true; retryAfterSeconds: number };

/** Counts a password attempt for the account before the password is checked. */
export async function beginPasswordAttempt(deps: LimitDeps, account: string): Promise<Attempt> {
  try {
    const counted = await deps.limits.passwordAttempts.consume(account);
    return { attempt: counted.consumedPoints };
  } catch (reason) {
    if (!isRefusal(reason)) throw unavailable(reason);
    return { locked: true, retryAfterSeconds: retryAfterSeconds(reason) };
  }
}

/**
 * Records that attempt `attempt` failed; true when it was the last allowed
 * one, which locks the account for the full lockout from now. Attempt numbers
 * are unique (one atomic increment each), so exactly one failure locks.
 */
export async function recordPasswordFailure(deps: LimitDeps, account: string, attempt: number): Promise<boolean> {
  if (attempt < deps.config.auth.loginMaxFailures) return false;
  await deps.limits.passwordAttempts.block(account, Math.ceil(deps.config.auth.lockoutMs / 1000));
  return true;
}

/** A correct password resets the count of failed attempts (a lock in force refuses it before it is checked). */
export async function clearPasswordFailures(deps: LimitDeps, account: string): Promise<void> {
  await deps.limits.passwordAttempts.delete(account);
}

/** Proof of mailbox ownership (a password reset) lifts a lock. */
export async function liftLock(deps: LimitDeps, account: string): Promise<void> {
  await deps.limits.passwordAttempts.delete(account);
}

/** These limits fail closed: without Redis the procedure answers 503 rather than run unchecked. */
function unavailable(cause: unknown): AppError {
  return new AppError("DEPENDENCY_UNAVAILABLE", "Sign-in protection is unavailable; retry shortly", { cause });
}

export function lockedError(retryAfterSeconds: number): AppError {
  return new AppError("ACCOUNT_LOCKED", `Too many failed attempts; this account is locked for ${retryAfterSeconds} s. Resetting the password lifts the lock.`, {
    details: { retryAfterSeconds },
  });
}
