import { and, desc, eq, inArray, isNotNull, sql } from "drizzle-orm";
import type Stripe from "stripe";
import type { Database } from "../../db/client";
import { invoices, paymentEvents, payments, type paymentStatus, stripeEvents, users } from "../../db/schema";
import { recordAudit } from "../audit";
import type { Actor } from "../auth/actor";
import type { Config } from "../config";
import { AppError } from "../errors";
import { recordEvents, type NewEvent } from "../events/outbox";
import type { Logger } from "../log";
import type { RequestInfo } from "../trpc";
import { after, cursorTime, decodeCursor, page } from "../pagination";
import { canMoveInvoice, PAYABLE, type Invoice } from "./invoices";
import type { StripeClient } from "./stripe";

export type Payment = typeof payments.$inferSelect;
export type PaymentStatus = (typeof paymentStatus.enumValues)[number];
export type PaymentDeps = { db: Database; stripe: StripeClient | null; config: Config; log: Logger };

/**
 * Payment statuses only move up this order, whatever order the provider's
 * events arrive in: a `failed` after `succeeded` changes nothing, and a refund
 * that overtakes its `succeeded` still leaves the payment refunded (a refund
 * implies the charge went through). A failed attempt may still succeed (the
 * customer retries on the same PaymentIntent).
 */
const RANK: Record<PaymentStatus, number> = { pending: 0, failed: 1, succeeded: 2, partially_refunded: 3, refunded: 4 };
const SETTLED: readonly PaymentStatus[] = ["succeeded", "partially_refunded", "refunded"];

export function paymentMoves(from: PaymentStatus, to: PaymentStatus): boolean {
  return RANK[to] > RANK[from];
}

const PROVIDER = "stripe";

/**
 * Starts (or resumes) paying an invoice with a Stripe PaymentIntent and
 * returns what the client confirms it with. The payment row is written first
 * and its id is the idempotency key of the create, so a retried request, a
 * lost response or a crash never yields a second PaymentIntent. An attempt
 * that is still pending or that failed is resumed on its PaymentIntent (the
 * customer may try another card on it) rather than a new one started.
 */
