import { eq } from "drizzle-orm";
import type { Database } from "../../db/client";
import { energyMonitor } from "../../db/schema";
import { clockOf, type EnergyClock } from "./clock";

/** There is one charge controller, hence one monitor row. */
export const MONITOR_ID = "controller";

export type MonitorState = Omit<typeof energyMonitor.$inferInsert, "id">;

/** The monitor publishes its state here so any process can report telemetry health. */
export async function saveMonitorState(db: Database, state: MonitorState): Promise<void> {
  await db
    .insert(energyMonitor)
    .values({ id: MONITOR_ID, ...state })
    .onConflictDoUpdate({ target: energyMonitor.id, set: state });
}

export async function readMonitorState(db: Database) {
  const [row] = await db.select().from(energyMonitor).where(eq(energyMonitor.id, MONITOR_ID));
  return row ?? null;
}

/** The energy clock the monitor publishes (real time when no monitor has run). */
export async function energyClockOf(db: Database): Promise<EnergyClock> {
  const [row] = await db.select({ clock: energyMonitor.clock }).from(energyMonitor).where(eq(energyMonitor.id, MONITOR_ID));
  return clockOf(row?.clock ?? null);
}
