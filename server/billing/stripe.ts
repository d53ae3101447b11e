import Stripe from "stripe";
import type { Config } from "../config";

export type StripeClient = Stripe;

/**
 * The Stripe client, or null when STRIPE_SECRET_KEY is unset (development:
 * paying is refused with a clear error). STRIPE_API_BASE points it at another
 * host (a local stand-in); unset, it talks to api.stripe.com. The code path
 * is the same either way.
 */
export function createStripeClient(config: Config): StripeClient | null {
  const { secretKey, apiBase } = config.stripe;
  if (!secretKey) return null;
  const base = apiBase ? new URL(apiBase) : null;
  return new Stripe(secretKey, {
    maxNetworkRetries: 2,
    timeout: 15_000,
    telemetry: false,
    ...(base ? { host: base.hostname, port: base.port || (base.protocol === "https:" ? 443 : 80), protocol: base.protocol === "https:" ? "https" : "http" } : {}),
  });
}
