import { and, desc, eq, gte, inArray, lt, lte } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyLevelChanges, instances, powerNotices } from "../../db/schema";
import { recordEvents } from "../events/outbox";
import type { PowerLevel } from "./levels";
import type { LevelChange } from "./power";
import { shedAction } from "./restrictions";

/**
 * Tells the owners of instances that `level` sheds (pauses or stops) that it
 * is about to happen, at `expectedAt`: one `power.notice` per instance per
 * power episode, however often this is called (each reading, each pass, a
 * forecast revising itself): the (episode, instance) primary key of
 * `power_notices` decides, in the same transaction as the event. Instances
 * the level does not shed are skipped. Returns the instances noticed now.
 *
 * The runway forecast calls it ahead of a step (server/energy/forecast-warning.ts)
 * and the emergency worker at the level change itself, before shedding. Both
 * pass `coveredSince`, the moment the platform was last back at `normal`: an
 * instance already noticed since then (by the forecast, before the episode had
 * a level change to be named by) is not noticed again.
 */
export async function noticePowerEpisode(db: Database, input: { level: PowerLevel; expectedAt: Date; instanceIds: readonly string[]; episodeId: string; coveredSince?: Date }): Promise<string[]> {
  if (input.instanceIds.length === 0) return [];
  return db.transaction(async (tx) => {
    const rows = await tx
      .select({ id: instances.id, userId: instances.userId, name: instances.name, priority: instances.priority })
      .from(instances)
      .where(inArray(instances.id, [...input.instanceIds]));
    const covered = input.coveredSince
      ? new Set(
          (
            await tx
              .select({ instanceId: powerNotices.instanceId })
              .from(powerNotices)
              .where(and(inArray(powerNotices.instanceId, [...input.instanceIds]), gte(powerNotices.createdAt, input.coveredSince)))
          ).map((r) => r.instanceId),
        )
      : new Set<string>();
    const shed = rows.flatMap((row) => {
      if (covered.has(row.id)) return [];
      const action = shedAction(input.level, row.priority);
      return action ? [{ ...row, action }] : [];
    });
    if (shed.length === 0) return [];
    const written = await tx
      .insert(powerNotices)
      .values(shed.map((row) => ({ episodeId: input.episodeId, instanceId: row.id, level: input.level, expectedAt: input.expectedAt })))
      .onConflictDoNothing()
      .returning({ instanceId: powerNotices.instanceId });
    const fresh = new Set(written.map((w) => w.instanceId));
    const noticed = shed.filter((row) => fresh.has(row.id));
    await recordEvents(
      tx,
      noticed.map((row) => ({
        type: "power.notice",
        userId: row.userId,
        data: { instanceId: row.id, name: row.name, priority: row.priority, level: input.level, action: row.action, expectedAt: input.expectedAt.toISOString(), episodeId: input.episodeId },
      })),
    );
    return noticed.map((row) => row.id);
  });
}

/**
 * The power episode a level change belongs to: the stretch since the
 * platform last left `normal`, named by the id of that change. Every change
 * until the level is back at `normal` (conserve → critical → shutdown →
 * critical...) is the same episode.
 */
export async function powerEpisodeOf(db: Database, change: LevelChange): Promise<string> {
  const [start] = await db
    .select({ id: energyLevelChanges.id })
    .from(energyLevelChanges)
    .where(and(eq(energyLevelChanges.fromLevel, "normal"), lte(energyLevelChanges.seq, change.seq)))
    .orderBy(desc(energyLevelChanges.seq))
    .limit(1);
  return start?.id ?? change.id;
}

/**
 * When the platform last came back to `normal` (before the change with
 * `beforeSeq`, if given): the start of the current approach to an episode.
 * The epoch when it never left normal.
 */
export async function lastBackToNormal(db: Database, beforeSeq?: number): Promise<Date> {
  const [back] = await db
    .select({ createdAt: energyLevelChanges.createdAt })
    .from(energyLevelChanges)
    .where(and(eq(energyLevelChanges.toLevel, "normal"), beforeSeq === undefined ? undefined : lt(energyLevelChanges.seq, beforeSeq)))
    .orderBy(desc(energyLevelChanges.seq))
    .limit(1);
  return back?.createdAt ?? new Date(0);
}