export async function payInvoice(deps: PaymentDeps, who: { actor: Actor; request?: RequestInfo | null; ownerId: string }, invoiceId: string) {
  const { db, stripe } = deps;
  const { invoice, payment } = await db.transaction(async (tx) => {
    const [invoice] = await tx.select().from(invoices).where(eq(invoices.id, invoiceId)).for("update");
    if (!invoice || invoice.userId !== who.ownerId || invoice.status === "draft") throw new AppError("NOT_FOUND", "No such invoice", { details: { invoiceId } });
    const due = invoice.totalMinor - invoice.amountPaidMinor;
    if (!PAYABLE.includes(invoice.status) || due <= 0) {
      const why = invoice.status === "carried_forward" ? "is below the minimum charge and carried forward to your next invoice" : `is ${invoice.status} and has nothing to pay`;
      throw new AppError("INVOICE_NOT_PAYABLE", `This invoice ${why}`, { details: { status: invoice.status, amountDueMinor: Math.max(0, due) } });
    }
    // The provider refuses to charge less; such an amount is never asked for (docs/billing.md, "Minimum charge").
    if (due < deps.config.billing.minimumChargeMinor) {
      throw new AppError("INVOICE_NOT_PAYABLE", `The amount due is below the minimum charge of ${deps.config.billing.minimumChargeMinor} minor units`, {
        details: { status: invoice.status, amountDueMinor: due, minimumChargeMinor: deps.config.billing.minimumChargeMinor },
      });
    }
    if (!stripe) throw new AppError("PAYMENT_PROVIDER_ERROR", "Payments are not configured on this platform");
    const [resumable] = await tx
      .select()
      .from(payments)
      .where(and(eq(payments.invoiceId, invoice.id), inArray(payments.status, ["pending", "failed"])))
      .orderBy(desc(payments.createdAt))
      .limit(1);
    if (resumable) return { invoice, payment: resumable };
    const [created] = await tx.insert(payments).values({ invoiceId: invoice.id, userId: invoice.userId, provider: PROVIDER, amountMinor: due, currency: invoice.currency }).returning();
    await tx.insert(paymentEvents).values({ paymentId: created!.id, fromStatus: null, toStatus: "pending", note: "payment started" });
    await recordAudit(tx, who, { action: "billing.payment.start", targetType: "invoice", targetId: invoice.id, metadata: { paymentId: created!.id, amountMinor: due } });
    return { invoice, payment: created! };
  });

  let intent: Stripe.PaymentIntent;
  try {
    intent = payment.providerPaymentId ? await stripe!.paymentIntents.retrieve(payment.providerPaymentId) : await createIntent(stripe!, invoice, payment);
    if (intent.status === "canceled") throw new AppError("INVOICE_NOT_PAYABLE", "The previous payment attempt was cancelled; contact support", { details: { paymentId: payment.id } });
  } catch (error) {
    if (error instanceof AppError) throw error;
    deps.log.warn("stripe call failed", { paymentId: payment.id, error: (error as Error).message });
    throw new AppError("PAYMENT_PROVIDER_ERROR", "The payment provider did not accept the request; try again", { cause: error });
  }
  if (!payment.providerPaymentId) {
    await db
      .update(payments)
      .set({ providerPaymentId: intent.id })
      .where(and(eq(payments.id, payment.id), sql`${payments.providerPaymentId} is null`));
  }
  return {
    paymentId: payment.id,
    invoiceId: invoice.id,
    status: payment.status,
    amountMinor: payment.amountMinor,
    currency: payment.currency,
    provider: PROVIDER,
    providerPaymentId: intent.id,
    clientSecret: intent.client_secret,
  };
}

function createIntent(stripe: StripeClient, invoice: Invoice, payment: Payment) {
  return stripe.paymentIntents.create(
    {
      amount: payment.amountMinor,
      currency: payment.currency.toLowerCase(),
      description: `Sahary Cloud invoice ${invoice.number}`,
      automatic_payment_methods: { enabled: true },
      metadata: { invoiceId: invoice.id, invoiceNumber: invoice.number ?? "", paymentId: payment.id, userId: invoice.userId },
    },
    { idempotencyKey: `payment-${payment.id}` },
  );
}

export async function listPayments(db: Database, ownerId: string, opts: { cursor?: string | undefined; limit?: number | undefined }) {
  const limit = opts.limit ?? 20;
  const cursor = opts.cursor ? decodeCursor(opts.cursor) : null;
  const rows = await db
    .select({ payment: payments, invoiceNumber: invoices.number, id: payments.id, cursorAt: cursorTime(payments.createdAt) })
    .from(payments)
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .where(and(eq(payments.userId, ownerId), cursor ? after(payments.createdAt, payments.id, cursor) : undefined))
    .orderBy(desc(payments.createdAt), desc(payments.id))
    .limit(limit + 1);
  const pageRows = rows.slice(0, limit);
  const history = pageRows.length
    ? await db
        .select()
        .from(paymentEvents)
        .where(
          inArray(
            paymentEvents.paymentId,
            pageRows.map((r) => r.payment.id),
          ),
        )
        .orderBy(paymentEvents.at)
    : [];
  return page(rows, limit, ({ payment, invoiceNumber }) => ({
    id: payment.id,
    invoiceId: payment.invoiceId,
    invoiceNumber,
    status: payment.status,
    amountMinor: payment.amountMinor,
    amountRefundedMinor: payment.amountRefundedMinor,
    currency: payment.currency,
    provider: payment.provider,
    providerPaymentId: payment.providerPaymentId,
    failureMessage: payment.failureMessage,
    createdAt: payment.createdAt.toISOString(),
    updatedAt: payment.updatedAt.toISOString(),
    history: history.filter((h) => h.paymentId === payment.id).map((h) => ({ from: h.fromStatus, to: h.toStatus, note: h.note, at: h.at.toISOString() })),
  }));
}

