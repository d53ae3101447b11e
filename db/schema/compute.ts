import { sql } from "drizzle-orm";
import { bigint, boolean, check, index, integer, jsonb, pgEnum, pgTable, primaryKey, text, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { users } from "./auth";
import { createdAt, id, timestamptz, updatedAt } from "./columns";

export const hostStatus = pgEnum("host_status", ["active", "offline"]);

/**
 * Docker engines instances are placed on. Capacity is read from the engine
 * (`docker info`) and multiplied by the configured overcommit; what is
 * allocated is the sum of the plans of the host's instances that are not
 * deleted, so there is no counter to drift.
 */
export const hosts = pgTable(
  "hosts",
  {
    id: id(),
    name: text("name").notNull(),
    endpoint: text("endpoint").notNull(),
    status: hostStatus("status").notNull().default("offline"),
    cpuCapacityMillis: integer("cpu_capacity_millis").notNull().default(0),
    memoryCapacityMb: integer("memory_capacity_mb").notNull().default(0),
    storageDriver: text("storage_driver"),
    engineVersion: text("engine_version"),
    /**
     * `cgroupfs` or `systemd` (`docker info` CgroupDriver). On `cgroupfs`, an
     * instance's container goes under its priority's freeze group (a cgroup
     * parent), which the power emergency freezes in one write
     * (server/compute/freezer.ts).
     */
    cgroupDriver: text("cgroup_driver"),
    /**
     * The engine remaps container users to a subordinate range (`docker info`
     * SecurityOptions `name=userns`); `usernsRoot` is the host uid/gid that
     * container root maps to (from its DockerRootDir, `…/<uid>.<gid>`), so
     * volume files are owned by the host-side ids of the instance user.
     */
    usernsRemap: boolean("userns_remap").notNull().default(false),
    usernsRoot: jsonb("userns_root").$type<{ uid: number; gid: number } | null>(),
    /** Sized volumes can be made here (local engine, workers running as root with losetup and mkfs.ext4); `volumesNote` says why not. */
    volumesSupported: boolean("volumes_supported").notNull().default(false),
    volumesNote: text("volumes_note"),
    /** What volumes may allocate on this host's volume folder, in MiB (VOLUME_DISK_SHARE of its filesystem). */
    volumeCapacityMb: integer("volume_capacity_mb").notNull().default(0),
    lastError: text("last_error"),
    lastSeenAt: timestamptz("last_seen_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex("hosts_name_key").on(t.name)],
);

/** Sizes and prices. Instances copy what they need at creation, so a later price change never rewrites history. */
export const plans = pgTable(
  "plans",
  {
    id: id(),
    slug: text("slug").notNull(),
    name: text("name").notNull(),
    /** Thousandths of a vCPU: 250 is a quarter of a core. */
    cpuMillis: integer("cpu_millis").notNull(),
    memoryMb: integer("memory_mb").notNull(),
    diskGb: integer("disk_gb").notNull(),
    /** Integer minor units (cents). Billing charges hourly, capped at the monthly price. */
    priceHourlyMinor: integer("price_hourly_minor").notNull(),
    priceMonthlyMinor: integer("price_monthly_minor").notNull(),
    currency: text("currency").notNull(),
    active: boolean("active").notNull().default(true),
    sortOrder: integer("sort_order").notNull().default(0),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("plans_slug_key").on(t.slug),
    check("plans_positive", sql`${t.cpuMillis} > 0 and ${t.memoryMb} > 0 and ${t.diskGb} > 0 and ${t.priceHourlyMinor} >= 0 and ${t.priceMonthlyMinor} >= 0`),
  ],
);

/**
 * The catalogue of images. Every instance runs as a non-root user with every
 * capability dropped, so an image gets no capability back (a non-root process
 * has none in effect); `writablePaths` are the folders it writes to besides
 * /tmp, given to it as size-capped tmpfs on its read-only root.
 */
export const images = pgTable(
  "images",
  {
    id: id(),
    slug: text("slug").notNull(),
    name: text("name").notNull(),
    reference: text("reference").notNull(),
    description: text("description").notNull(),
    writablePaths: jsonb("writable_paths").$type<string[]>().notNull().default([]),
    /** The port the image serves HTTP on; null for images that serve none (they get no URL). */
    httpPort: integer("http_port"),
    active: boolean("active").notNull().default(true),
    sortOrder: integer("sort_order").notNull().default(0),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("images_slug_key").on(t.slug), check("images_http_port_range", sql`${t.httpPort} between 1 and 65535`)],
);

export const instanceState = pgEnum("instance_state", ["pending", "provisioning", "running", "stopping", "stopped", "paused", "deleting", "deleted", "error"]);
export const instancePriority = pgEnum("instance_priority", ["critical", "standard", "interruptible"]);

export const instances = pgTable(
  "instances",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    hostId: uuid("host_id")
      .notNull()
      .references(() => hosts.id),
    name: text("name").notNull(),
    planId: uuid("plan_id")
      .notNull()
      .references(() => plans.id),
    /** The catalogue image, or null for a customer's own image from an allowed registry. */
    imageId: uuid("image_id").references(() => images.id),
    // Snapshot of the plan and image at creation.
    /** Normalised like Docker does (`registry/repo:tag` or `…@sha256:…`). */
    imageReference: text("image_reference").notNull(),
    /** What actually runs: the manifest digest pulled from the registry (`sha256:…`), or the local image id; null until first provisioned. */
    imageDigest: text("image_digest"),
    /** Overrides the image's ENTRYPOINT / CMD; never run through a shell. */
    command: jsonb("command").$type<string[] | null>(),
    args: jsonb("args").$type<string[] | null>(),
    cpuMillis: integer("cpu_millis").notNull(),
    memoryMb: integer("memory_mb").notNull(),
    diskGb: integer("disk_gb").notNull(),
    priceHourlyMinor: integer("price_hourly_minor").notNull(),
    priceMonthlyMinor: integer("price_monthly_minor").notNull(),
    currency: text("currency").notNull(),
    /**
     * The container port the ingress proxies to, copied from the image at
     * creation (customers' own images will bring their own); null: no URL.
     */
    httpPort: integer("http_port"),
    /**
     * The instance's DNS label, `<name>-<first 8 hex digits of its id>`: its
     * host is `<label>.<INGRESS_DOMAIN>`. Derived, so it can never disagree.
     */
    hostLabel: text("host_label").notNull().generatedAlwaysAs(sql`name || '-' || left(id::text, 8)`),
    priority: instancePriority("priority").notNull().default("standard"),
    env: jsonb("env").$type<Record<string, string>>().notNull().default({}),
    state: instanceState("state").notNull().default("pending"),
    stateReason: text("state_reason"),
    stateChangedAt: timestamptz("state_changed_at").notNull().defaultNow(),
    containerId: text("container_id"),
    ipAddress: text("ip_address"),
    /**
     * `ip:port` where the engine publishes `httpPort` for the proxy, read back
     * from the engine after every start; null while the container is not up.
     */
    upstream: text("upstream"),
    /**
     * The CPU the power policy currently allows (thousandths of a vCPU), below
     * the plan's `cpuMillis`; null: the plan's. Applied to the container by a
     * `throttle` action (and by start and resume), undone on recovery.
     */
    cpuThrottleMillis: integer("cpu_throttle_millis"),
    cpuThrottleReason: text("cpu_throttle_reason"),
    /**
     * null until the container exists. True when nothing the instance writes
     * can reach the host's disk unbounded: its root is read-only, its scratch
     * space is size-capped tmpfs (memory), and what persists is on volumes of
     * a fixed size (or the storage driver caps its writable layer).
     */
    diskLimitEnforced: boolean("disk_limit_enforced"),
    /** Out-of-memory kills inside the instance (any of its processes), counted from the engine's `oom` events. */
    oomKills: integer("oom_kills").notNull().default(0),
    lastOomKilledAt: timestamptz("last_oom_killed_at"),
    /** The current row of `instance_plans`: bumped by every resize; metering splits usage where it changes. */
    planSeq: integer("plan_seq").notNull().default(0),
    idempotencyKey: text("idempotency_key"),
    /** SHA-256 of the create request, to tell a replay from a reused key. */
    requestHash: text("request_hash"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    deletedAt: timestamptz("deleted_at"),
  },
  (t) => [
    index("instances_user_idx").on(t.userId, t.createdAt, t.id),
    index("instances_host_state_idx").on(t.hostId, t.state),
    index("instances_state_idx").on(t.state),
    // The admin list across users, newest first (keyset on created_at, id).
    index("instances_created_idx").on(t.createdAt, t.id),
    uniqueIndex("instances_user_idempotency_key").on(t.userId, t.idempotencyKey),
    uniqueIndex("instances_user_live_name_key").on(t.userId, t.name).where(sql`${t.state} <> 'deleted'`),
    // One live instance per host name: the proxy routes by it.
    uniqueIndex("instances_live_host_label_key").on(t.hostLabel).where(sql`${t.state} <> 'deleted'`),
    check("instances_http_port_range", sql`${t.httpPort} between 1 and 65535`),
  ],
);

/**
 * Every state change with its reason. Billing derives running and paused time
 * from these rows; the power policy's pauses and stops are told apart by reason.
 */
export const instanceStateHistory = pgTable(
  "instance_state_history",
  {
    id: id(),
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => instances.id),
    fromState: instanceState("from_state"),
    toState: instanceState("to_state").notNull(),
    reason: text("reason").notNull(),
    actorType: text("actor_type").notNull(),
    actorId: uuid("actor_id"),
    actionId: uuid("action_id"),
    at: createdAt(),
    /** Orders changes that share a timestamp. */
    seq: bigint("seq", { mode: "number" }).generatedAlwaysAsIdentity(),
  },
  (t) => [index("instance_state_history_instance_idx").on(t.instanceId, t.seq)],
);

export const actionKind = pgEnum("instance_action_kind", ["create", "start", "stop", "restart", "delete", "pause", "resume", "throttle", "resize"]);
export const actionStatus = pgEnum("instance_action_status", ["pending", "running", "succeeded", "failed"]);

/**
 * Asynchronous work on an instance, pollable by the client. At most one action
 * per instance is pending or running: the unique index is the lock that keeps
 * two lifecycle jobs from acting on one container at once.
 */
export const instanceActions = pgTable(
  "instance_actions",
  {
    id: id(),
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => instances.id),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    kind: actionKind("kind").notNull(),
    status: actionStatus("status").notNull().default("pending"),
    reason: text("reason").notNull(),
    actorType: text("actor_type").notNull(),
    actorId: uuid("actor_id"),
    error: text("error"),
    /** What the action needs beyond its kind: a resize's target plan, a delete's `deleteVolumes`. */
    params: jsonb("params").$type<ActionParams>().notNull().default({}),
    /** Progress a client can poll while the action runs (an image pull's bytes and layers). */
    progress: jsonb("progress").$type<ActionProgress | null>(),
    attempts: integer("attempts").notNull().default(0),
    createdAt: createdAt(),
    startedAt: timestamptz("started_at"),
    finishedAt: timestamptz("finished_at"),
  },
  (t) => [
    index("instance_actions_instance_idx").on(t.instanceId, t.createdAt),
    index("instance_actions_open_idx").on(t.status, t.createdAt).where(sql`${t.status} in ('pending', 'running')`),
    uniqueIndex("instance_actions_one_open_key").on(t.instanceId).where(sql`${t.status} in ('pending', 'running')`),
  ],
);

export type ActionParams = { planId?: string; deleteVolumes?: boolean };
export type ActionProgress = { phase: "pulling" | "starting"; layersTotal: number; layersDone: number; bytesTotal: number; bytesDone: number; updatedAt: string };

/**
 * The plan an instance had from each moment on: a row at creation (seq 0)
 * and one per resize. Usage is metered per row, so each price is billed for
 * exactly the time it was in force.
 */
export const instancePlans = pgTable(
  "instance_plans",
  {
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => instances.id),
    seq: integer("seq").notNull(),
    planId: uuid("plan_id")
      .notNull()
      .references(() => plans.id),
    planSlug: text("plan_slug").notNull(),
    cpuMillis: integer("cpu_millis").notNull(),
    memoryMb: integer("memory_mb").notNull(),
    diskGb: integer("disk_gb").notNull(),
    priceHourlyMinor: integer("price_hourly_minor").notNull(),
    priceMonthlyMinor: integer("price_monthly_minor").notNull(),
    currency: text("currency").notNull(),
    fromAt: timestamptz("from_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.instanceId, t.seq] })],
);

/** Per-user overrides of the configured default quotas; a null column means "the default". */
export const computeQuotas = pgTable("compute_quotas", {
  userId: uuid("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  maxInstances: integer("max_instances"),
  maxCpuMillis: integer("max_cpu_millis"),
  maxMemoryMb: integer("max_memory_mb"),
  maxVolumes: integer("max_volumes"),
  maxVolumeMb: integer("max_volume_mb"),
  updatedAt: updatedAt(),
});
