import { AppError } from "../errors";
import { isRefusal, retryAfterSeconds, type Limiters } from "./limiters";

/**
 * Budgets of authenticated calls. Each procedure costs points (`meta.cost`,
 * default 1; Docker-backed ones more); an HTTP request is charged once for all
 * the calls it carries (a tRPC batch), so the check is one Redis round trip per
 * request — two commands sent together for an API key, which spends from its
 * own budget and its account's. Anonymous calls are not charged here (the
 * sign-in flows have their own per-IP limits).
 */
export const DEFAULT_COST = 1;

export type Charge = { ok: true } | { ok: false; retryAfterSeconds: number; limit: "account" | "apiKey" };

/** Who spends: the account, and the API key when the call came with one. Null for an anonymous caller. */
export type Spender = { userId: string; apiKeyId: string | null } | null;

export async function chargeCaller(limiters: Pick<Limiters, "account" | "apiKey">, spender: Spender, cost: number): Promise<Charge> {
  if (cost <= 0 || !spender) return { ok: true };
  const spends: Array<Promise<unknown>> = [];
  const names: Array<"account" | "apiKey"> = [];
  if (limiters.account) {
    spends.push(limiters.account.consume(spender.userId, cost));
    names.push("account");
  }
  if (spender.apiKeyId && limiters.apiKey) {
    spends.push(limiters.apiKey.consume(spender.apiKeyId, cost));
    names.push("apiKey");
  }
  const results = await Promise.allSettled(spends);
  let refused: Charge | null = null;
  results.forEach((result, i) => {
    if (result.status === "fulfilled") return;
    // Insured limiters only reject with a refusal; anything else is a bug worth a 500.
    if (!isRefusal(result.reason)) throw result.reason;
    const wait = retryAfterSeconds(result.reason);
    if (!refused || (!refused.ok && wait > refused.retryAfterSeconds)) refused = { ok: false, retryAfterSeconds: wait, limit: names[i]! };
  });
  return refused ?? { ok: true };
}

export function budgetExceeded(charge: Extract<Charge, { ok: false }>): AppError {
  const whose = charge.limit === "apiKey" ? "this API key" : "this account";
  return new AppError("RATE_LIMITED", `Request budget of ${whose} exhausted; retry in ${charge.retryAfterSeconds} s`, {
    details: { retryAfterSeconds: charge.retryAfterSeconds, limit: charge.limit },
  });
}