export type EventOutcome = "applied" | "ignored" | "unmatched" | "unhandled" | "wrong_mode" | "foreign_account" | "flagged";

const webhookActor: Actor = { kind: "webhook", source: "stripe" };

export type EventDeps = { db: Database; log: Logger; config: Pick<Config, "stripe"> };

/**
 * Applies one verified Stripe event, exactly once: the event id is stored in
 * the same transaction as its effects, so a redelivery finds it and changes
 * nothing, and a failure stores nothing (Stripe delivers it again).
 *
 * A signature proves the event came from Stripe, not that it is about our
 * money: an event of the other mode (a live event while the platform runs
 * on a test key, or the reverse) or of another account (Connect) is recorded
 * and ignored, and a success whose amount or currency differs from the
 * payment's holds the payment for review instead of paying the invoice.
 */
export async function applyStripeEvent(deps: EventDeps, event: Stripe.Event): Promise<{ duplicate: boolean; outcome: EventOutcome | null }> {
  const { db, log, config } = deps;
  const refusal = foreignEvent(event, config.stripe);
  return db.transaction(async (tx) => {
    const [fresh] = await tx
      .insert(stripeEvents)
      .values({ id: event.id, type: event.type, createdAt: new Date(event.created * 1000), outcome: refusal ?? "unhandled" })
      .onConflictDoNothing()
      .returning({ id: stripeEvents.id });
    if (!fresh) return { duplicate: true, outcome: null };
    if (refusal) {
      log.warn("stripe event ignored: not this platform's", { eventId: event.id, type: event.type, outcome: refusal, livemode: event.livemode, account: event.account ?? null });
      return { duplicate: false, outcome: refusal };
    }

    const change = paymentChangeOf(event);
    if (!change) return { duplicate: false, outcome: "unhandled" as const };
    const payment = await lockPayment(tx, change.providerPaymentId, change.paymentId);
    if (!payment) {
      log.warn("stripe event for an unknown payment", { eventId: event.id, type: event.type, providerPaymentId: change.providerPaymentId });
      await tx.update(stripeEvents).set({ outcome: "unmatched" }).where(eq(stripeEvents.id, event.id));
      return { duplicate: false, outcome: "unmatched" as const };
    }
    const mismatch = moneyMismatch(payment, change);
    const outcome = mismatch ? await flagPayment(tx, payment, mismatch, event.id, log) : await movePayment(tx, payment, change, event.id);
    await tx.update(stripeEvents).set({ outcome, paymentId: payment.id }).where(eq(stripeEvents.id, event.id));
    return { duplicate: false, outcome };
  });
}

function foreignEvent(event: Stripe.Event, stripe: Pick<Config, "stripe">["stripe"]): "wrong_mode" | "foreign_account" | null {
  if (stripe.livemode !== null && event.livemode !== stripe.livemode) return "wrong_mode";
  if (event.account && event.account !== stripe.accountId) return "foreign_account";
  return null;
}

/** Why the provider's figures do not fit this payment, or null when they do. */
function moneyMismatch(payment: Payment, change: PaymentChange): string | null {
  const reported = change.money;
  if (!reported) return null;
  const currency = reported.currency.toUpperCase();
  if (currency !== payment.currency.toUpperCase()) return `the provider reported ${reported.amountMinor} ${currency}; the payment is ${payment.amountMinor} ${payment.currency}`;
  if (change.to === "succeeded" && reported.amountMinor !== payment.amountMinor) {
    return `the provider reported ${reported.amountMinor} ${currency} received; the payment is ${payment.amountMinor} ${payment.currency}`;
  }
  return null;
}

