import * as v from "valibot";
import { deliveryStatus } from "../../db/schema";
import { EVENT_TYPE_NAMES } from "../events/catalogue";
import type { Actor } from "../auth/actor";
import { router, verifiedProcedure, type RequestInfo } from "../trpc";
import { listDeliveries, redeliver } from "./deliveries";
import { createEndpoint, deleteEndpoint, listEndpoints, rotateSecret, updateEndpoint, type EndpointOwner } from "./endpoints";

const read = verifiedProcedure.meta({ scope: "webhooks:read" });
const write = verifiedProcedure.meta({ scope: "webhooks:write" });

const uuid = v.pipe(v.string(), v.uuid("must be a UUID"));
const byId = v.strictObject({ id: uuid });
const targetUrl = v.pipe(v.string(), v.trim(), v.maxLength(2048, "at most 2048 characters"), v.url("must be a URL"));
const description = v.pipe(v.string(), v.maxLength(200, "at most 200 characters"));
const eventTypes = v.pipe(v.array(v.picklist(EVENT_TYPE_NAMES, "must be an event type")), v.maxLength(EVENT_TYPE_NAMES.length));

const createInput = v.strictObject({ url: targetUrl, description: v.optional(description), eventTypes: v.optional(eventTypes) });
const updateInput = v.pipe(
  v.strictObject({ id: uuid, url: v.optional(targetUrl), description: v.optional(description), eventTypes: v.optional(eventTypes), enabled: v.optional(v.boolean()) }),
  v.check((input) => Object.keys(input).length > 1, "change at least one of url, description, eventTypes, enabled"),
);
const deliveriesInput = v.optional(
  v.strictObject({
    endpointId: v.optional(uuid),
    eventId: v.optional(uuid),
    status: v.optional(v.picklist(deliveryStatus.enumValues)),
    cursor: v.optional(v.pipe(v.string(), v.maxLength(200))),
    limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100))),
  }),
  {},
);

/** Attribution from the caller; the owner is always the caller's own account. */
const owner = (ctx: { actor: Actor; request: RequestInfo; user: { id: string } }): EndpointOwner => ({ actor: ctx.actor, request: ctx.request, ownerId: ctx.user.id });

export const webhooksRouter = router({
  endpoints: router({
    create: write.input(createInput).mutation(({ ctx, input }) => createEndpoint(ctx, owner(ctx), input)),
    list: read.query(({ ctx }) => listEndpoints(ctx.db, ctx.user.id)),
    update: write
      .meta({ example: { id: "3f1c2a9e-8b7d-4c6e-9f01-2a3b4c5d6e7f", enabled: false } })
      .input(updateInput)
      .mutation(({ ctx, input }) => updateEndpoint(ctx, owner(ctx), input)),
    delete: write.input(byId).mutation(({ ctx, input }) => deleteEndpoint(ctx, owner(ctx), input.id)),
    rotateSecret: write.input(byId).mutation(({ ctx, input }) => rotateSecret(ctx, owner(ctx), input.id)),
  }),
  deliveries: router({
    list: read.input(deliveriesInput).query(({ ctx, input }) => listDeliveries(ctx.db, ctx.user.id, input)),
    redeliver: write.input(byId).mutation(({ ctx, input }) => redeliver(ctx, owner(ctx), input.id)),
  }),
});
