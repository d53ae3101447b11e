import * as v from "valibot";
import { INSTANCE_NAME, MAX_NAME_LENGTH } from "../ingress/addresses";
import { instanceTrafficReport } from "../ingress/traffic";
import { strictRecord } from "../input";
import { router, verifiedProcedure } from "../trpc";
import { listImages, listPlans } from "./catalogue";
import { createInstance, getAction, getInstance, listInstances, requestAction } from "./instances";
import { instanceLogs } from "./logs";
import { instanceStats } from "./stats";
import { INSTANCE_STATES, PRIORITIES, type ActionKind } from "./states";

const read = verifiedProcedure.meta({ scope: "compute:read" });
const write = verifiedProcedure.meta({ scope: "compute:write", enqueues: true });

const uuid = v.pipe(v.string(), v.uuid("must be a UUID"));
/** A catalogue entry by UUID or by slug (`nano`, `busybox`). */
const catalogueRef = v.pipe(v.string(), v.minLength(1), v.maxLength(64), v.regex(/^[a-z0-9-]+$/i, "must be an id or a slug"));
const byId = v.strictObject({ id: uuid });

const createInput = v.strictObject({
  // The name is the start of the instance's host name: one DNS label with its short id.
  name: v.pipe(
    v.string(),
    v.regex(INSTANCE_NAME, `must fit a DNS label with the instance's short id: lower-case letters, digits and inner hyphens, at most ${MAX_NAME_LENGTH} characters, no "--" in 3rd and 4th place`),
  ),
  planId: catalogueRef,
  imageId: catalogueRef,
  priority: v.optional(v.picklist(PRIORITIES)),
  env: v.optional(
    v.pipe(
      strictRecord(
        v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "environment variable names are letters, digits and _")),
        v.pipe(v.string(), v.maxLength(4096)),
        "must be an object of NAME: value pairs",
      ),
      v.check((env) => Object.keys(env).length <= 64, "at most 64 variables"),
    ),
  ),
  idempotencyKey: v.optional(v.pipe(v.string(), v.minLength(8), v.maxLength(128), v.regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces"))),
  /** The container port to serve at the instance's URL: the image's (the default), or null for no URL. */
  httpPort: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)))),
});

const isoTime = v.pipe(v.string(), v.isoTimestamp("must be an ISO 8601 time"));
const trafficInput = v.strictObject({ id: uuid, from: v.optional(isoTime), to: v.optional(isoTime) });

const listInput = v.optional(
  v.strictObject({
    state: v.optional(v.picklist(INSTANCE_STATES)),
    cursor: v.optional(v.pipe(v.string(), v.maxLength(200))),
    limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100))),
  }),
  {},
);

const logsInput = v.strictObject({ id: uuid, tail: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000)), 100) });

const instanceAction = (kind: Exclude<ActionKind, "create" | "pause" | "resume" | "throttle">) =>
  write.input(byId).mutation(({ ctx, input }) => requestAction(ctx, ctx, { instanceId: input.id, kind, ownerId: ctx.user.id }));

export const computeRouter = router({
  plans: router({
    list: read.query(({ ctx }) => listPlans(ctx.db)),
  }),
  images: router({
    list: read.query(({ ctx }) => listImages(ctx.db)),
  }),
  instances: router({
    // Costs: a create is placement, quota and a container; stats and logs are ~1 s Docker calls each.
    create: write.meta({ cost: 5 }).input(createInput).mutation(({ ctx, input }) => createInstance(ctx, { actor: ctx.actor, request: ctx.request, ownerId: ctx.user.id }, input)),
    list: read.input(listInput).query(({ ctx, input }) => listInstances(ctx, ctx.user.id, input)),
    get: read.input(byId).query(({ ctx, input }) => getInstance(ctx, ctx.user.id, input.id)),
    start: instanceAction("start"),
    stop: instanceAction("stop"),
    restart: instanceAction("restart"),
    delete: instanceAction("delete"),
    stats: read.meta({ cost: 10 }).input(byId).query(({ ctx, input }) => instanceStats(ctx, ctx.user.id, input.id)),
    traffic: read.input(trafficInput).query(({ ctx, input }) => instanceTrafficReport(ctx.db, ctx.user.id, input.id, input)),
    logs: read.meta({ cost: 10 }).input(logsInput).query(({ ctx, input }) => instanceLogs(ctx, ctx.user.id, input.id, { tail: input.tail })),
  }),
  actions: router({
    get: read.input(byId).query(({ ctx, input }) => getAction(ctx.db, ctx.user.id, input.id)),
  }),
});
