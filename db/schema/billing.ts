import { sql } from "drizzle-orm";
import { bigint, check, index, integer, jsonb, numeric, pgEnum, pgTable, primaryKey, text, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { users } from "./auth";
import { createdAt, id, timestamptz, updatedAt } from "./columns";
import { instances, instanceState } from "./compute";
import { volumes } from "./volumes";

/**
 * Where metering stands for each instance: the time it has accounted up to,
 * the state in force at that time, and the last counter readings (the
 * baseline the next sample's deltas are taken against). `version` guards the
 * advance, so two ticks racing on one instance account its time once.
 */
export const meterCursors = pgTable("meter_cursors", {
  instanceId: uuid("instance_id")
    .primaryKey()
    .references(() => instances.id),
  version: bigint("version", { mode: "number" }).notNull().default(0),
  meteredUntil: timestamptz("metered_until").notNull(),
  state: instanceState("state").notNull(),
  reason: text("reason").notNull(),
  /** seq of the last state-history row that (re)started the container: counters restart from zero there. */
  startSeq: bigint("start_seq", { mode: "number" }),
  /** The instance's plan row (`instance_plans.seq`) in force at `meteredUntil`. */
  planSeq: integer("plan_seq").notNull().default(0),
  /** startSeq when the baseline below was read; a different startSeq means the counters were reset since. */
  sampleStartSeq: bigint("sample_start_seq", { mode: "number" }),
  containerId: text("container_id"),
  cpuNs: bigint("cpu_ns", { mode: "number" }),
  rxBytes: bigint("rx_bytes", { mode: "number" }),
  txBytes: bigint("tx_bytes", { mode: "number" }),
  memoryBytes: bigint("memory_bytes", { mode: "number" }),
  sampledAt: timestamptz("sampled_at"),
  updatedAt: updatedAt(),
});

/**
 * Metered usage per instance per UTC hour and plan (a resize starts a new
 * `planSeq`, so an hour in which the plan changed has a row for each). A tick adds what it accounted to
 * the hours its window covers, in the same statement that advances the
 * instance's cursor, so a window is added exactly once. Durations are exact
 * milliseconds derived from the state history; counters are deltas.
 */
export const usageRecords = pgTable(
  "usage_records",
  {
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => instances.id),
    /** Start of the UTC hour. */
    hour: timestamptz("hour").notNull(),
    planSeq: integer("plan_seq").notNull().default(0),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    runningMs: bigint("running_ms", { mode: "number" }).notNull().default(0),
    /** Paused for any reason other than a power emergency (operator, drift). */
    pausedMs: bigint("paused_ms", { mode: "number" }).notNull().default(0),
    /** Paused by the power policy: credited on the invoice. */
    emergencyPausedMs: bigint("emergency_paused_ms", { mode: "number" }).notNull().default(0),
    cpuNs: bigint("cpu_ns", { mode: "number" }).notNull().default(0),
    memoryByteMs: numeric("memory_byte_ms", { precision: 30, scale: 0, mode: "number" }).notNull().default(0),
    rxBytes: bigint("rx_bytes", { mode: "number" }).notNull().default(0),
    txBytes: bigint("tx_bytes", { mode: "number" }).notNull().default(0),
    updatedAt: updatedAt(),
  },
  // A unique index rather than the primary key: the key (instance, hour) predates plan segments.
  (t) => [
    uniqueIndex("usage_records_instance_hour_plan_key").on(t.instanceId, t.hour, t.planSeq),
    index("usage_records_user_hour_idx").on(t.userId, t.hour),
    index("usage_records_hour_idx").on(t.hour),
  ],
);

/**
 * `usage_records` summed per instance, UTC calendar month and plan segment,
 * kept by statement-level triggers on `usage_records` (migration 0010): every
 * insert, update or delete there adds its difference here in the same
 * transaction, so this always equals the sum of the hourly rows. Readers that
 * only need monthly totals (admin statistics, invoicing) read these rows
 * instead of scanning a month of hourly rows. No foreign keys: it is derived
 * data, and a row whose hourly rows were all deleted is deleted with them.
 */
