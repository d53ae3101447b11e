import * as v from "valibot";
import { INSTANCE_NAME, MAX_NAME_LENGTH } from "../ingress/addresses";
import { instanceTrafficReport } from "../ingress/traffic";
import { strictRecord } from "../input";
import { listAllowedRegistries } from "../registries/allowlist";
import { router, verifiedProcedure } from "../trpc";
import { listImages, listPlans } from "./catalogue";
import { createInstance } from "./create";
import { getAction, getInstance, listInstances, requestAction, resizeInstance } from "./instances";
import { followLogs, instanceLogs } from "./logs";
import { instanceStats } from "./stats";
import { INSTANCE_STATES, PRIORITIES, type ActionKind } from "./states";
import { createVolume, deleteVolume, getVolume, listVolumes, MAX_VOLUME_MB, MIN_VOLUME_MB } from "./volumes/service";
import { volumeState } from "../../db/schema";

const read = verifiedProcedure.meta({ scope: "compute:read" });
const write = verifiedProcedure.meta({ scope: "compute:write", enqueues: true });

const uuid = v.pipe(v.string(), v.uuid("must be a UUID"));
/** A catalogue entry by UUID or by slug (`nano`, `busybox`). */
const catalogueRef = v.pipe(v.string(), v.minLength(1), v.maxLength(64), v.regex(/^[a-z0-9-]+$/i, "must be an id or a slug"));
const byId = v.strictObject({ id: uuid });
const noNul = v.check((s: string) => !s.includes("\0"), "must not contain NUL");
/** argv: handed to the engine as an array, never joined into a shell line. */
const argv = (min: number) =>
  v.pipe(
    v.array(v.pipe(v.string(), v.maxLength(4096, "each argument is at most 4096 characters"), noNul)),
    v.minLength(min, "must not be empty"),
    v.maxLength(64, "at most 64 arguments"),
    v.check((items) => items.reduce((n, s) => n + s.length, 0) <= 32_768, "at most 32 KiB in all"),
  );
const resourceName = v.pipe(v.string(), v.regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "lower-case letters, digits and inner hyphens, at most 63 characters"));
const sizeMb = v.pipe(v.number(), v.integer(), v.minValue(MIN_VOLUME_MB, `at least ${MIN_VOLUME_MB} MiB`), v.maxValue(MAX_VOLUME_MB, `at most ${MAX_VOLUME_MB} MiB`));
const mountPath = v.pipe(v.string(), v.maxLength(200), noNul);

const createInput = v.pipe(
  v.strictObject({
    // The name is the start of the instance's host name: one DNS label with its short id.
    name: v.pipe(
      v.string(),
      v.regex(INSTANCE_NAME, `must fit a DNS label with the instance's short id: lower-case letters, digits and inner hyphens, at most ${MAX_NAME_LENGTH} characters, no "--" in 3rd and 4th place`),
    ),
    planId: catalogueRef,
    /** A catalogue image… */
    imageId: v.optional(catalogueRef),
    /** …or an own image from an allowed registry: `registry/repo:tag` or `registry/repo@sha256:…`. */
    image: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(512), noNul)),
    priority: v.optional(v.picklist(PRIORITIES)),
    env: v.optional(
      v.pipe(
        strictRecord(
          v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "environment variable names are letters, digits and _")),
          v.pipe(v.string(), v.maxLength(4096), noNul),
          "must be an object of NAME: value pairs",
        ),
        v.check((env) => Object.keys(env).length <= 64, "at most 64 variables"),
      ),
    ),
    /** Replaces the image's ENTRYPOINT (its CMD is then not used unless `args` gives one). */
    command: v.optional(argv(1)),
    /** Replaces the image's CMD. */
    args: v.optional(argv(0)),
    volumes: v.optional(
      v.pipe(v.array(v.union([v.strictObject({ volumeId: uuid, mountPath }), v.strictObject({ name: resourceName, sizeMb: v.optional(sizeMb), mountPath })])), v.maxLength(8, "at most 8 volumes")),
    ),
    idempotencyKey: v.optional(v.pipe(v.string(), v.minLength(8), v.maxLength(128), v.regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces"))),
    /** The container port to serve at the instance's URL: the catalogue image's (the default), or null for no URL; an own image names its own. */
    httpPort: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)))),
  }),
  v.check((input) => (input.imageId === undefined) !== (input.image === undefined), "give either imageId (a catalogue image) or image (your own image reference)"),
);

const isoTime = v.pipe(v.string(), v.isoTimestamp("must be an ISO 8601 time"));
const trafficInput = v.strictObject({ id: uuid, from: v.optional(isoTime), to: v.optional(isoTime) });
const cursor = v.optional(v.pipe(v.string(), v.maxLength(200)));
const limit = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100)));

