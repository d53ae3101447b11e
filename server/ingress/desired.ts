import { and, asc, eq, inArray, isNotNull, notInArray, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instanceActions, instances } from "../../db/schema";
import type { InstanceRoute } from "./render";

/**
 * The routes the database calls for: one per instance that has an HTTP port
 * and is not being deleted. Only a running instance whose published port is
 * known, and that no pause, stop, restart or delete is about to take down,
 * goes to its container; every other one goes to the platform's edge, which
 * answers from its live state (paused for power, stopped, starting).
 */
export async function desiredRoutes(db: Database): Promise<InstanceRoute[]> {
  const goingDown = db
    .select({ id: instanceActions.instanceId })
    .from(instanceActions)
    .where(and(eq(instanceActions.instanceId, instances.id), inArray(instanceActions.status, ["pending", "running"]), inArray(instanceActions.kind, ["pause", "stop", "restart", "delete"])));
  const rows = await db
    .select({ id: instances.id, hostLabel: instances.hostLabel, state: instances.state, upstream: instances.upstream, goingDown: sql<boolean>`exists (${goingDown})` })
    .from(instances)
    .where(and(isNotNull(instances.httpPort), notInArray(instances.state, ["deleting", "deleted"])))
    .orderBy(asc(instances.id));
  return rows.map((row) => ({
    instanceId: row.id,
    hostLabel: row.hostLabel,
    target: row.state === "running" && row.upstream && !row.goingDown ? { kind: "upstream", dial: row.upstream } : { kind: "edge" },
  }));
}