/** Holds the payment for an admin: nothing moves, the reason is kept and audited. */
async function flagPayment(tx: Database, payment: Payment, reason: string, eventId: string, log: Logger): Promise<EventOutcome> {
  log.error("stripe event does not match its payment; held for review", { eventId, paymentId: payment.id, reason });
  await tx
    .update(payments)
    .set({ reviewReason: reason.slice(0, 500), reviewFlaggedAt: new Date() })
    .where(eq(payments.id, payment.id));
  await tx.insert(paymentEvents).values({ paymentId: payment.id, fromStatus: payment.status, toStatus: payment.status, providerEventId: eventId, note: `held for review: ${reason}`.slice(0, 500) });
  await recordAudit(
    tx,
    { actor: webhookActor },
    { action: "billing.payment.flagged", targetType: "payment", targetId: payment.id, reason: reason.slice(0, 500), metadata: { eventId, invoiceId: payment.invoiceId } },
  );
  return "flagged";
}

/** Payments an admin should look at (the provider reported other money), newest first. */
export async function paymentsForReview(db: Database, opts: { limit: number }) {
  const rows = await db
    .select({ payment: payments, invoiceNumber: invoices.number, email: users.email })
    .from(payments)
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .innerJoin(users, eq(users.id, payments.userId))
    .where(isNotNull(payments.reviewFlaggedAt))
    .orderBy(desc(payments.reviewFlaggedAt), desc(payments.id))
    .limit(opts.limit);
  return {
    items: rows.map(({ payment, invoiceNumber, email }) => ({
      id: payment.id,
      invoiceId: payment.invoiceId,
      invoiceNumber,
      userId: payment.userId,
      email,
      status: payment.status,
      amountMinor: payment.amountMinor,
      currency: payment.currency,
      providerPaymentId: payment.providerPaymentId,
      reviewReason: payment.reviewReason,
      reviewFlaggedAt: payment.reviewFlaggedAt!.toISOString(),
    })),
  };
}

type PaymentChange = {
  providerPaymentId: string | null;
  paymentId: string | null;
  to: PaymentStatus;
  amountRefundedMinor?: number;
  failureMessage?: string;
  /** What the provider says moved (checked against the payment before anything is applied). */
  money?: { amountMinor: number; currency: string };
};

/** What an event says about a payment, for the events we act on. */
function paymentChangeOf(event: Stripe.Event): PaymentChange | null {
  switch (event.type) {
    case "payment_intent.succeeded": {
      const intent = event.data.object;
      return {
        providerPaymentId: intent.id,
        paymentId: intent.metadata?.paymentId ?? null,
        to: "succeeded",
        money: { amountMinor: intent.amount_received ?? intent.amount, currency: intent.currency },
      };
    }
    case "payment_intent.payment_failed": {
      const intent = event.data.object;
      return { providerPaymentId: intent.id, paymentId: intent.metadata?.paymentId ?? null, to: "failed", failureMessage: intent.last_payment_error?.message ?? "payment failed" };
    }
    case "charge.refunded": {
      const charge = event.data.object;
      const intent = typeof charge.payment_intent === "string" ? charge.payment_intent : (charge.payment_intent?.id ?? null);
      return {
        providerPaymentId: intent,
        paymentId: charge.metadata?.paymentId ?? null,
        to: charge.refunded ? "refunded" : "partially_refunded",
        amountRefundedMinor: charge.amount_refunded,
        money: { amountMinor: charge.amount, currency: charge.currency },
      };
    }
    default:
      return null;
  }
}

async function lockPayment(tx: Database, providerPaymentId: string | null, paymentId: string | null): Promise<Payment | null> {
  if (providerPaymentId) {
    const [byProvider] = await tx
      .select()
      .from(payments)
      .where(and(eq(payments.provider, PROVIDER), eq(payments.providerPaymentId, providerPaymentId)))
      .for("update");
    if (byProvider) return byProvider;
  }
  // The event may overtake the response that told us the PaymentIntent's id; our metadata names the payment.
  if (paymentId && /^[0-9a-f-]{36}$/i.test(paymentId)) {
    const [byId] = await tx.select().from(payments).where(eq(payments.id, paymentId)).for("update");
    if (byId && (!byId.providerPaymentId || byId.providerPaymentId === providerPaymentId)) return byId;
  }
  return null;
}

