import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, invoices, paymentEvents, payments, stripeEvents } from "../../db/schema";
import { runInvoicing } from "../../server/billing/invoicing";
import { seedInstance, seedUsage } from "../harness/billing";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { deliver, startStripeStandIn, type StripeStandIn } from "../harness/stripe";
import { createUserWithSession } from "../harness/users";

let stripe: StripeStandIn;
let app: TestServer;

beforeAll(async () => {
  stripe = await startStripeStandIn();
  app = await startTestServer({ env: stripe.env });
});
afterAll(async () => {
  await app.close();
  await stripe.close();
});

const HOUR = 3_600_000;
// Each invoice gets a month of its own, so runs for one test never invoice another's customers.
let month = 0;

/** A customer with one open invoice for 10 hours at 123¢ = 1,230¢. */
async function customerWithInvoice() {
  const session = await createUserWithSession(app.services);
  month += 1;
  const period = `2022-${String(month).padStart(2, "0")}`;
  const instance = await seedInstance(app.services, session.user.id, { priceHourlyMinor: 123, priceMonthlyMinor: 100_000 });
  await seedUsage(
    app.services,
    instance,
    Array.from({ length: 10 }, (_, i) => ({ hour: new Date(Date.UTC(2022, month - 1, 2, i)), runningMs: HOUR })),
  );
  await runInvoicing(app.services, { period });
  const [invoice] = await app.services.db
    .select()
    .from(invoices)
    .where(and(eq(invoices.userId, session.user.id), eq(invoices.period, period)));
  return { ...session, api: app.client({ token: session.token }), invoice: invoice! };
}

async function state(invoiceId: string) {
  const [invoice] = await app.services.db.select().from(invoices).where(eq(invoices.id, invoiceId));
  const rows = await app.services.db.select().from(payments).where(eq(payments.invoiceId, invoiceId));
  const history = rows.length ? await app.services.db.select().from(paymentEvents).where(eq(paymentEvents.paymentId, rows[0]!.id)) : [];
  return { invoice: invoice!, payment: rows[0], payments: rows.length, history: history.length };
}

async function paid() {
  const c = await customerWithInvoice();
  const started = await c.api.billing.invoices.pay.mutate({ id: c.invoice.id });
  return { ...c, started };
}

describe("paying an invoice", () => {
  test("creates one PaymentIntent for the amount due, with an idempotency key and the invoice linked", async () => {
    const c = await customerWithInvoice();
    expect(c.invoice).toMatchObject({ status: "open", totalMinor: 1230 });
    const before = stripe.requests.length;
    const started = await c.api.billing.invoices.pay.mutate({ id: c.invoice.id });
    expect(started).toMatchObject({ invoiceId: c.invoice.id, status: "pending", amountMinor: 1230, currency: "USD", provider: "stripe" });
    expect(started.clientSecret).toStartWith(`${started.providerPaymentId}_secret_`);

    const created = stripe.requests.slice(before).filter((r) => r.method === "POST");
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({ path: "/v1/payment_intents", idempotencyKey: `payment-${started.paymentId}` });
    expect(created[0]!.params).toMatchObject({ amount: "1230", currency: "usd", metadata: { invoiceId: c.invoice.id, paymentId: started.paymentId, invoiceNumber: c.invoice.number } });

    // Asking again resumes the same attempt: no second PaymentIntent.
    const again = await c.api.billing.invoices.pay.mutate({ id: c.invoice.id });
    expect(again).toMatchObject({ paymentId: started.paymentId, providerPaymentId: started.providerPaymentId, clientSecret: started.clientSecret });
    expect(stripe.requests.slice(before).filter((r) => r.method === "POST")).toHaveLength(1);
    expect((await state(c.invoice.id)).payments).toBe(1);

    const listed = await c.api.billing.payments.list.query();
    expect(listed.items).toHaveLength(1);
    expect(listed.items[0]).toMatchObject({ id: started.paymentId, invoiceNumber: c.invoice.number, status: "pending", history: [{ from: null, to: "pending" }] });
  });

  test("another user's invoice is NOT_FOUND and nothing reaches Stripe", async () => {
    const c = await customerWithInvoice();
    const other = await createUserWithSession(app.services);
    const before = stripe.requests.length;
    await expectAppError(app.client({ token: other.token }).billing.invoices.pay.mutate({ id: c.invoice.id }), "NOT_FOUND");
    expect(stripe.requests.length).toBe(before);
    expect((await state(c.invoice.id)).payments).toBe(0);
  });
});

