import { asc, desc, eq, isNull, and } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyEvents, energyLevelChanges } from "../../db/schema";
import { jobId, type JobPayload, type Queues } from "../../workers/queues";
import type { ChangeCause, PowerPolicy } from "../../hardware/policy";
import type { PowerLevel } from "./levels";

export type LevelChange = typeof energyLevelChanges.$inferSelect;
export type PowerEmergencyPayload = JobPayload<"emergency", "power-emergency">;

/**
 * The platform's power level now: the target of the latest recorded change,
 * `normal` when none was ever recorded. Compute's admission check calls this.
 */
export async function currentPowerLevel(db: Database): Promise<PowerLevel> {
  const [row] = await db.select({ level: energyLevelChanges.toLevel }).from(energyLevelChanges).orderBy(desc(energyLevelChanges.seq)).limit(1);
  return row?.level ?? "normal";
}

/** The latest level change, or null when the platform has always been at `normal`. */
export async function latestLevelChange(db: Database): Promise<LevelChange | null> {
  const [row] = await db.select().from(energyLevelChanges).orderBy(desc(energyLevelChanges.seq)).limit(1);
  return row ?? null;
}

export type LevelChangeInput = {
  from: PowerLevel;
  to: PowerLevel;
  at: Date;
  soc: number | null;
  /** The reading that caused the change. */
  reading: Record<string, unknown>;
  policy: PowerPolicy;
  /** `forecast`: the runway forecast stepped the level down ahead of the SOC (default `soc`). */
  cause?: ChangeCause;
  /** The forecast behind a `forecast` change (time to the threshold), for the record. */
  forecast?: Record<string, unknown> | null;
};

const SEVERITY = { normal: "info", conserve: "warning", critical: "critical", shutdown: "critical" } as const;

/**
 * Records a level change and its event in one transaction. The change applies
 * only from the level currently recorded; when another writer got there first
 * (the level moved, or the next sequence number is taken) nothing is written
 * and null is returned so the caller can resynchronise.
 */
export async function recordLevelChange(db: Database, input: LevelChangeInput): Promise<LevelChange | null> {
  try {
    return await db.transaction(async (tx) => {
      const [latest] = await tx.select({ seq: energyLevelChanges.seq, to: energyLevelChanges.toLevel }).from(energyLevelChanges).orderBy(desc(energyLevelChanges.seq)).limit(1);
      if ((latest?.to ?? "normal") !== input.from) return null;
      const [change] = await tx
        .insert(energyLevelChanges)
        .values({ seq: (latest?.seq ?? 0) + 1, at: input.at, fromLevel: input.from, toLevel: input.to, soc: input.soc, reading: input.reading, policy: input.policy, cause: input.cause ?? "soc" })
        .returning();
      const soc = input.soc === null ? "unknown" : `${input.soc.toFixed(1)} %`;
      const early = input.cause === "forecast" ? " (ahead of the battery: the forecast expects the threshold to be crossed soon)" : "";
      await tx.insert(energyEvents).values({
        at: input.at,
        kind: "level_changed",
        severity: SEVERITY[input.to],
        message: `Power level ${input.from} → ${input.to} at SOC ${soc}${early}`,
        levelChangeId: change!.id,
        details: { from: input.from, to: input.to, soc: input.soc, cause: input.cause ?? "soc", ...(input.forecast ? { forecast: input.forecast } : {}) },
      });
      return change!;
    });
  } catch (error) {
    if (isUniqueViolation(error)) return null;
    throw error;
  }
}

export function powerEmergencyPayload(change: LevelChange): PowerEmergencyPayload {
  return { changeId: change.id, seq: change.seq, from: change.fromLevel, to: change.toLevel, at: change.at.toISOString(), soc: change.soc };
}

/**
 * Puts the change's power-emergency job on the emergency queue. The job id is
 * derived from the change id, so dispatching the same change again (a retry,
 * a sweep, a second monitor) never creates a second job; `enqueuedAt` keeps it
 * from being re-dispatched after BullMQ has forgotten a completed job.
 */
export async function dispatchPowerEmergency(db: Database, queues: Queues, change: LevelChange): Promise<string> {
  const id = await queues.enqueue("emergency", "power-emergency", powerEmergencyPayload(change), { jobId: powerEmergencyJobId(change.id) });
  await db
    .update(energyLevelChanges)
    .set({ enqueuedAt: new Date() })
    .where(and(eq(energyLevelChanges.id, change.id), isNull(energyLevelChanges.enqueuedAt)));
  return id;
}

export function powerEmergencyJobId(changeId: string): string {
  return jobId("power-emergency", changeId);
}

/** Dispatches recorded changes whose enqueue was lost (Redis was down). Returns how many. */
export async function redispatchPendingChanges(db: Database, queues: Queues): Promise<number> {
  const pending = await db.select().from(energyLevelChanges).where(isNull(energyLevelChanges.enqueuedAt)).orderBy(asc(energyLevelChanges.seq)).limit(100);
  for (const change of pending) await dispatchPowerEmergency(db, queues, change);
  return pending.length;
}

function isUniqueViolation(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === "23505") return true;
  }
  return false;
}
