import { desc } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyPolicies } from "../../db/schema";
import { DEFAULT_POLICY, type PowerPolicy } from "../../hardware/policy";
import type { Actor } from "../auth/actor";
import { recordAudit } from "../audit";
import type { RequestInfo } from "../trpc";

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
 * Saves a new policy (already validated: thresholds ordered) with its audit row
 * in one transaction. The hardware monitor picks it up within seconds.
 */
export async function updatePowerPolicy(db: Database, who: { actor: Actor; request?: RequestInfo | null }, policy: PowerPolicy) {
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