async function movePayment(tx: Database, payment: Payment, change: PaymentChange, eventId: string): Promise<EventOutcome> {
  const refunded = Math.min(payment.amountMinor, Math.max(payment.amountRefundedMinor, change.amountRefundedMinor ?? 0));
  const refundGrew = refunded > payment.amountRefundedMinor;
  const statusMoves = paymentMoves(payment.status, change.to);
  if (!statusMoves && !refundGrew) return "ignored";

  const to = statusMoves ? change.to : payment.status;
  await tx
    .update(payments)
    .set({
      status: to,
      amountRefundedMinor: refunded,
      providerPaymentId: payment.providerPaymentId ?? change.providerPaymentId,
      ...(change.failureMessage && statusMoves ? { failureMessage: change.failureMessage.slice(0, 500) } : {}),
    })
    .where(eq(payments.id, payment.id));
  await tx.insert(paymentEvents).values({
    paymentId: payment.id,
    fromStatus: payment.status,
    toStatus: to,
    providerEventId: eventId,
    note: refundGrew ? `refunded ${refunded} of ${payment.amountMinor}` : (change.failureMessage ?? null),
  });

  const [invoice] = await tx.select().from(invoices).where(eq(invoices.id, payment.invoiceId)).for("update");
  const nowSettled = SETTLED.includes(to) && !SETTLED.includes(payment.status);
  const set: Partial<typeof invoices.$inferInsert> = {};
  if (nowSettled) {
    set.amountPaidMinor = invoice!.amountPaidMinor + payment.amountMinor;
    if (canMoveInvoice(invoice!.status, "paid") && set.amountPaidMinor >= invoice!.totalMinor) {
      set.status = "paid";
      set.paidAt = new Date();
    }
  }
  if (refundGrew) set.amountRefundedMinor = invoice!.amountRefundedMinor + (refunded - payment.amountRefundedMinor);
  if (Object.keys(set).length) await tx.update(invoices).set(set).where(eq(invoices.id, invoice!.id));
  await recordEvents(tx, paymentEventsOf(payment, invoice!, statusMoves ? to : null, refundGrew ? refunded : null, change.failureMessage));

  await recordAudit(
    tx,
    { actor: webhookActor },
    {
      action: `billing.payment.${to}`,
      targetType: "payment",
      targetId: payment.id,
      metadata: { eventId, invoiceId: invoice!.id, from: payment.status, amountRefundedMinor: refunded, invoiceStatus: set.status ?? invoice!.status },
    },
  );
  return "applied";
}

/** The customer events of a payment change: the receipt, a failure, a refund (each written with the change). */
function paymentEventsOf(payment: Payment, invoice: Invoice, movedTo: PaymentStatus | null, refundedMinor: number | null, failureMessage: string | undefined): NewEvent[] {
  const base = { paymentId: payment.id, invoiceId: invoice.id, invoiceNumber: invoice.number ?? "", currency: payment.currency, amountMinor: payment.amountMinor };
  const events: NewEvent[] = [];
  if (movedTo === "succeeded") events.push({ type: "payment.succeeded", userId: payment.userId, data: base });
  if (movedTo === "failed") events.push({ type: "payment.failed", userId: payment.userId, data: { ...base, failureMessage: failureMessage ?? null } });
  if (refundedMinor !== null) {
    events.push({ type: "payment.refunded", userId: payment.userId, data: { ...base, amountRefundedMinor: refundedMinor, fullyRefunded: refundedMinor >= payment.amountMinor } });
  }
  return events;
}
