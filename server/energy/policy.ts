import { desc } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyPolicies } from "../../db/schema";
import { DEFAULT_POLICY, type PowerPolicy } from "../../hardware/policy";
import type { Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import type { Config } from "../config";
import { AppError } from "../errors";
import type { RequestInfo } from "../trpc";
import { alignmentOptions, configuredCutoffs, policyAlignment } from "./alignment";
import type { ControllerCutoffs } from "../../hardware/protocols/epever-settings";
import { readMonitorState } from "./telemetry";

type PolicyRow = typeof energyPolicies.$inferSelect;

function fromRow(row: PolicyRow): PowerPolicy {
  return {
    thresholds: { conserve: row.conserveBelow, critical: row.criticalBelow, shutdown: row.shutdownBelow },
    hysteresis: row.hysteresis,
    dwellSeconds: row.dwellSeconds,
    recoveryDwellSeconds: row.recoveryDwellSeconds,
  };
}

/** The policy in force: the latest saved one, or the built-in default when none was ever saved. */
export async function getPowerPolicy(db: Database): Promise<{ policy: PowerPolicy; updatedAt: Date | null; updatedBy: string | null }> {
  const [row] = await db.select().from(energyPolicies).orderBy(desc(energyPolicies.createdAt)).limit(1);
  return row ? { policy: fromRow(row), updatedAt: row.createdAt, updatedBy: row.createdBy } : { policy: DEFAULT_POLICY, updatedAt: null, updatedBy: null };
}

/**
 * Refuses a policy whose shutdown threshold sits below the controller's own
 * low-voltage disconnect plus margin (alignment.ts), when the cut-offs are
 * known: read from the controller by the monitor, or configured.
 */
export async function assertAboveCutoff(db: Database, energy: Config["energy"], policy: PowerPolicy): Promise<void> {
  const monitor = await readMonitorState(db);
  const cutoffs = (monitor?.controllerSettings as { cutoffs?: ControllerCutoffs } | null | undefined)?.cutoffs ?? configuredCutoffs(energy);
  const alignment = policyAlignment(policy, cutoffs, alignmentOptions(energy));
  const shutdown = alignment.shutdown;
  if (!shutdown || shutdown.ok) return;
  throw new AppError(
    "POLICY_BELOW_CUTOFF",
    `A shutdown threshold of ${shutdown.soc} % (${shutdown.restingVolts} V at rest) is below the charge controller's low-voltage disconnect ${cutoffs!.lvd} V plus a margin of ${(shutdown.requiredVolts - cutoffs!.lvd!).toFixed(2)} V: the controller could cut every instance's power first. Use at least ${shutdown.minimumSoc} %.`,
    { details: { field: "thresholds.shutdown", minimumSoc: shutdown.minimumSoc, requiredVolts: shutdown.requiredVolts, cutoffs, margins: alignment.margins } },
  );
}

/**
 * Saves a new policy (already validated: thresholds ordered) with its audit row
 * in one transaction. The hardware monitor picks it up within seconds. With
 * the energy configuration, a policy below the controller's cut-off is refused
 * first (POLICY_BELOW_CUTOFF).
 */
export async function updatePowerPolicy(db: Database, who: { actor: Actor; request?: RequestInfo | null }, policy: PowerPolicy, energy?: Config["energy"]) {
  if (energy) await assertAboveCutoff(db, energy, policy);
  return db.transaction(async (tx) => {
    const before = await getPowerPolicy(tx);
    const [row] = await tx
      .insert(energyPolicies)
      .values({
        conserveBelow: policy.thresholds.conserve,
        criticalBelow: policy.thresholds.critical,
        shutdownBelow: policy.thresholds.shutdown,
        hysteresis: policy.hysteresis,
        dwellSeconds: policy.dwellSeconds,
        recoveryDwellSeconds: policy.recoveryDwellSeconds,
        createdBy: who.actor.kind === "user" || who.actor.kind === "apiKey" ? who.actor.user.id : null,
      })
      .returning();
    await recordAudit(tx, who, {
      action: "energy.policy.updated",
      targetType: "energy_policy",
      targetId: row!.id,
      metadata: { before: before.policy, after: policy },
    });
    return { policy: fromRow(row!), updatedAt: row!.createdAt, updatedBy: row!.createdBy };
  });
}
