import * as v from "valibot";
import { router, verifiedProcedure } from "../trpc";
import { pricingSheet } from "./catalogue";
import { getInvoice, listInvoices } from "./invoices";
import { listPayments, payInvoice } from "./payments";
import { estimate, usageReport } from "./usage";

const read = verifiedProcedure.meta({ scope: "billing:read" });
const write = verifiedProcedure.meta({ scope: "billing:write" });

const uuid = v.pipe(v.string(), v.uuid("must be a UUID"));
const isoTime = v.pipe(v.string(), v.isoTimestamp("must be an ISO 8601 timestamp with a time zone"));
const byId = v.strictObject({ id: uuid });

const usageInput = v.optional(v.strictObject({ from: v.optional(isoTime), to: v.optional(isoTime), instanceId: v.optional(uuid) }), {});

const pageInput = v.optional(
  v.strictObject({
    cursor: v.optional(v.pipe(v.string(), v.maxLength(200))),
    limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100))),
  }),
  {},
);

export const billingRouter = router({
  pricing: read.query(({ ctx }) => pricingSheet(ctx)),
  usage: read.input(usageInput).query(({ ctx, input }) => usageReport(ctx, ctx.user.id, input)),
  estimate: read.query(({ ctx }) => estimate(ctx, ctx.user.id)),
  invoices: router({
    list: read.input(pageInput).query(({ ctx, input }) => listInvoices(ctx.db, ctx.user.id, input)),
    get: read.input(byId).query(({ ctx, input }) => getInvoice(ctx.db, ctx.user.id, input.id)),
    pay: write
      .meta({ cost: 5 })
      .input(byId)
      .mutation(({ ctx, input }) => payInvoice(ctx, { actor: ctx.actor, request: ctx.request, ownerId: ctx.user.id }, input.id)),
  }),
  payments: router({
    list: read.input(pageInput).query(({ ctx, input }) => listPayments(ctx.db, ctx.user.id, input)),
  }),
});
