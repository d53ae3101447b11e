import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, asc, eq } from "drizzle-orm";
import { auditLog, invoiceLines, invoices, payments, stripeEvents } from "../../db/schema";
import { runInvoicing } from "../../server/billing/invoicing";
import { seedInstance, seedUsage } from "../harness/billing";
import { expectAppError } from "../harness/expect";
import { startTestServer, type TestServer } from "../harness/server";
import { deliver, startStripeStandIn, type StripeStandIn } from "../harness/stripe";
import { createUserWithSession } from "../harness/users";

/**
 * Money the provider reports is checked before it moves an invoice: events of
 * the other mode or of another account are ignored, and a success for another
 * amount or currency is held for an admin. Invoices below the provider's
 * minimum charge are carried forward instead of getting an unpayable
 * PaymentIntent.
 */

let stripe: StripeStandIn;
let app: TestServer;
beforeAll(async () => {
  stripe = await startStripeStandIn();
  app = await startTestServer({ env: { ...stripe.env, STRIPE_ACCOUNT_ID: "acct_sahary0001" } });
});
afterAll(async () => {
  await app.close();
  await stripe.close();
});

const HOUR = 3_600_000;
let month = 0;
/** A period of its own (2023-xx), so runs never invoice another test's customers. */
const nextPeriod = () => {
  month += 1;
  return { year: 2023 + Math.floor((month - 1) / 12), month: ((month - 1) % 12) + 1 };
};
const periodName = (p: { year: number; month: number }) => `${p.year}-${String(p.month).padStart(2, "0")}`;

/** A customer used `hours` of a plan at `priceHourlyMinor` in period `p`. */
async function usage(userId: string, p: { year: number; month: number }, priceHourlyMinor: number, hours: number) {
  const instance = await seedInstance(app.services, userId, { priceHourlyMinor, priceMonthlyMinor: 10_000_000 });
  await seedUsage(
    app.services,
    instance,
    Array.from({ length: hours }, (_, i) => ({ hour: new Date(Date.UTC(p.year, p.month - 1, 3, i)), runningMs: HOUR })),
  );
}

const invoiceOf = async (userId: string, p: { year: number; month: number }) =>
  (
    await app.services.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.userId, userId), eq(invoices.period, periodName(p))))
  )[0]!;

async function startedPayment() {
  const customer = await createUserWithSession(app.services);
  const p = nextPeriod();
  await usage(customer.user.id, p, 123, 10);
  await runInvoicing(app.services, { period: periodName(p) });
  const invoice = await invoiceOf(customer.user.id, p);
  const started = await app.client({ token: customer.token }).billing.invoices.pay.mutate({ id: invoice.id });
  return { customer, invoice, started };
}

const eventRow = async (id: string) => (await app.services.db.select().from(stripeEvents).where(eq(stripeEvents.id, id)))[0]!;

describe("Stripe events are checked before they move money", () => {
  test("an event of the other mode (livemode with a test key) is acknowledged, recorded and ignored", async () => {
    const { invoice, started } = await startedPayment();
    const object = stripe.intentAfter(started.providerPaymentId, { status: "succeeded", amount_received: 1230 });
    const delivery = await stripe.signedEvent("payment_intent.succeeded", object, { livemode: true });
    const res = await deliver(app.url, delivery);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ received: true, outcome: "wrong_mode" });
    expect((await invoiceOf(invoice.userId, { year: Number(invoice.period.slice(0, 4)), month: Number(invoice.period.slice(5)) })).status).toBe("open");
    expect((await eventRow(JSON.parse(delivery.payload).id)).outcome).toBe("wrong_mode");
  });

  test("an event of another (connected) account is ignored; one naming our account applies", async () => {
    const { invoice, started } = await startedPayment();
    const object = stripe.intentAfter(started.providerPaymentId, { status: "succeeded", amount_received: 1230 });
    const foreign = await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", object, { account: "acct_someoneelse" }));
    expect(await foreign.json()).toMatchObject({ outcome: "foreign_account" });
    const [stillOpen] = await app.services.db.select().from(invoices).where(eq(invoices.id, invoice.id));
    expect(stillOpen!.status).toBe("open");
    const ours = await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", object, { account: "acct_sahary0001" }));
    expect(await ours.json()).toMatchObject({ outcome: "applied" });
    const [now] = await app.services.db.select().from(invoices).where(eq(invoices.id, invoice.id));
    expect(now!.status).toBe("paid");
  });

  test("a success for another amount or currency does not pay the invoice: the payment is flagged for review, visible to admins", async () => {
    const short = await startedPayment();
    const wrongAmount = stripe.intentAfter(short.started.providerPaymentId, { status: "succeeded", amount: 1230, amount_received: 12 });
    expect(await (await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", wrongAmount))).json()).toMatchObject({ outcome: "flagged" });

    const foreignMoney = await startedPayment();
    const wrongCurrency = stripe.intentAfter(foreignMoney.started.providerPaymentId, { status: "succeeded", amount_received: 1230, currency: "jpy" });
    expect(await (await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", wrongCurrency))).json()).toMatchObject({ outcome: "flagged" });

    for (const { invoice, started } of [short, foreignMoney]) {
      const [row] = await app.services.db.select().from(invoices).where(eq(invoices.id, invoice.id));
      expect(row).toMatchObject({ status: "open", amountPaidMinor: 0 });
      const [payment] = await app.services.db.select().from(payments).where(eq(payments.id, started.paymentId));
      expect(payment!.status).toBe("pending");
      expect(payment!.reviewFlaggedAt).toBeInstanceOf(Date);
      const [audit] = await app.services.db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.action, "billing.payment.flagged"), eq(auditLog.targetId, started.paymentId)));
      expect(audit).toBeDefined();
    }

    const admin = await createUserWithSession(app.services, { role: "admin" });
    const listed = await app.client({ token: admin.token }).admin.billing.paymentsForReview.query();
    const mine = listed.items.filter((i) => i.id === short.started.paymentId || i.id === foreignMoney.started.paymentId);
    expect(mine).toHaveLength(2);
    expect(mine.find((i) => i.id === short.started.paymentId)).toMatchObject({
      invoiceId: short.invoice.id,
      amountMinor: 1230,
      currency: "USD",
      reviewReason: expect.stringContaining("12 USD"),
    });
    expect(mine.find((i) => i.id === foreignMoney.started.paymentId)!.reviewReason).toContain("JPY");
  });

  test("admin.billing.paymentsForReview: anonymous 401, customers 403, API keys refused, operators and admins read", async () => {
    const customer = await createUserWithSession(app.services);
    const operator = await createUserWithSession(app.services, { role: "operator" });
    const key = (await app.client({ token: customer.token }).auth.apiKeys.create.mutate({ name: "all", scopes: ["billing:read", "billing:write", "account:read"] })).key;
    await expectAppError(app.client().admin.billing.paymentsForReview.query(), "UNAUTHENTICATED");
    await expectAppError(app.client({ token: customer.token }).admin.billing.paymentsForReview.query(), "FORBIDDEN");
    await expectAppError(app.client({ token: key }).admin.billing.paymentsForReview.query(), "INSUFFICIENT_SCOPE");
    expect(Array.isArray((await app.client({ token: operator.token }).admin.billing.paymentsForReview.query()).items)).toBe(true);
  });
});

