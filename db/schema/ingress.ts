import { bigint, pgTable, primaryKey, uuid } from "drizzle-orm/pg-core";
import { timestamptz, updatedAt } from "./columns";
import { instances } from "./compute";

/**
 * Requests and bytes the ingress proxy served for each instance, per UTC hour,
 * counted from the proxy's access log. Every request to the instance's host
 * counts, whether the container answered or the platform's edge did (paused,
 * stopped, starting); requests for unknown hosts count for nobody.
 */
export const instanceTraffic = pgTable(
  "instance_traffic",
  {
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => instances.id),
    /** Start of the UTC hour. */
    hour: timestamptz("hour").notNull(),
    requests: bigint("requests", { mode: "number" }).notNull().default(0),
    /** Response body bytes sent to visitors. */
    bytesSent: bigint("bytes_sent", { mode: "number" }).notNull().default(0),
    status2xx: bigint("status_2xx", { mode: "number" }).notNull().default(0),
    status3xx: bigint("status_3xx", { mode: "number" }).notNull().default(0),
    status4xx: bigint("status_4xx", { mode: "number" }).notNull().default(0),
    status5xx: bigint("status_5xx", { mode: "number" }).notNull().default(0),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.instanceId, t.hour] })],
);