const listInput = v.optional(v.strictObject({ state: v.optional(v.picklist(INSTANCE_STATES)), cursor, limit }), {});

const logsInput = v.strictObject({ id: uuid, tail: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000)), 100) });
const followInput = v.strictObject({
  id: uuid,
  /** Lines from before the subscription to start with. */
  tail: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1000)), 0),
  /** The subscription ends after this many lines. */
  maxLines: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100_000)), 10_000),
});

const instanceAction = (kind: Exclude<ActionKind, "create" | "pause" | "resume" | "resize" | "delete" | "throttle">) =>
  write.input(byId).mutation(({ ctx, input }) => requestAction(ctx, ctx, { instanceId: input.id, kind, ownerId: ctx.user.id }));

export const computeRouter = router({
  plans: router({
    list: read.query(({ ctx }) => listPlans(ctx.db)),
  }),
  images: router({
    list: read.query(({ ctx }) => listImages(ctx.db)),
  }),
  /** Where own images may come from (`compute.instances.create` with `image`). */
  registries: router({
    list: read.query(async ({ ctx }) => (await listAllowedRegistries(ctx.db, ctx.config)).map(({ pattern, source }) => ({ pattern, source }))),
  }),
  instances: router({
    // Costs: a create is placement, quota and a container; stats and logs are ~1 s Docker calls each.
    create: write
      .meta({ cost: 5, example: { name: "web", planId: "nano", imageId: "busybox" } })
      .input(createInput)
      .mutation(({ ctx, input }) => createInstance(ctx, { actor: ctx.actor, request: ctx.request, ownerId: ctx.user.id }, input)),
    list: read.input(listInput).query(({ ctx, input }) => listInstances(ctx, ctx.user.id, input)),
    get: read.input(byId).query(({ ctx, input }) => getInstance(ctx, ctx.user.id, input.id)),
    start: instanceAction("start"),
    stop: instanceAction("stop"),
    restart: instanceAction("restart"),
    /** Keeps the instance's volumes (for another instance) unless `deleteVolumes`. */
    delete: write
      .input(v.strictObject({ id: uuid, deleteVolumes: v.optional(v.boolean()) }))
      .mutation(({ ctx, input }) => requestAction(ctx, ctx, { instanceId: input.id, kind: "delete", ownerId: ctx.user.id, params: input.deleteVolumes ? { deleteVolumes: true } : {} })),
    resize: write
      .meta({ cost: 5 })
      .input(v.strictObject({ id: uuid, planId: catalogueRef }))
      .mutation(({ ctx, input }) => resizeInstance(ctx, ctx, { instanceId: input.id, planId: input.planId, ownerId: ctx.user.id })),
    stats: read
      .meta({ cost: 10 })
      .input(byId)
      .query(({ ctx, input }) => instanceStats(ctx, ctx.user.id, input.id)),
    traffic: read.input(trafficInput).query(({ ctx, input }) => instanceTrafficReport(ctx.db, ctx.user.id, input.id, input)),
    logs: read
      .meta({ cost: 10 })
      .input(logsInput)
      .query(({ ctx, input }) => instanceLogs(ctx, ctx.user.id, input.id, { tail: input.tail })),
    /** Follows the logs over Server-Sent Events (`httpSubscriptionLink`), bounded in lines, bytes and time. */
    logsFollow: read
      .meta({ cost: 10 })
      .input(followInput)
      .subscription(({ ctx, input, signal }) => followLogs(ctx, ctx.user.id, input.id, { ...input, signal })),
  }),
  volumes: router({
    create: write.input(v.strictObject({ name: resourceName, sizeMb })).mutation(({ ctx, input }) => createVolume(ctx, { actor: ctx.actor, request: ctx.request, ownerId: ctx.user.id }, input)),
    list: read.input(v.optional(v.strictObject({ state: v.optional(v.picklist(volumeState.enumValues)), cursor, limit }), {})).query(({ ctx, input }) => listVolumes(ctx.db, ctx.user.id, input)),
    get: read.input(byId).query(({ ctx, input }) => getVolume(ctx.db, ctx.user.id, input.id)),
    delete: write.input(byId).mutation(({ ctx, input }) => deleteVolume(ctx, { actor: ctx.actor, request: ctx.request, ownerId: ctx.user.id }, input.id)),
  }),
  actions: router({
    get: read.input(byId).query(({ ctx, input }) => getAction(ctx.db, ctx.user.id, input.id)),
  }),
});
