import { and, eq, isNotNull, lt, or, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { volumes, volumeUsage } from "../../db/schema";
import { HOUR_MS, hourFloor } from "./periods";

/**
 * Accounts volumes' storage up to `until`: each volume's size for every
 * millisecond from when its file was made (`availableAt`) until its deletion
 * was asked for (`deletedAt`), whatever its instance was doing, split by UTC
 * hour into `volume_usage` (MiB × ms). Each volume's cursor is advanced in
 * the same transaction that adds its usage, and only from the value it was
 * read at, so concurrent or repeated ticks add each window once.
 */
export async function meterVolumes(db: Database, until: Date): Promise<number> {
  const due = await db
    .select()
    .from(volumes)
    .where(
      and(
        isNotNull(volumes.availableAt),
        lt(volumes.availableAt, until),
        or(sql`${volumes.meteredUntil} is null`, and(lt(volumes.meteredUntil, until), or(sql`${volumes.deletedAt} is null`, lt(volumes.meteredUntil, volumes.deletedAt)))),
      ),
    )
    .limit(5000);
  let metered = 0;
  for (const volume of due) {
    const from = volume.meteredUntil ?? volume.availableAt!;
    const to = new Date(Math.max(from.getTime(), Math.min(until.getTime(), volume.deletedAt?.getTime() ?? until.getTime())));
    const rows: Array<typeof volumeUsage.$inferInsert> = [];
    for (let t = from.getTime(); t < to.getTime(); ) {
      const hour = hourFloor(t);
      const end = Math.min(to.getTime(), hour + HOUR_MS);
      rows.push({ volumeId: volume.id, hour: new Date(hour), userId: volume.userId, mbMs: volume.sizeMb * (end - t) });
      t = end;
    }
    const advanced = await db.transaction(async (tx) => {
      const [moved] = await tx
        .update(volumes)
        .set({ meteredUntil: to.getTime() > from.getTime() ? to : until })
        .where(and(eq(volumes.id, volume.id), sql`${volumes.meteredUntil} is not distinct from ${volume.meteredUntil?.toISOString() ?? null}::timestamptz`))
        .returning({ id: volumes.id });
      if (!moved || !rows.length) return Boolean(moved);
      await tx
        .insert(volumeUsage)
        .values(rows)
        .onConflictDoUpdate({ target: [volumeUsage.volumeId, volumeUsage.hour], set: { mbMs: sql`${volumeUsage.mbMs} + excluded.mb_ms`, updatedAt: new Date() } });
      return true;
    });
    if (advanced) metered += 1;
  }
  return metered;
}
