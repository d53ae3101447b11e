import { sql } from "drizzle-orm";
import { index, integer, numeric, pgEnum, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { users } from "./auth";
import { createdAt, id, timestamptz, updatedAt } from "./columns";
import { hosts, instances } from "./compute";

export const volumeState = pgEnum("volume_state", ["creating", "available", "deleting", "deleted", "error"]);

/**
 * Persistent storage of a fixed size: an ext4 filesystem in a file allocated
 * up front on its host (so writing past the size fails inside the container
 * and never reaches the host's disk), mounted into at most one instance.
 * A volume lives on one host; an instance using it is placed there.
 */
export const volumes = pgTable(
  "volumes",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    hostId: uuid("host_id")
      .notNull()
      .references(() => hosts.id),
    name: text("name").notNull(),
    sizeMb: integer("size_mb").notNull(),
    state: volumeState("state").notNull().default("creating"),
    stateReason: text("state_reason"),
    /** The instance it is mounted into (from its create until it is deleted), and where. */
    instanceId: uuid("instance_id").references(() => instances.id),
    mountPath: text("mount_path"),
    /** Copied from the configured price at creation, like an instance's plan price. */
    priceGbMonthMinor: integer("price_gb_month_minor").notNull(),
    currency: text("currency").notNull(),
    createdAt: createdAt(),
    /** When its file was made: billing starts here. */
    availableAt: timestamptz("available_at"),
    /** When its deletion was asked for: billing stops here. */
    deletedAt: timestamptz("deleted_at"),
    /** Metering has accounted its storage up to here. */
    meteredUntil: timestamp("metered_until", { withTimezone: true, mode: "date" }),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("volumes_user_idx").on(t.userId, t.createdAt, t.id),
    index("volumes_host_idx").on(t.hostId, t.state),
    index("volumes_instance_idx").on(t.instanceId),
    uniqueIndex("volumes_user_live_name_key").on(t.userId, t.name).where(sql`${t.state} <> 'deleted'`),
  ],
);

/** Storage used per volume per UTC hour, in MiB × milliseconds (billed per GiB-month). */
export const volumeUsage = pgTable(
  "volume_usage",
  {
    volumeId: uuid("volume_id")
      .notNull()
      .references(() => volumes.id),
    hour: timestamptz("hour").notNull(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    mbMs: numeric("mb_ms", { precision: 30, scale: 0, mode: "number" }).notNull().default(0),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.volumeId, t.hour] }), index("volume_usage_user_hour_idx").on(t.userId, t.hour)],
);
