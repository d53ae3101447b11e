import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { Webhook } from "svix";
import { extractText, getDocumentProxy } from "unpdf";
import { eventDeliveries, invoices, mailMessages, notifications, outboxEvents } from "../../db/schema";
import { runDunning } from "../../server/billing/dunning";
import { runInvoicing } from "../../server/billing/invoicing";
import { mailProcessor } from "../../workers/mail";
import { notifyProcessor } from "../../workers/notify";
import { mailSubject, mailsTo } from "../harness/accounts";
import { seedInstance, seedUsage } from "../harness/billing";
import { expectAppError } from "../harness/expect";
import { mimeParts } from "../harness/mime";
import { startWebhookReceiver, type WebhookReceiver } from "../harness/receiver";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { startSmtpServer } from "../harness/smtp";
import { deliver, startStripeStandIn, type StripeStandIn } from "../harness/stripe";
import { createUserWithSession } from "../harness/users";

// Billing's customer events end to end: invoicing and the Stripe webhook write
// them, the relay fans them out, the mail worker delivers over real SMTP, and
// a real HTTP receiver gets signed webhooks.

let app: TestServer;
let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
let receiver: WebhookReceiver;
let stripe: StripeStandIn;

beforeAll(async () => {
  smtp = await startSmtpServer();
  receiver = await startWebhookReceiver();
  stripe = await startStripeStandIn();
  app = await startTestServer({
    // The receiver listens on 127.0.0.1: allowed here on purpose (webhooks-ssrf.test.ts proves the default refuses it).
    env: { ...stripe.env, SMTP_URL: smtp.url, WEBHOOK_ALLOW_PRIVATE_TARGETS: "true", NOTIFY_POLL_MS: "100" },
    workers: [mailProcessor, notifyProcessor],
  });
});
afterAll(async () => {
  await app.close();
  await receiver.close();
  await stripe.close();
  await smtp.close();
});

const HOUR = 3_600_000;
// Each customer is invoiced for a month of their own (in a year no other file uses), so no run invoices another test's customer.
let month = 0;

async function customerWithInvoice(opts: { endpoint?: boolean } = {}) {
  const session = await createUserWithSession(app.services);
  const api = app.client({ token: session.token });
  const path = `/billing-${session.user.id}`;
  const created = opts.endpoint === false ? null : await api.webhooks.endpoints.create.mutate({ url: receiver.url(path), eventTypes: ["invoice.issued", "payment.succeeded", "payment.failed"] });
  month += 1;
  const period = `2017-${String(month).padStart(2, "0")}`;
  const instance = await seedInstance(app.services, session.user.id, { name: "web", priceHourlyMinor: 123, priceMonthlyMinor: 100_000 });
  await seedUsage(
    app.services,
    instance,
    Array.from({ length: 10 }, (_, i) => ({ hour: new Date(Date.UTC(2017, month - 1, 2, i)), runningMs: HOUR })),
  );
  await runInvoicing(app.services, { period });
  const [invoice] = await app.services.db
    .select()
    .from(invoices)
    .where(and(eq(invoices.userId, session.user.id), eq(invoices.period, period)));
  return { ...session, api, path, secret: created?.secret ?? null, endpointId: created?.endpoint.id ?? null, invoice: invoice!, period };
}

/** The customer's events of a type, once the relay has fanned them out. */
const dispatched = (userId: string, type: string) =>
  eventually(
    () =>
      app.services.db
        .select()
        .from(outboxEvents)
        .where(and(eq(outboxEvents.userId, userId), eq(outboxEvents.type, type))),
    (rows) => rows.length > 0 && rows.every((r) => r.dispatchedAt !== null),
    { what: `${type} to be fanned out`, timeoutMs: 20_000 },
  );

