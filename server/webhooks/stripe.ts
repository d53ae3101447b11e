import { Hono } from "hono";
import type Stripe from "stripe";
import type { AppEnv } from "../app";
import { applyStripeEvent } from "../billing/payments";
import { errorBody, httpStatusOf, type AppErrorCode } from "../errors";
import type { Services } from "../services";

/**
 * `POST /webhooks/stripe`. The body is read raw, before anything parses it,
 * and its signature checked with `constructEventAsync` (the synchronous
 * variant always fails on Bun, stack-pitfalls S-1) within the configured
 * tolerance. A forged or stale delivery gets 400 and changes nothing; a
 * verified one is applied once (a redelivery is acknowledged with 200 and
 * ignored). A failure to apply answers 500 so Stripe delivers it again.
 */
export function stripeWebhook(services: Services) {
  const routes = new Hono<AppEnv>();
  const { stripe, config, db, log } = services;

  routes.post("/webhooks/stripe", async (c) => {
    const raw = await c.req.text();
    const fail = (code: AppErrorCode, message: string) => c.json(errorBody(code, message, c.get("requestId") ?? null), httpStatusOf(code) as 400);
    const secret = config.stripe.webhookSecret;
    if (!stripe || !secret) return fail("DEPENDENCY_UNAVAILABLE", "Stripe webhooks are not configured");
    const signature = c.req.header("stripe-signature");
    if (!signature) return fail("WEBHOOK_SIGNATURE_INVALID", "Missing Stripe-Signature header");

    let event: Stripe.Event;
    try {
      event = await stripe.webhooks.constructEventAsync(raw, signature, secret, config.stripe.webhookToleranceS);
    } catch (error) {
      log.warn("stripe webhook refused", { requestId: c.get("requestId"), error: (error as Error).message });
      return fail("WEBHOOK_SIGNATURE_INVALID", "The Stripe signature does not match this payload, or it is too old");
    }
    const { duplicate, outcome } = await applyStripeEvent({ db, log, config }, event);
    log.info("stripe event", { eventId: event.id, type: event.type, duplicate, outcome });
    return c.json({ received: true, duplicate, outcome });
  });

  return routes;
}
