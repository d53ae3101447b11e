import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { Config } from "../config";
import type { Redis } from "../redis";

/**
 * Every rate limit of the platform, on Redis (rate-limiter-flexible), so all
 * API processes share them. Keys live under `${REDIS_PREFIX}:rl:<limit>:`;
 * account-derived keys are opaque (an HMAC of the email, a user or key id).
 *
 * Two families, failing differently when Redis does not answer:
 * - the abuse limits of the sign-in flows (per IP, per mailbox, password
 *   attempts) fail closed: the procedure answers 503 rather than run unchecked;
 * - the budgets of authenticated calls (per account, per API key) fall back to
 *   a per-process memory limiter with the same budget, so an outage of Redis
 *   does not stop reads that need no Redis at all.
 */

/** Fixed windows of the sign-in limits (docs/api.md, "Abuse protection"). */
export const AUTH_WINDOWS_S = { login: 15 * 60, register: 60 * 60, reset: 60 * 60, mail: 60 * 60 } as const;
export type AuthLimit = keyof typeof AUTH_WINDOWS_S;

/** Budgets of authenticated calls are points per minute. */
export const BUDGET_WINDOW_S = 60;

export type Limiters = ReturnType<typeof createLimiters>;

export function createLimiters(redis: Redis, config: Config) {
  const prefix = (name: string) => `${config.redis.prefix}:rl:${name}`;
  const { limits } = config.auth;
  const store = (name: string, points: number, duration: number, insured = false) =>
    new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: prefix(name),
      points,
      duration,
      // Without a connection, do not send (and wait): refuse at once, or use the insurance.
      rejectIfRedisNotReady: true,
      ...(insured ? { insuranceLimiter: new RateLimiterMemory({ keyPrefix: prefix(`${name}:memory`), points, duration }) } : {}),
    });
  const budget = config.api.budgets;
  return {
    auth: {
      login: store("login", limits.loginPerIp, AUTH_WINDOWS_S.login),
      register: store("register", limits.registerPerIp, AUTH_WINDOWS_S.register),
      reset: store("reset", limits.resetPerIp, AUTH_WINDOWS_S.reset),
      mail: store("mail", limits.mailPerAccount, AUTH_WINDOWS_S.mail),
    } satisfies Record<AuthLimit, RateLimiterRedis>,
    /** Password attempts per account: counted before the check; the failure that exhausts them blocks for the lockout. */
    passwordAttempts: store("attempts", config.auth.loginMaxFailures, Math.ceil(config.auth.lockoutMs / 1000)),
    /** Null when the budget is 0 (off). */
    account: budget.accountPerMinute > 0 ? store("account", budget.accountPerMinute, BUDGET_WINDOW_S, true) : null,
    apiKey: budget.apiKeyPerMinute > 0 ? store("apikey", budget.apiKeyPerMinute, BUDGET_WINDOW_S, true) : null,
  };
}

/** The refusal of a limiter (as opposed to a Redis failure, which rejects with an Error). */
export function isRefusal(reason: unknown): reason is RateLimiterRes {
  return reason instanceof RateLimiterRes;
}

export function retryAfterSeconds(refusal: RateLimiterRes): number {
  return Math.max(1, Math.ceil(refusal.msBeforeNext / 1000));
}
