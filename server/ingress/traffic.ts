import { and, asc, eq, gte, lt, sql } from "drizzle-orm";
import type { Database } from "../../db/client";
import { instanceTraffic } from "../../db/schema";
import { pgArray } from "../billing/arrays";
import { findInstance } from "../compute/instances";
import { AppError } from "../errors";

/** Counters for one instance host in one UTC hour, as aggregated from the access log. */
export type TrafficCount = { label: string; hour: Date; requests: number; bytesSent: number; status2xx: number; status3xx: number; status4xx: number; status5xx: number };

/**
 * Adds a batch of counts to the hourly rows, in one statement: each host label
 * is matched to the live instance that owns it (requests for a host nobody
 * owns any more are dropped), and existing hours are added to.
 */
export async function recordTraffic(db: Database, counts: readonly TrafficCount[]): Promise<number> {
  if (!counts.length) return 0;
  const col = <K extends keyof TrafficCount>(key: K) => pgArray(counts.map((c) => c[key] as string | number | Date));
  const result = await db.execute(sql`
    insert into instance_traffic (instance_id, hour, requests, bytes_sent, status_2xx, status_3xx, status_4xx, status_5xx)
    select i.id, t.hour, t.requests, t.bytes_sent, t.s2, t.s3, t.s4, t.s5
    from unnest(
      ${col("label")}::text[], ${col("hour")}::timestamptz[], ${col("requests")}::bigint[], ${col("bytesSent")}::bigint[],
      ${col("status2xx")}::bigint[], ${col("status3xx")}::bigint[], ${col("status4xx")}::bigint[], ${col("status5xx")}::bigint[]
    ) as t(label, hour, requests, bytes_sent, s2, s3, s4, s5)
    join instances i on i.host_label = t.label and i.state <> 'deleted'
    on conflict (instance_id, hour) do update set
      requests = instance_traffic.requests + excluded.requests,
      bytes_sent = instance_traffic.bytes_sent + excluded.bytes_sent,
      status_2xx = instance_traffic.status_2xx + excluded.status_2xx,
      status_3xx = instance_traffic.status_3xx + excluded.status_3xx,
      status_4xx = instance_traffic.status_4xx + excluded.status_4xx,
      status_5xx = instance_traffic.status_5xx + excluded.status_5xx,
      updated_at = now()
  `);
  return (result as { count?: number; affectedRows?: number }).count ?? (result as { affectedRows?: number }).affectedRows ?? 0;
}

const HOUR_MS = 3_600_000;
const MAX_RANGE_MS = 92 * 24 * HOUR_MS;

/**
 * What the proxy served for the owner's instance between `from` (inclusive)
 * and `to` (exclusive), by UTC hour: requests, response bytes, and responses
 * by status class. Defaults to the last 24 hours. Another user's instance is
 * NOT_FOUND; deleted instances keep their history.
 */
export async function instanceTrafficReport(db: Database, ownerId: string, instanceId: string, range: { from?: string | undefined; to?: string | undefined }) {
  const instance = await findInstance(db, ownerId, instanceId);
  const to = range.to ? new Date(range.to) : new Date();
  const from = range.from ? new Date(range.from) : new Date(to.getTime() - 24 * HOUR_MS);
  if (!(from < to)) throw new AppError("VALIDATION_FAILED", "`from` must be before `to`", { details: { from: from.toISOString(), to: to.toISOString() } });
  if (to.getTime() - from.getTime() > MAX_RANGE_MS) throw new AppError("VALIDATION_FAILED", "The range may span at most 92 days", { details: { from: from.toISOString(), to: to.toISOString() } });
  const hourStart = new Date(Math.floor(from.getTime() / HOUR_MS) * HOUR_MS);
  const rows = await db
    .select()
    .from(instanceTraffic)
    .where(and(eq(instanceTraffic.instanceId, instance.id), gte(instanceTraffic.hour, hourStart), lt(instanceTraffic.hour, to)))
    .orderBy(asc(instanceTraffic.hour));
  const totals = { requests: 0, bytesSent: 0, status: { "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0 } };
  const hours = rows.map((row) => {
    totals.requests += row.requests;
    totals.bytesSent += row.bytesSent;
    totals.status["2xx"] += row.status2xx;
    totals.status["3xx"] += row.status3xx;
    totals.status["4xx"] += row.status4xx;
    totals.status["5xx"] += row.status5xx;
    return {
      hour: row.hour.toISOString(),
      requests: row.requests,
      bytesSent: row.bytesSent,
      status: { "2xx": row.status2xx, "3xx": row.status3xx, "4xx": row.status4xx, "5xx": row.status5xx },
    };
  });
  return { instanceId: instance.id, from: hourStart.toISOString(), to: to.toISOString(), totals, hours };
}
