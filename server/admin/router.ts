import * as v from "valibot";
import { runInvoicing } from "../billing/invoicing";
import { paymentsForReview } from "../billing/payments";
import { INSTANCE_STATES, PRIORITIES } from "../compute/states";
import { adminProcedure, operatorProcedure, router, type RequestInfo } from "../trpc";
import type { AuthenticatedActor } from "../auth/actor";
import { addAllowedRegistry, listAllowedRegistries, removeAllowedRegistry } from "../registries/allowlist";
import { listAudit } from "./audit-log";
import { forceStopInstance, listAllInstances, listHosts } from "./instances";
import { queueHealth } from "./queues";
import { statsOverview } from "./stats";
import { getUser, listUsers, setUserRole, setUserStatus, type UserRole, type UserStatus } from "./users";
import { userRole, userStatus } from "../../db/schema";

/**
 * Who may call what: operators and admins read (users, audit log, statistics,
 * instances, hosts, queue health); only admins change anything (a user's
 * status or role, a forced stop, an invoicing run). API keys are refused
 * throughout — no scope reaches these procedures — so administering the
 * platform always takes a person's session.
 */
const read = operatorProcedure;
const write = adminProcedure;

const uuid = v.pipe(v.string(), v.uuid("must be a UUID"));
const cursor = v.optional(v.pipe(v.string(), v.maxLength(200)));
const limit = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100)), 20);
const isoTime = v.pipe(
  v.string(),
  v.isoTimestamp("must be an ISO 8601 timestamp"),
  v.transform((s) => new Date(s)),
);
/** Why an admin did something, for the audit log. */
const reason = v.pipe(
  v.string(),
  v.trim(),
  v.minLength(3, "say why, in at least 3 characters"),
  v.maxLength(500, "must be at most 500 characters"),
  v.regex(/^[^\p{Cc}\p{Cf}]*$/u, "must not contain control characters"),
);

const usersListInput = v.optional(
  v.strictObject({
    query: v.optional(v.pipe(v.string(), v.maxLength(200))),
    role: v.optional(v.picklist(userRole.enumValues as readonly UserRole[])),
    status: v.optional(v.picklist(userStatus.enumValues as readonly UserStatus[])),
    cursor,
    limit,
  }),
  {},
);

const auditListInput = v.optional(
  v.pipe(
    v.strictObject({
      actorId: v.optional(uuid),
      action: v.optional(v.pipe(v.string(), v.maxLength(100), v.regex(/^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$/, "an action such as admin.user.suspended, or a prefix such as admin.*"))),
      targetType: v.optional(v.pipe(v.string(), v.maxLength(50))),
      targetId: v.optional(v.pipe(v.string(), v.maxLength(200))),
      from: v.optional(isoTime),
      to: v.optional(isoTime),
      cursor,
      limit,
    }),
    v.check((input) => !input.from || !input.to || input.from < input.to, "from must be before to"),
  ),
  {},
);

const instancesListInput = v.optional(
  v.strictObject({
    state: v.optional(v.picklist(INSTANCE_STATES)),
    userId: v.optional(uuid),
    hostId: v.optional(uuid),
    priority: v.optional(v.picklist(PRIORITIES)),
    cursor,
    limit,
  }),
  {},
);

const caller = (ctx: { actor: AuthenticatedActor; request: RequestInfo }) => ({ actor: ctx.actor, request: ctx.request });

export const adminRouter = router({
  users: router({
    list: read.input(usersListInput).query(({ ctx, input }) => listUsers(ctx.db, input)),
    get: read.input(v.strictObject({ id: uuid })).query(({ ctx, input }) => getUser(ctx.db, input.id)),
    /** Suspend (sessions end, instances stop) or reactivate (nothing restarts). */
    setStatus: write.input(v.strictObject({ id: uuid, status: v.picklist(["active", "suspended"] as const), reason })).mutation(({ ctx, input }) => setUserStatus(ctx, caller(ctx), input)),
    /** Applies from the user's next request. */
    setRole: write
      .input(v.strictObject({ id: uuid, role: v.picklist(userRole.enumValues as readonly UserRole[]), reason: v.optional(reason) }))
      .mutation(({ ctx, input }) => setUserRole(ctx, caller(ctx), input)),
  }),
  audit: router({
    list: read.input(auditListInput).query(({ ctx, input }) => listAudit(ctx.db, input)),
  }),
  stats: router({
    overview: read.meta({ cost: 10 }).query(({ ctx }) => statsOverview(ctx)),
  }),
  instances: router({
    list: read.input(instancesListInput).query(({ ctx, input }) => listAllInstances(ctx, input)),
    forceStop: write
      .meta({ enqueues: true })
      .input(v.strictObject({ id: uuid, reason }))
      .mutation(({ ctx, input }) => forceStopInstance(ctx, caller(ctx), input)),
  }),
  hosts: router({
    list: read.query(({ ctx }) => listHosts(ctx.db)),
  }),
  /** Registries customers' own images may come from (REGISTRY_ALLOWLIST plus these). */
  registries: router({
    list: read.query(({ ctx }) => listAllowedRegistries(ctx.db, ctx.config)),
    add: write
      .input(v.strictObject({ pattern: v.pipe(v.string(), v.minLength(1), v.maxLength(300)), note: reason }))
      .mutation(({ ctx, input }) => addAllowedRegistry(ctx.db, ctx.config, caller(ctx), input)),
    remove: write.input(v.strictObject({ id: uuid, reason })).mutation(({ ctx, input }) => removeAllowedRegistry(ctx.db, caller(ctx), input)),
  }),
  queues: router({
    health: read.query(({ ctx }) => queueHealth(ctx.queues)),
  }),
  billing: router({
    /** Invoices a month that has ended; a rerun creates nothing. */
    /** Payments the provider reported other money for (amount, currency): not applied, waiting for a person. */
    paymentsForReview: read
      .input(v.optional(v.strictObject({ limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(200)), 50) }), {}))
      .query(({ ctx, input }) => paymentsForReview(ctx.db, { limit: input.limit })),
    runInvoicing: write
      .meta({ cost: 50 })
      .input(v.strictObject({ period: v.pipe(v.string(), v.regex(/^\d{4}-(0[1-9]|1[0-2])$/, "a month written YYYY-MM")) }))
      .mutation(({ ctx, input }) => runInvoicing(ctx, { period: input.period, actor: ctx.actor, request: ctx.request })),
  }),
});