describe("the Stripe webhook", () => {
  test("a forged, tampered, stale or missing signature gets 400 and changes nothing", async () => {
    const c = await paid();
    const object = stripe.intentAfter(c.started.providerPaymentId, { status: "succeeded", amount_received: 1230 });
    const forged = await stripe.signedEvent("payment_intent.succeeded", object, { secret: "whsec_not_the_platforms_secret_at_all" });
    const stale = await stripe.signedEvent("payment_intent.succeeded", object, { timestamp: Math.floor(Date.now() / 1000) - 10 * 60 });
    const genuine = await stripe.signedEvent("payment_intent.succeeded", object);
    const tampered = { payload: genuine.payload.replace('"amount_received":1230', '"amount_received":1'), header: genuine.header };

    for (const delivery of [forged, stale, tampered, { payload: genuine.payload, header: null }, { payload: genuine.payload, header: "t=1,v1=deadbeef" }]) {
      const response = await deliver(app.url, delivery);
      expect(response.status).toBe(400);
      const body = (await response.json()) as { error: { data: { appCode: string } } };
      expect(body.error.data.appCode).toBe("WEBHOOK_SIGNATURE_INVALID");
    }
    const after = await state(c.invoice.id);
    expect(after.invoice.status).toBe("open");
    expect(after.payment!.status).toBe("pending");
    const eventId = (JSON.parse(genuine.payload) as { id: string }).id;
    expect(await app.services.db.select().from(stripeEvents).where(eq(stripeEvents.id, eventId))).toHaveLength(0);
  });

  test("payment succeeded pays the invoice; the same event twice changes state once", async () => {
    const c = await paid();
    const delivery = await stripe.signedEvent("payment_intent.succeeded", stripe.intentAfter(c.started.providerPaymentId, { status: "succeeded", amount_received: 1230 }));

    const first = await deliver(app.url, delivery);
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ received: true, duplicate: false, outcome: "applied" });
    const once = await state(c.invoice.id);
    expect(once.invoice).toMatchObject({ status: "paid", amountPaidMinor: 1230 });
    expect(once.invoice.paidAt).not.toBeNull();
    expect(once.payment!.status).toBe("succeeded");

    const second = await deliver(app.url, delivery);
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ received: true, duplicate: true, outcome: null });
    const twice = await state(c.invoice.id);
    expect(twice.invoice).toEqual(once.invoice);
    expect(twice.history).toBe(once.history);
    const audits = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.targetId, c.started.paymentId), eq(auditLog.action, "billing.payment.succeeded")));
    expect(audits).toHaveLength(1);
    expect(audits[0]!.actorType).toBe("webhook");

    const view = await c.api.billing.invoices.get.query({ id: c.invoice.id });
    expect(view).toMatchObject({ status: "paid", amountPaidMinor: 1230, amountDueMinor: 0 });
    await expectAppError(c.api.billing.invoices.pay.mutate({ id: c.invoice.id }), "INVOICE_NOT_PAYABLE");
  });

  test("the same event delivered several times at once is applied by exactly one delivery", async () => {
    const c = await paid();
    const delivery = await stripe.signedEvent("payment_intent.succeeded", stripe.intentAfter(c.started.providerPaymentId, { status: "succeeded" }));
    const bodies = await Promise.all(Array.from({ length: 5 }, async () => (await (await deliver(app.url, delivery)).json()) as { duplicate: boolean }));
    expect(bodies.filter((b) => !b.duplicate)).toHaveLength(1);
    const after = await state(c.invoice.id);
    expect(after.invoice).toMatchObject({ status: "paid", amountPaidMinor: 1230 });
    expect(after.history).toBe(2);
  });

  test("a failure arriving after success does not un-pay; a failure first and a success later pays", async () => {
    const late = await paid();
    const pi = late.started.providerPaymentId;
    const succeeded = await stripe.signedEvent("payment_intent.succeeded", stripe.intentAfter(pi, { status: "succeeded" }));
    const failed = await stripe.signedEvent("payment_intent.payment_failed", stripe.intentAfter(pi, { status: "requires_payment_method", last_payment_error: { message: "Your card was declined." } }));
    expect((await deliver(app.url, succeeded)).status).toBe(200);
    const response = await deliver(app.url, failed);
    expect(await response.json()).toEqual({ received: true, duplicate: false, outcome: "ignored" });
    const after = await state(late.invoice.id);
    expect(after.invoice.status).toBe("paid");
    expect(after.payment!.status).toBe("succeeded");

    const retried = await paid();
    const pi2 = retried.started.providerPaymentId;
    await deliver(
      app.url,
      await stripe.signedEvent("payment_intent.payment_failed", stripe.intentAfter(pi2, { status: "requires_payment_method", last_payment_error: { message: "Your card was declined." } })),
    );
    const declined = await state(retried.invoice.id);
    expect(declined.invoice.status).toBe("open");
    expect(declined.payment).toMatchObject({ status: "failed", failureMessage: "Your card was declined." });
    // Paying again resumes the same PaymentIntent (the customer tries another card on it).
    expect((await retried.api.billing.invoices.pay.mutate({ id: retried.invoice.id })).providerPaymentId).toBe(pi2);
    await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", stripe.intentAfter(pi2, { status: "succeeded" })));
    expect((await state(retried.invoice.id)).invoice.status).toBe("paid");
    const history = (await retried.api.billing.payments.list.query()).items[0]!.history.map((h) => h.to);
    expect(history).toEqual(["pending", "failed", "succeeded"]);
  });

  test("refunds: partial then full, recorded on the payment and the invoice, which stays paid", async () => {
    const c = await paid();
    const pi = c.started.providerPaymentId;
    await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", stripe.intentAfter(pi, { status: "succeeded" })));
    await deliver(app.url, await stripe.signedEvent("charge.refunded", stripe.refundedCharge(pi, 230)));
    let now = await state(c.invoice.id);
    expect(now.payment).toMatchObject({ status: "partially_refunded", amountRefundedMinor: 230 });
    expect(now.invoice).toMatchObject({ status: "paid", amountRefundedMinor: 230 });

    const full = await stripe.signedEvent("charge.refunded", stripe.refundedCharge(pi, 1230));
    await deliver(app.url, full);
    await deliver(app.url, full);
    now = await state(c.invoice.id);
    expect(now.payment).toMatchObject({ status: "refunded", amountRefundedMinor: 1230 });
    expect(now.invoice).toMatchObject({ status: "paid", amountPaidMinor: 1230, amountRefundedMinor: 1230 });
    expect((await c.api.billing.payments.list.query()).items[0]).toMatchObject({ status: "refunded", amountRefundedMinor: 1230 });
  });

  test("a refund that overtakes its success still settles the invoice, and the late success changes nothing", async () => {
    const c = await paid();
    const pi = c.started.providerPaymentId;
    const succeeded = await stripe.signedEvent("payment_intent.succeeded", stripe.intentAfter(pi, { status: "succeeded" }));
    await deliver(app.url, await stripe.signedEvent("charge.refunded", stripe.refundedCharge(pi, 1230)));
    const afterRefund = await state(c.invoice.id);
    expect(afterRefund.payment!.status).toBe("refunded");
    expect(afterRefund.invoice).toMatchObject({ status: "paid", amountPaidMinor: 1230, amountRefundedMinor: 1230 });
    expect(await (await deliver(app.url, succeeded)).json()).toMatchObject({ outcome: "ignored" });
    expect((await state(c.invoice.id)).invoice).toEqual(afterRefund.invoice);
  });

  test("events the platform does not act on, or for payments it does not know, are stored once and acknowledged", async () => {
    const other = await stripe.signedEvent("customer.created", { id: "cus_123", object: "customer" });
    expect(await (await deliver(app.url, other)).json()).toEqual({ received: true, duplicate: false, outcome: "unhandled" });
    const stranger = await stripe.signedEvent("payment_intent.succeeded", { id: "pi_unknown", object: "payment_intent", metadata: {}, status: "succeeded" });
    expect(await (await deliver(app.url, stranger)).json()).toEqual({ received: true, duplicate: false, outcome: "unmatched" });
    expect(await (await deliver(app.url, stranger)).json()).toMatchObject({ duplicate: true });
  });
});