export const usageMonthly = pgTable(
  "usage_monthly",
  {
    instanceId: uuid("instance_id").notNull(),
    /** Start of the UTC month (the billing period). */
    periodStart: timestamptz("period_start").notNull(),
    planSeq: integer("plan_seq").notNull(),
    userId: uuid("user_id").notNull(),
    runningMs: bigint("running_ms", { mode: "number" }).notNull().default(0),
    pausedMs: bigint("paused_ms", { mode: "number" }).notNull().default(0),
    emergencyPausedMs: bigint("emergency_paused_ms", { mode: "number" }).notNull().default(0),
    txBytes: bigint("tx_bytes", { mode: "number" }).notNull().default(0),
    /** The plan segment's prices (`instance_plans`, immutable per seq), copied when the row is first written, so readers need no join. */
    priceHourlyMinor: integer("price_hourly_minor").notNull(),
    priceMonthlyMinor: integer("price_monthly_minor").notNull(),
    currency: text("currency").notNull(),
  },
  (t) => [primaryKey({ columns: [t.instanceId, t.periodStart, t.planSeq] }), index("usage_monthly_period_user_idx").on(t.periodStart, t.userId)],
);

/**
 * Per UTC month and currency, the compute charge of every `usage_monthly` row
 * (its billable time at its hourly price, rounded half up and capped at its
 * monthly price: `usage_compute_minor`) and the bytes sent, kept by the same
 * triggers in the same statement: the admin overview's accrual reads one row
 * per period instead of every instance's.
 */
export const usagePeriodTotals = pgTable(
  "usage_period_totals",
  {
    periodStart: timestamptz("period_start").notNull(),
    currency: text("currency").notNull(),
    computeMinor: bigint("compute_minor", { mode: "number" }).notNull().default(0),
    txBytes: numeric("tx_bytes", { precision: 30, scale: 0, mode: "number" }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.periodStart, t.currency] })],
);

/**
 * `carried_forward`: finalized and numbered, but its total is below the
 * payment provider's minimum charge, so it is not payable; the next invoice
 * of the customer brings the amount in (docs/billing.md, "Minimum charge").
 */
export const invoiceStatus = pgEnum("invoice_status", ["draft", "open", "paid", "void", "uncollectible", "carried_forward"]);

/**
 * One invoice per customer per period (a calendar month, UTC): the unique
 * index makes a rerun of invoicing a no-op. Amounts are integer minor units
 * of `currency`; the number is assigned, gap-free, when the invoice leaves draft.
 */
export const invoices = pgTable(
  "invoices",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    /** `YYYY-MM`. */
    period: text("period").notNull(),
    periodStart: timestamptz("period_start").notNull(),
    periodEnd: timestamptz("period_end").notNull(),
    number: text("number"),
    status: invoiceStatus("status").notNull().default("draft"),
    currency: text("currency").notNull(),
    subtotalMinor: bigint("subtotal_minor", { mode: "number" }).notNull(),
    discountMinor: bigint("discount_minor", { mode: "number" }).notNull(),
    creditMinor: bigint("credit_minor", { mode: "number" }).notNull(),
    taxRateBps: integer("tax_rate_bps").notNull(),
    taxMinor: bigint("tax_minor", { mode: "number" }).notNull(),
    totalMinor: bigint("total_minor", { mode: "number" }).notNull(),
    amountPaidMinor: bigint("amount_paid_minor", { mode: "number" }).notNull().default(0),
    amountRefundedMinor: bigint("amount_refunded_minor", { mode: "number" }).notNull().default(0),
    /** Totals of earlier carried-forward invoices brought into this one (after tax: they were taxed already). */
    carriedInMinor: bigint("carried_in_minor", { mode: "number" }).notNull().default(0),
    /** For a carried-forward invoice: the invoice that brought its total in (null while it waits for one). */
    carriedIntoInvoiceId: uuid("carried_into_invoice_id"),
    createdAt: createdAt(),
    finalizedAt: timestamptz("finalized_at"),
    paidAt: timestamptz("paid_at"),
    voidedAt: timestamptz("voided_at"),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("invoices_user_period_key").on(t.userId, t.period),
    uniqueIndex("invoices_number_key").on(t.number),
    index("invoices_user_created_idx").on(t.userId, t.createdAt, t.id),
    index("invoices_period_status_idx").on(t.period, t.status),
    check("invoices_amounts", sql`${t.totalMinor} >= 0 and ${t.taxMinor} >= 0 and ${t.amountPaidMinor} >= 0 and ${t.amountRefundedMinor} >= 0 and ${t.carriedInMinor} >= 0`),
    check("invoices_numbered", sql`(${t.status} = 'draft') = (${t.number} is null)`),
  ],
);

export const invoiceLineKind = pgEnum("invoice_line_kind", ["compute", "egress", "discount", "credit", "carried_forward", "energy", "storage"]);

