import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { hosts, images, instancePlans, instances, instanceStateHistory, plans, usageRecords, users } from "../../db/schema";
import type { Services } from "../../server/services";

type Db = Pick<Services, "db">;

/**
 * An instance row written straight to the database (no container), sold at
 * the given prices, for billing tests that drive metering and invoicing from
 * a state history they write themselves. It sits on a host row of its own so
 * no reconciler ever looks for its container.
 */
export async function seedInstance(
  services: Db,
  userId: string,
  opts: {
    name?: string;
    priceHourlyMinor?: number;
    priceMonthlyMinor?: number;
    priority?: "critical" | "standard" | "interruptible";
    state?: "running" | "stopped" | "paused" | "deleted";
    createdAt?: Date;
    currency?: string;
  } = {},
) {
  const { db } = services;
  const [host] = await db
    .insert(hosts)
    .values({ name: "billing-seed", endpoint: "unix:///nonexistent/sahary-billing-seed.sock", status: "offline" })
    .onConflictDoUpdate({ target: hosts.name, set: { status: "offline" } })
    .returning();
  const [plan] = await db.select().from(plans).where(eq(plans.slug, "nano"));
  const [image] = await db.select().from(images).where(eq(images.slug, "busybox"));
  const [instance] = await db
    .insert(instances)
    .values({
      userId,
      hostId: host!.id,
      name: opts.name ?? `seed-${crypto.randomUUID().slice(0, 8)}`,
      planId: plan!.id,
      imageId: image!.id,
      imageReference: image!.reference,
      cpuMillis: plan!.cpuMillis,
      memoryMb: plan!.memoryMb,
      diskGb: plan!.diskGb,
      priceHourlyMinor: opts.priceHourlyMinor ?? plan!.priceHourlyMinor,
      priceMonthlyMinor: opts.priceMonthlyMinor ?? plan!.priceMonthlyMinor,
      currency: opts.currency ?? plan!.currency,
      priority: opts.priority ?? "standard",
      state: opts.state ?? "stopped",
      ...(opts.createdAt ? { createdAt: opts.createdAt, stateChangedAt: opts.createdAt } : {}),
    })
    .returning();
  await db.insert(instancePlans).values({
    instanceId: instance!.id,
    seq: 0,
    planId: plan!.id,
    planSlug: plan!.slug,
    cpuMillis: instance!.cpuMillis,
    memoryMb: instance!.memoryMb,
    diskGb: instance!.diskGb,
    priceHourlyMinor: instance!.priceHourlyMinor,
    priceMonthlyMinor: instance!.priceMonthlyMinor,
    currency: instance!.currency,
    fromAt: instance!.createdAt,
  });
  return instance!;
}

/** State-history rows at chosen times, as compute would have written them. */
export async function seedHistory(services: Db, instanceId: string, rows: Array<{ from: string | null; to: string; at: Date; reason?: string }>) {
  for (const row of rows) {
    await services.db.insert(instanceStateHistory).values({
      instanceId,
      fromState: row.from as never,
      toState: row.to as never,
      reason: row.reason ?? "requested",
      actorType: "system",
      at: row.at,
    });
  }
}

/** Usage already metered for an instance, hour by hour. */
export async function seedUsage(
  services: Db,
  instance: { id: string; userId: string },
  hoursOfUsage: Array<{ hour: Date; runningMs?: number; pausedMs?: number; emergencyPausedMs?: number; txBytes?: number }>,
) {
  await services.db.insert(usageRecords).values(
    hoursOfUsage.map((h) => ({
      instanceId: instance.id,
      userId: instance.userId,
      hour: h.hour,
      runningMs: h.runningMs ?? 0,
      pausedMs: h.pausedMs ?? 0,
      emergencyPausedMs: h.emergencyPausedMs ?? 0,
      txBytes: h.txBytes ?? 0,
    })),
  );
}

/** `n` customers with one instance each and an hour of usage at 123 in `period`, written in bulk (benchmark-sized fixtures). */
export async function seedCustomers(services: Db, period: string, n: number) {
  const tag = crypto.randomUUID().slice(0, 8);
  const [year, month] = period.split("-").map(Number) as [number, number];
  const hour = new Date(Date.UTC(year, month - 1, 5, 10)).toISOString();
  await services.db.execute(sql`
    with host as (
      insert into hosts (name, endpoint, status) values ('fault-billing', 'unix:///nonexistent/fault-billing.sock', 'offline')
      on conflict (name) do update set status = 'offline' returning id
    ), plan as (select * from plans where slug = 'nano'), image as (select * from images where slug = 'busybox'),
    u as (
      insert into users (email, name, password_hash, role, status, email_verified_at)
      select 'inv-' || ${tag} || '-' || g || '@example.test', 'Customer ' || g, 'x', 'customer', 'active', now() from generate_series(1, ${n}) g
      returning id
    ), i as (
      insert into instances (user_id, host_id, name, plan_id, image_id, image_reference, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, priority, state)
      select u.id, host.id, 'inv-' || left(u.id::text, 8), plan.id, image.id, image.reference, plan.cpu_millis, plan.memory_mb, plan.disk_gb, 123, 100000, plan.currency, 'standard', 'stopped'
      from u, host, plan, image
      returning id, user_id, plan_id, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, created_at
    ), p as (
      -- Each instance's plan history starts at its creation (server/compute/create.ts writes seq 0 the same way).
      insert into instance_plans (instance_id, seq, plan_id, plan_slug, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, from_at)
      select i.id, 0, i.plan_id, 'nano', i.cpu_millis, i.memory_mb, i.disk_gb, i.price_hourly_minor, i.price_monthly_minor, i.currency, i.created_at from i
    )
    insert into usage_records (instance_id, user_id, hour, running_ms, paused_ms, emergency_paused_ms, tx_bytes)
    select i.id, i.user_id, ${hour}::timestamptz, 3600000, 0, 0, 0 from i`);
  const [first] = await services.db
    .select({ id: users.id })
    .from(users)
    .where(eq(users.email, `inv-${tag}-1@example.test`));
  return { firstUser: first!.id };
}

/**
 * Holds the invoice counter's row lock from a connection of its own, so an
 * invoicing run is certainly still at work (waiting to number its invoices)
 * while a test acts. Call `release()` in `finally` as well: a lock left held
 * would stall every later invoicing in the run. Releasing twice is harmless.
 */
export async function holdInvoiceCounter(databaseUrl: string): Promise<{ release(): Promise<void> }> {
  const client = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  await client`insert into billing_counters (name, value) values ('invoice', 0) on conflict do nothing`;
  let letGo!: () => void;
  const held = new Promise<void>((resolve) => (letGo = resolve));
  let locked!: () => void;
  const lockTaken = new Promise<void>((resolve) => (locked = resolve));
  const holder = client.begin(async (tx) => {
    await tx`select value from billing_counters where name = 'invoice' for update`;
    locked();
    await held;
  });
  await lockTaken;
  let released: Promise<void> | undefined;
  return {
    release: () => {
      letGo();
      released ??= holder.then(() => client.end({ timeout: 5 }));
      return released;
    },
  };
}
