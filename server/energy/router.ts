import * as v from "valibot";
import { DEFAULT_POLICY, PowerPolicySchema } from "../../hardware/policy";
import { adminProcedure, authedProcedure, operatorProcedure, router } from "../trpc";
import { listEnergyEvents } from "./events";
import { getPowerPolicy, updatePowerPolicy } from "./policy";
import { energyHistory, energyStatsFor, PERIODS, RESOLUTIONS } from "./readings";
import { energyForecast, sharedEnergyStatus } from "./status";

/**
 * Who reads what: the platform's power state, history and statistics are open
 * to every signed-in user (customers see why their interruptible instances
 * pause, and the solar figures are the product's promise); the event log
 * (telemetry failures, controller faults, bridge errors) is for operators and
 * admins; the policy is admin-only. API keys need `energy:read` for reads; like
 * every admin procedure, the policy cannot be read or changed with an API key.
 */
const isoTime = v.pipe(
  v.string(),
  v.isoTimestamp("must be an ISO 8601 timestamp"),
  v.transform((s) => new Date(s)),
);
const DAY_MS = 86_400_000;

const historyInput = v.optional(
  v.strictObject({
    from: v.optional(isoTime),
    to: v.optional(isoTime),
    resolution: v.optional(v.picklist(RESOLUTIONS), "auto"),
  }),
  {},
);

const statsInput = v.optional(v.strictObject({ period: v.optional(v.picklist(Object.keys(PERIODS) as Array<keyof typeof PERIODS>), "day") }), {});

const eventsInput = v.optional(
  v.strictObject({
    cursor: v.optional(v.pipe(v.string(), v.maxLength(200))),
    limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(200)), 50),
  }),
  {},
);

const policyOutput = (p: Awaited<ReturnType<typeof getPowerPolicy>>) => ({ ...p.policy, updatedAt: p.updatedAt?.toISOString() ?? null, updatedBy: p.updatedBy });

export const energyRouter = router({
  /** Latest reading, power level, telemetry and link health, time to empty/full, the runway forecast, the controller's cut-offs. */
  status: authedProcedure.meta({ scope: "energy:read" }).query(({ ctx }) => sharedEnergyStatus(ctx.db, ctx.config.energy)),

  /** The runway forecast: time to each threshold with its band, and the hourly SOC trajectory of the expected, pessimistic and optimistic runs. */
  forecast: authedProcedure.meta({ scope: "energy:read" }).query(({ ctx }) => energyForecast(ctx.db, ctx.config.energy)),

  /** Points between `from` and `to` (default: the last 24 h) at a resolution. */
  history: authedProcedure
    .meta({ scope: "energy:read" })
    .input(historyInput)
    .query(({ ctx, input }) => {
      const to = input.to ?? new Date();
      const from = input.from ?? new Date(to.getTime() - DAY_MS);
      return energyHistory(ctx.db, { from, to, resolution: input.resolution, sampleSeconds: ctx.config.energy.sampleSeconds });
    }),

  /** Solar and load energy, efficiency and CO2 avoided over a rolling period; `account`: the caller's own share. */
  stats: authedProcedure
    .meta({ scope: "energy:read" })
    .input(statsInput)
    .query(({ ctx, input }) => energyStatsFor(ctx.db, { period: input.period, now: new Date(), gridCo2GramsPerKwh: ctx.config.energy.gridCo2GramsPerKwh, userId: ctx.user.id })),

  /** Level changes, telemetry lost/restored, controller faults, bridge failures; newest first. */
  events: operatorProcedure
    .meta({ scope: "energy:read" })
    .input(eventsInput)
    .query(({ ctx, input }) => listEnergyEvents(ctx.db, { cursor: input.cursor, limit: input.limit })),

  policy: router({
    get: adminProcedure.query(async ({ ctx }) => policyOutput(await getPowerPolicy(ctx.db))),

    /**
     * Replaces the policy; thresholds must be ordered shutdown < critical < conserve, and shutdown must clear
     * the controller's low-voltage disconnect with margin when it is known (POLICY_BELOW_CUTOFF). Audited.
     */
    update: adminProcedure
      // The schema's cross-field rules (ordered thresholds) defeat a derived example.
      .meta({ example: DEFAULT_POLICY })
      .input(PowerPolicySchema)
      .mutation(async ({ ctx, input }) => policyOutput(await updatePowerPolicy(ctx.db, { actor: ctx.actor, request: ctx.request }, input, ctx.config.energy))),
  }),
});