/** Line items: charges are positive, discounts and credits negative; `energy` lines are informational (amount 0). */
export const invoiceLines = pgTable(
  "invoice_lines",
  {
    id: id(),
    invoiceId: uuid("invoice_id")
      .notNull()
      .references(() => invoices.id, { onDelete: "cascade" }),
    position: integer("position").notNull(),
    instanceId: uuid("instance_id").references(() => instances.id),
    volumeId: uuid("volume_id").references(() => volumes.id),
    kind: invoiceLineKind("kind").notNull(),
    description: text("description").notNull(),
    /** Hours, GB…: for display; amounts are computed from exact milliseconds and bytes. */
    quantity: numeric("quantity", { precision: 20, scale: 6, mode: "number" }).notNull(),
    unit: text("unit").notNull(),
    unitPriceMinor: integer("unit_price_minor").notNull(),
    amountMinor: bigint("amount_minor", { mode: "number" }).notNull(),
    details: jsonb("details").$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [uniqueIndex("invoice_lines_position_key").on(t.invoiceId, t.position)],
);

/** Named gap-free counters (invoice numbers), advanced under a row lock inside the transaction that uses them. */
export const billingCounters = pgTable("billing_counters", {
  name: text("name").primaryKey(),
  value: bigint("value", { mode: "number" }).notNull().default(0),
});

export const paymentStatus = pgEnum("payment_status", ["pending", "failed", "succeeded", "partially_refunded", "refunded"]);

/**
 * A payment attempt on an invoice through the provider (a Stripe
 * PaymentIntent). The row is written before the provider is called; its id is
 * the idempotency key, so a retried call never makes a second PaymentIntent.
 */
export const payments = pgTable(
  "payments",
  {
    id: id(),
    invoiceId: uuid("invoice_id")
      .notNull()
      .references(() => invoices.id),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    provider: text("provider").notNull(),
    providerPaymentId: text("provider_payment_id"),
    status: paymentStatus("status").notNull().default("pending"),
    amountMinor: bigint("amount_minor", { mode: "number" }).notNull(),
    amountRefundedMinor: bigint("amount_refunded_minor", { mode: "number" }).notNull().default(0),
    currency: text("currency").notNull(),
    failureMessage: text("failure_message"),
    /**
     * Set when the provider reported something that does not match this
     * payment (another amount or currency): the invoice is not marked paid
     * and an admin looks at it (admin.billing.paymentsForReview).
     */
    reviewReason: text("review_reason"),
    reviewFlaggedAt: timestamptz("review_flagged_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("payments_provider_payment_key").on(t.provider, t.providerPaymentId),
    index("payments_user_created_idx").on(t.userId, t.createdAt, t.id),
    index("payments_invoice_idx").on(t.invoiceId),
    // At most one attempt in flight per invoice.
    uniqueIndex("payments_one_pending_key").on(t.invoiceId).where(sql`${t.status} = 'pending'`),
    index("payments_review_idx").on(t.reviewFlaggedAt).where(sql`${t.reviewFlaggedAt} is not null`),
  ],
);

/** Payment history: every status change with the provider event that caused it. */
export const paymentEvents = pgTable(
  "payment_events",
  {
    id: id(),
    paymentId: uuid("payment_id")
      .notNull()
      .references(() => payments.id),
    fromStatus: paymentStatus("from_status"),
    toStatus: paymentStatus("to_status").notNull(),
    providerEventId: text("provider_event_id"),
    note: text("note"),
    at: createdAt(),
  },
  (t) => [index("payment_events_payment_idx").on(t.paymentId, t.at)],
);

/** Every Stripe event received, once: the primary key is what makes a redelivery a no-op. */
export const stripeEvents = pgTable("stripe_events", {
  id: text("id").primaryKey(),
  type: text("type").notNull(),
  /** When Stripe created the event. */
  createdAt: timestamptz("created_at").notNull(),
  receivedAt: timestamptz("received_at").notNull().defaultNow(),
  /**
   * What applying it did: `applied`, `ignored` (already further along),
   * `unmatched`, `unhandled`, `wrong_mode` (live event for a test key or the
   * reverse), `foreign_account` (a connected account's event), `flagged` (the
   * amount or currency differs from the payment's: held for review).
   */
  outcome: text("outcome").notNull(),
  paymentId: uuid("payment_id").references(() => payments.id),
});

/**
 * Dunning reminders sent for unpaid invoices, one per invoice and stage (the
 * n-th of DUNNING_REMINDER_DAYS): the primary key keeps a rerun of the check
 * from reminding twice.
 */
export const dunningReminders = pgTable(
  "dunning_reminders",
  {
    invoiceId: uuid("invoice_id")
      .notNull()
      .references(() => invoices.id, { onDelete: "cascade" }),
    stage: integer("stage").notNull(),
    sentAt: timestamptz("sent_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.invoiceId, t.stage] })],
);
