import Stripe from "stripe";

/**
 * A local stand-in for the parts of the Stripe API the platform calls,
 * answering with Stripe-shaped JSON and replaying a request that repeats an
 * idempotency key, as Stripe does. The real `stripe` client talks to it
 * through STRIPE_API_BASE; it records every request for assertions.
 * `signedEvent` builds webhook deliveries signed with the official helper.
 */
export type RecordedRequest = { method: string; path: string; idempotencyKey: string | null; params: Record<string, unknown> };

export const TEST_WEBHOOK_SECRET = "whsec_test_7f3c2a9e5b1d4c6a8e0f2b4d6c8a0e1f";
export const TEST_SECRET_KEY = "sk_test_51SaharyStandInKey0000000000000000";

export async function startStripeStandIn() {
  const requests: RecordedRequest[] = [];
  const intents = new Map<string, Record<string, unknown>>();
  const replays = new Map<string, unknown>();
  let counter = 0;

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const params = req.method === "POST" ? formToObject(new URLSearchParams(await req.text())) : Object.fromEntries(url.searchParams);
      const idempotencyKey = req.headers.get("idempotency-key");
      requests.push({ method: req.method, path: url.pathname, idempotencyKey, params });
      if (!req.headers.get("authorization")?.startsWith("Bearer sk_")) return stripeError(401, "authentication_error", "Invalid API Key provided");

      if (req.method === "POST" && url.pathname === "/v1/payment_intents") {
        if (idempotencyKey && replays.has(idempotencyKey)) return Response.json(replays.get(idempotencyKey), { headers: { "idempotent-replayed": "true" } });
        counter += 1;
        const id = `pi_standin${String(counter).padStart(8, "0")}${Math.random().toString(36).slice(2, 8)}`;
        const intent = {
          id,
          object: "payment_intent",
          amount: Number(params.amount),
          amount_received: 0,
          currency: params.currency,
          description: params.description ?? null,
          metadata: params.metadata ?? {},
          status: "requires_payment_method",
          client_secret: `${id}_secret_${Math.random().toString(36).slice(2, 12)}`,
          created: Math.floor(Date.now() / 1000),
          livemode: false,
          last_payment_error: null,
        };
        intents.set(id, intent);
        if (idempotencyKey) replays.set(idempotencyKey, intent);
        return Response.json(intent);
      }
      const retrieve = /^\/v1\/payment_intents\/([^/]+)$/.exec(url.pathname);
      if (req.method === "GET" && retrieve) {
        const intent = intents.get(retrieve[1]!);
        return intent ? Response.json(intent) : stripeError(404, "invalid_request_error", `No such payment_intent: '${retrieve[1]}'`, "resource_missing");
      }
      return stripeError(404, "invalid_request_error", `Unrecognized request URL (${req.method}: ${url.pathname}).`);
    },
  });

  const signer = new Stripe(TEST_SECRET_KEY);
  let eventCounter = 0;

  return {
    url: `http://127.0.0.1:${server.port}`,
    requests,
    intents,
    /** Configuration pointing the platform's client at this stand-in. */
    env: { STRIPE_SECRET_KEY: TEST_SECRET_KEY, STRIPE_WEBHOOK_SECRET: `${TEST_WEBHOOK_SECRET}\n`, STRIPE_API_BASE: `http://127.0.0.1:${server.port}` },
    /**
     * A Stripe event around `object`, serialised, and its Stripe-Signature header made
     * by the official helper (the async one: the synchronous helper cannot sign on Bun).
     */
    async signedEvent(type: string, object: Record<string, unknown>, opts: { id?: string; secret?: string; timestamp?: number; livemode?: boolean; account?: string } = {}) {
      eventCounter += 1;
      const payload = JSON.stringify({
        id: opts.id ?? `evt_standin${Date.now().toString(36)}${eventCounter}`,
        object: "event",
        api_version: "2025-01-01",
        created: Math.floor(Date.now() / 1000),
        livemode: opts.livemode ?? false,
        ...(opts.account ? { account: opts.account } : {}),
        pending_webhooks: 1,
        request: { id: null, idempotency_key: null },
        type,
        data: { object },
      });
      const header = await signer.webhooks.generateTestHeaderStringAsync({ payload, secret: opts.secret ?? TEST_WEBHOOK_SECRET, ...(opts.timestamp ? { timestamp: opts.timestamp } : {}) });
      return { payload, header };
    },
    /** The PaymentIntent as Stripe would send it in an event after `change`. */
    intentAfter(id: string, change: Record<string, unknown>) {
      const intent = intents.get(id);
      if (!intent) throw new Error(`the stand-in made no PaymentIntent ${id}`);
      // As Stripe does: a PaymentIntent that succeeded has received its amount (unless told otherwise).
      Object.assign(intent, change.status === "succeeded" && !("amount_received" in change) ? { amount_received: intent.amount } : {}, change);
      return { ...intent };
    },
    /** A Charge of the PaymentIntent as `charge.refunded` carries it. */
    refundedCharge(intentId: string, amountRefunded: number) {
      const intent = intents.get(intentId)!;
      return {
        id: `ch_${intentId.slice(3)}`,
        object: "charge",
        amount: intent.amount,
        amount_refunded: amountRefunded,
        refunded: amountRefunded >= Number(intent.amount),
        currency: intent.currency,
        payment_intent: intentId,
        metadata: intent.metadata,
        status: "succeeded",
        paid: true,
      };
    },
    close: () => server.stop(true),
  };
}

export type StripeStandIn = Awaited<ReturnType<typeof startStripeStandIn>>;

/** Posts a delivery to the platform's webhook endpoint. */
export function deliver(baseUrl: string, delivery: { payload: string; header: string | null }) {
  return fetch(`${baseUrl}/webhooks/stripe`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(delivery.header ? { "stripe-signature": delivery.header } : {}) },
    body: delivery.payload,
  });
}

function stripeError(status: number, type: string, message: string, code?: string) {
  return Response.json({ error: { type, message, ...(code ? { code } : {}) } }, { status });
}

/** Stripe's form encoding (`metadata[invoiceId]=…`, `automatic_payment_methods[enabled]=true`) back into objects. */
function formToObject(form: URLSearchParams): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of form) {
    const parts = key.replaceAll("]", "").split("[");
    let node = out;
    for (const part of parts.slice(0, -1)) {
      node[part] ??= {};
      node = node[part] as Record<string, unknown>;
    }
    node[parts.at(-1)!] = value;
  }
  return out;
}