describe("invoices below the provider's minimum charge", () => {
  test("are carried forward: no PaymentIntent is possible, and the next invoice brings the amount in", async () => {
    const customer = await createUserWithSession(app.services);
    const api = app.client({ token: customer.token });
    const first = nextPeriod();
    await usage(customer.user.id, first, 1, 1); // one hour at 1 cent
    await runInvoicing(app.services, { period: periodName(first) });
    const small = await invoiceOf(customer.user.id, first);
    expect(small).toMatchObject({ status: "carried_forward", totalMinor: 1 });
    expect(small.number).toMatch(/^INV-/);
    const before = stripe.requests.length;
    const refused = await expectAppError(api.billing.invoices.pay.mutate({ id: small.id }), "INVOICE_NOT_PAYABLE");
    expect(refused.data?.details).toMatchObject({ status: "carried_forward" });
    expect(stripe.requests.length).toBe(before);
    expect((await api.billing.invoices.get.query({ id: small.id })).amountDueMinor).toBe(0);

    // A second small month carries again, bringing the first in.
    const second = nextPeriod();
    await usage(customer.user.id, second, 20, 1);
    await runInvoicing(app.services, { period: periodName(second) });
    const again = await invoiceOf(customer.user.id, second);
    expect(again).toMatchObject({ status: "carried_forward", totalMinor: 21, carriedInMinor: 1 });

    // The month the total reaches the minimum, it is an ordinary open invoice.
    const third = nextPeriod();
    await usage(customer.user.id, third, 100, 1);
    await runInvoicing(app.services, { period: periodName(third) });
    const payable = await invoiceOf(customer.user.id, third);
    expect(payable).toMatchObject({ status: "open", totalMinor: 121, carriedInMinor: 21 });
    const lines = await app.services.db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, payable.id)).orderBy(asc(invoiceLines.position));
    expect(lines.find((l) => l.kind === "carried_forward")).toMatchObject({ amountMinor: 21, description: expect.stringContaining(again.number!) });

    // Each carried amount went into exactly one later invoice.
    const [smallNow] = await app.services.db.select().from(invoices).where(eq(invoices.id, small.id));
    const [againNow] = await app.services.db.select().from(invoices).where(eq(invoices.id, again.id));
    expect(smallNow!.carriedIntoInvoiceId).toBe(again.id);
    expect(againNow!.carriedIntoInvoiceId).toBe(payable.id);
    const started = await api.billing.invoices.pay.mutate({ id: payable.id });
    expect(started.amountMinor).toBe(121);
  });

  test("a customer with a carried balance and no usage afterwards is invoiced for the balance alone", async () => {
    const customer = await createUserWithSession(app.services);
    const first = nextPeriod();
    await usage(customer.user.id, first, 49, 1);
    await runInvoicing(app.services, { period: periodName(first) });
    expect((await invoiceOf(customer.user.id, first)).status).toBe("carried_forward");
    const quiet = nextPeriod();
    await runInvoicing(app.services, { period: periodName(quiet) });
    // 49 is still below the minimum: carried again, on an invoice with the one line.
    const next = await invoiceOf(customer.user.id, quiet);
    expect(next).toMatchObject({ status: "carried_forward", totalMinor: 49, carriedInMinor: 49, subtotalMinor: 0 });
    // A rerun of the period changes nothing.
    expect((await runInvoicing(app.services, { period: periodName(quiet) })).created).toBe(0);
  });
});