describe("invoice.issued", () => {
  test("reaches the owner by mail with the invoice PDF, in the notification centre, and by a webhook the official svix verifier accepts", async () => {
    const c = await customerWithInvoice();
    expect(c.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(c.invoice).toMatchObject({ status: "open", totalMinor: 1230 });

    const [hook] = await eventually(
      () => Promise.resolve(receiver.at(c.path)),
      (list) => list.length >= 1,
      { what: "the webhook", timeoutMs: 20_000 },
    );
    expect(() => new Webhook(c.secret!).verify(hook!.body, hook!.headers)).not.toThrow();
    const payload = JSON.parse(hook!.body);
    expect(payload).toMatchObject({
      id: hook!.headers["webhook-id"],
      type: "invoice.issued",
      version: 1,
      data: { invoiceId: c.invoice.id, invoiceNumber: c.invoice.number, period: c.period, status: "open", totalMinor: 1230, amountDueMinor: 1230, currency: "USD" },
    });
    expect(Math.abs(Number(hook!.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(120);
    // The signature covers the exact bytes: one changed byte, or another secret, and the verifier refuses.
    expect(() => new Webhook(c.secret!).verify(hook!.body.replace("1230", "1231"), hook!.headers)).toThrow();
    expect(() => new Webhook(`whsec_${Buffer.alloc(32, 7).toString("base64")}`).verify(hook!.body, hook!.headers)).toThrow();

    // The first mail is the security notice for the new endpoint; then the invoice.
    const mail = (await mailsTo(smtp.received, c.user.email, 2)).find((m) => mailSubject(m).startsWith(`Invoice ${c.invoice.number}`));
    expect(mail).toBeDefined();
    const parts = mimeParts(mail!);
    const text = parts.find((p) => p.headers["content-type"]?.startsWith("text/plain"))!.body.toString("utf8");
    const html = parts.find((p) => p.headers["content-type"]?.startsWith("text/html"))!.body.toString("utf8");
    expect(text).toContain("USD 12.30");
    expect(html).toContain(`/billing/invoices/${c.invoice.id}`);
    expect(html).not.toMatch(/<img|src=|<link|@import/i);
    const pdf = parts.find((p) => p.headers["content-type"]?.startsWith("application/pdf"))!;
    expect(pdf.headers["content-disposition"]).toContain(`${c.invoice.number}.pdf`);
    expect(pdf.body.subarray(0, 5).toString()).toBe("%PDF-");
    const { text: pdfText } = await extractText(await getDocumentProxy(new Uint8Array(pdf.body)), { mergePages: true });
    expect(pdfText).toContain(`Invoice ${c.invoice.number}`);

    const centre = await c.api.notifications.list.query();
    expect(centre.items.map((n) => n.type)).toEqual(["invoice.issued", "account.security"]);
    expect(centre.items[0]).toMatchObject({ type: "invoice.issued", eventId: payload.id, readAt: null, data: { invoiceId: c.invoice.id } });
    expect(centre.items[1]).toMatchObject({ title: "New webhook endpoint", data: { kind: "webhook_endpoint_created", endpointId: c.endpointId } });
    expect(await c.api.notifications.unreadCount.query()).toEqual({ unread: 2 });

    const deliveries = await eventually(
      () => c.api.webhooks.deliveries.list.query(),
      (d) => d.items[0]?.status === "succeeded",
      { what: "the delivery to be recorded" },
    );
    expect(deliveries.items).toHaveLength(1);
    expect(deliveries.items[0]).toMatchObject({ eventId: payload.id, eventType: "invoice.issued", endpointId: c.endpointId, attempts: 1, lastStatusCode: 204 });
    expect(deliveries.items[0]!.history).toMatchObject([{ attempt: 1, outcome: "succeeded", statusCode: 204, address: "127.0.0.1" }]);
  });

  test("a payment that goes through sends a receipt by mail and a payment.succeeded webhook", async () => {
    const c = await customerWithInvoice();
    await mailsTo(smtp.received, c.user.email, 2);
    const started = await c.api.billing.invoices.pay.mutate({ id: c.invoice.id });
    const object = stripe.intentAfter(started.providerPaymentId, { status: "succeeded", amount_received: 1230 });
    expect((await deliver(app.url, await stripe.signedEvent("payment_intent.succeeded", object))).status).toBe(200);

    const mails = await mailsTo(smtp.received, c.user.email, 3);
    const receipt = mails.find((m) => mailSubject(m).startsWith("Payment received"))!;
    const text = mimeParts(receipt)
      .find((p) => p.headers["content-type"]?.startsWith("text/plain"))!
      .body.toString("utf8");
    expect(text).toContain("Amount paid: USD 12.30");
    expect(text).toContain(`Payment reference: ${started.paymentId}`);
    expect(text).toContain(`invoice ${c.invoice.number}`);

    const hooks = await eventually(
      () => Promise.resolve(receiver.at(c.path)),
      (list) => list.length >= 2,
      { what: "the payment webhook", timeoutMs: 20_000 },
    );
    const paid = hooks.map((h) => JSON.parse(h.body)).find((p) => p.type === "payment.succeeded");
    expect(paid).toMatchObject({ data: { paymentId: started.paymentId, invoiceId: c.invoice.id, amountMinor: 1230 } });
    expect(() => new Webhook(c.secret!).verify(hooks[1]!.body, hooks[1]!.headers)).not.toThrow();
  });
});

describe("preferences", () => {
  test("a customer who switched invoice mail and webhooks off gets neither, but still sees the invoice in the console", async () => {
    const session = await createUserWithSession(app.services);
    const api = app.client({ token: session.token });
    const path = `/muted-${session.user.id}`;
    await api.webhooks.endpoints.create.mutate({ url: receiver.url(path), eventTypes: ["invoice.issued"] });
    expect(await api.notifications.preferences.update.mutate({ type: "invoice.issued", email: false, webhook: false })).toMatchObject({ inApp: true, email: false, webhook: false, customised: true });

    month += 1;
    const period = `2017-${String(month).padStart(2, "0")}`;
    const instance = await seedInstance(app.services, session.user.id, { priceHourlyMinor: 50, priceMonthlyMinor: 10_000 });
    await seedUsage(app.services, instance, [{ hour: new Date(Date.UTC(2017, month - 1, 3)), runningMs: HOUR }]);
    await runInvoicing(app.services, { period });

    // Fan-out decides every channel in the transaction that marks the event dispatched.
    const [event] = await dispatched(session.user.id, "invoice.issued");
    expect(await app.services.db.select().from(notifications).where(eq(notifications.eventId, event!.id))).toHaveLength(1);
    expect(await app.services.db.select().from(eventDeliveries).where(eq(eventDeliveries.eventId, event!.id))).toEqual([]);
    expect(
      await app.services.db
        .select()
        .from(mailMessages)
        .where(and(eq(mailMessages.to, session.user.email), eq(mailMessages.kind, "event.invoice.issued"))),
    ).toEqual([]);
    expect(receiver.at(path)).toEqual([]);
  });

  test("security notices cannot be switched off by mail or in the console (NOTIFICATION_MANDATORY); their webhooks can", async () => {
    const { token } = await createUserWithSession(app.services);
    const api = app.client({ token });
    await expectAppError(api.notifications.preferences.update.mutate({ type: "account.security", email: false }), "NOTIFICATION_MANDATORY");
    await expectAppError(api.notifications.preferences.update.mutate({ type: "webhook.endpoint_disabled", inApp: false }), "NOTIFICATION_MANDATORY");
    expect(await api.notifications.preferences.update.mutate({ type: "account.security", webhook: false })).toMatchObject({ inApp: true, email: true, webhook: false, mandatory: ["inApp", "email"] });
    const prefs = await api.notifications.preferences.get.query();
    expect(prefs.items.find((p) => p.type === "account.security")).toMatchObject({ email: true, webhook: false, customised: true });
    expect(prefs.items.find((p) => p.type === "instance.state_changed")).toMatchObject({ inApp: false, email: false, webhook: true, customised: false });
    await expectAppError(api.notifications.preferences.update.mutate({ type: "invoice.issued" } as never), "VALIDATION_FAILED");
    await expectAppError(api.notifications.preferences.update.mutate({ type: "no.such_type", email: true } as never), "VALIDATION_FAILED");
  });
});

describe("dunning", () => {
  const DAY = 86_400_000;
  const issuedDaysAgo = (invoiceId: string, days: number) =>
    app.services.db
      .update(invoices)
      .set({ finalizedAt: new Date(Date.now() - days * DAY - 60_000) })
      .where(eq(invoices.id, invoiceId));
  const reminders = (userId: string) =>
    app.services.db
      .select()
      .from(outboxEvents)
      .where(and(eq(outboxEvents.userId, userId), eq(outboxEvents.type, "invoice.overdue")));

  test("an unpaid invoice gets one reminder per stage as it ages (late runs send only the latest), with the PDF; after DUNNING_BLOCK_AFTER_DAYS new instances are refused with PAYMENT_OVERDUE", async () => {
    const c = await customerWithInvoice({ endpoint: false });
    await runDunning(app.services);
    expect(await reminders(c.user.id)).toEqual([]);

    await issuedDaysAgo(c.invoice.id, 3);
    await runDunning(app.services);
    await runDunning(app.services);
    expect((await reminders(c.user.id)).map((r) => r.data.reminder)).toEqual([1]);

    // The check did not run for weeks: only the latest reminder due goes out, naming when new instances stop.
    await issuedDaysAgo(c.invoice.id, 25);
    await Promise.all([runDunning(app.services), runDunning(app.services)]);
    const sent = await reminders(c.user.id);
    expect(sent.map((r) => r.data.reminder).sort()).toEqual([1, 3]);
    expect(sent.find((r) => r.data.reminder === 3)!.data).toMatchObject({ invoiceId: c.invoice.id, amountDueMinor: 1230, daysOverdue: 25 });

    const mails = await mailsTo(smtp.received, c.user.email, 3);
    const reminder = mails.find((m) => mailSubject(m) === `Reminder: invoice ${c.invoice.number} is unpaid`)!;
    expect(mimeParts(reminder).some((p) => p.headers["content-type"]?.startsWith("application/pdf"))).toBe(true);

    // Still unpaid after 30 days (the default): new instances are refused, naming the invoice.
    expect(await c.api.compute.plans.list.query()).not.toEqual([]);
    await issuedDaysAgo(c.invoice.id, 31);
    const refused = await expectAppError(c.api.compute.instances.create.mutate({ name: "blocked", planId: "nano", imageId: "busybox" }), "PAYMENT_OVERDUE");
    expect(refused.data?.httpStatus).toBe(402);
    expect(refused.data?.details).toMatchObject({ invoiceId: c.invoice.id, invoiceNumber: c.invoice.number });
  });
});
