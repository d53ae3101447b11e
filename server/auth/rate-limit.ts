import type { Services } from "../services";
import { AppError } from "../errors";
import { credentialMac } from "./tokens";

/**
 * Redis-backed abuse protection for the auth flows, shared by every API
 * process. Keys live under `${REDIS_PREFIX}:auth:`; account keys carry an HMAC
 * of the normalised email, never the address itself.
 *
 * Two mechanisms:
 * - fixed-window request limits (per IP, per account) -> RATE_LIMITED;
 * - a password-attempt counter per account: attempts are counted *before* the
 *   password is checked, so parallel guesses cannot exceed the allowance; the
 *   failure that exhausts it locks the account for LOGIN_LOCKOUT_MINUTES
 *   (ACCOUNT_LOCKED), a success clears it. Locking is keyed by email whether
 *   or not the account exists, so it reveals nothing.
 */

export type LimitDeps = Pick<Services, "redis" | "config">;

/** The limited actions and their fixed windows. */
export const WINDOWS_MS = {
  login: 15 * 60_000,
  register: 60 * 60_000,
  reset: 60 * 60_000,
  mail: 60 * 60_000,
} as const;
export type LimitBucket = keyof typeof WINDOWS_MS;

const FIXED_WINDOW = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}`;

// KEYS: attempts, lock. ARGV: window ms, max attempts, lockout ms.
// Returns {attempt, 0}, or {-1, ttl} when locked, or {-2, ttl} when this call locked it.
const BEGIN_ATTEMPT = `
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then return {-1, ttl} end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  if redis.call('SET', KEYS[2], '1', 'PX', ARGV[3], 'NX') then return {-2, tonumber(ARGV[3])} end
  return {-1, redis.call('PTTL', KEYS[2])}
end
return {n, 0}`;

// KEYS: attempts, lock. ARGV: attempt, max attempts, lockout ms. Returns 1 when this failure locked the account.
const RECORD_FAILURE = `
if tonumber(ARGV[1]) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  if redis.call('SET', KEYS[2], '1', 'PX', ARGV[3], 'NX') then return 1 end
end
return 0`;

function key(deps: LimitDeps, ...parts: string[]): string {
  return [deps.config.redis.prefix, "auth", ...parts].join(":");
}

/** Account identities become opaque, fixed-length key parts. */
export function accountKey(deps: LimitDeps, email: string): string {
  return credentialMac(deps.config.secret, "rate_limit", email).slice(0, 32);
}

/** Counts one request against `bucket` for `who`; throws RATE_LIMITED beyond `limit` per window. */
export async function hitLimit(deps: LimitDeps, bucket: LimitBucket, who: string, limit: number): Promise<void> {
  const [count, ttl] = (await deps.redis.eval(FIXED_WINDOW, 1, key(deps, "rl", bucket, who), WINDOWS_MS[bucket])) as [number, number];
  if (count > limit) {
    const retryAfterSeconds = Math.max(1, Math.ceil(ttl / 1000));
    throw new AppError("RATE_LIMITED", `Too many requests; retry in ${retryAfterSeconds} s`, { details: { retryAfterSeconds } });
  }
}

export const ipKey = (ip: string | null) => ip ?? "unknown";

export type Attempt = { attempt: number } | { locked: true; lockedNow: boolean; retryAfterSeconds: number };

/** Counts a password attempt for the account before the password is checked. */
export async function beginPasswordAttempt(deps: LimitDeps, account: string): Promise<Attempt> {
  const { loginMaxFailures, lockoutMs } = deps.config.auth;
  const [n, ttl] = (await deps.redis.eval(BEGIN_ATTEMPT, 2, key(deps, "attempts", account), key(deps, "lock", account), lockoutMs, loginMaxFailures, lockoutMs)) as [number, number];
  if (n > 0) return { attempt: n };
  return { locked: true, lockedNow: n === -2, retryAfterSeconds: Math.max(1, Math.ceil(ttl / 1000)) };
}

/** Records that attempt `attempt` failed; true when it exhausted the allowance and locked the account. */
export async function recordPasswordFailure(deps: LimitDeps, account: string, attempt: number): Promise<boolean> {
  const { loginMaxFailures, lockoutMs } = deps.config.auth;
  const locked = await deps.redis.eval(RECORD_FAILURE, 2, key(deps, "attempts", account), key(deps, "lock", account), attempt, loginMaxFailures, lockoutMs);
  return locked === 1;
}

/** A correct password resets the count of failed attempts (not a lock in force). */
export async function clearPasswordFailures(deps: LimitDeps, account: string): Promise<void> {
  await deps.redis.del(key(deps, "attempts", account));
}

/** Proof of mailbox ownership (a password reset) lifts a lock. */
export async function liftLock(deps: LimitDeps, account: string): Promise<void> {
  await deps.redis.del(key(deps, "attempts", account), key(deps, "lock", account));
}

export function lockedError(retryAfterSeconds: number): AppError {
  return new AppError("ACCOUNT_LOCKED", `Too many failed attempts; this account is locked for ${retryAfterSeconds} s. Resetting the password lifts the lock.`, {
    details: { retryAfterSeconds },
  });
}
