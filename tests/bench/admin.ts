/**
 * Admin benchmark (not a test), against real PostgreSQL and Redis. For each
 * size in `sizes` (users, ascending) it grows the same database to that many
 * users, each with `instances` instances (and their plan row), `hours` hours
 * of usage per instance in each of this month and the last, invoices for last
 * month and 25 audit rows per user (all set-based: INSERT … SELECT
 * generate_series), then times the admin reads on that volume: the statistics
 * overview (aggregates only; usage from the monthly aggregate), the first
 * page and a deep page of the users, audit and instance lists (keyset
 * cursors), a substring search and the queue health. It prints the figures
 * per size and how the overview's median grew against the smallest size.
 *
 * Run: node_modules/.bin/bun tests/bench/admin.ts [sizes=5000,10000,20000] [instances=2] [hours=24]
 * (20,000 users × 2 instances × 24 h × 2 months = 1.92 M usage rows.)
 *
 * It uses its own database and Redis prefix and removes them at the end.
 */
import { eq, sql } from "drizzle-orm";
import { hosts, images, plans, users } from "../../db/schema";
import { listAudit } from "../../server/admin/audit-log";
import { listAllInstances } from "../../server/admin/instances";
import { queueHealth } from "../../server/admin/queues";
import { statsOverview } from "../../server/admin/stats";
import { listUsers } from "../../server/admin/users";
import { runInvoicing } from "../../server/billing/invoicing";
import { periodOf, previousPeriod } from "../../server/billing/periods";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { defineSandbox } from "../harness/sandbox";

const [sizesArg = "5000,10000,20000", perUserArg = "2", hoursArg = "24"] = process.argv.slice(2);
const sizes = sizesArg
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const perUser = Number(perUserArg);
const hoursN = Number(hoursArg);
const AUDIT_PER_USER = 25;
// Its own database, Redis prefix and data folder, removed at the end.
const sandbox = defineSandbox("bench");
await sandbox.create();
const config = loadConfig({ ...sandbox.env, LOG_LEVEL: "error" });
const services = await createServices(config, {
  log: createLogger({ level: "error" }),
});
const { db } = services;

/** Median and worst of `runs` timings of `work`, in milliseconds. */
async function timed<T>(runs: number, work: () => Promise<T>) {
  const ms: number[] = [];
  let value!: T;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    value = await work();
    ms.push(performance.now() - started);
  }
  ms.sort((a, b) => a - b);
  return {
    value,
    medianMs: Math.round(ms[Math.floor(ms.length / 2)]! * 10) / 10,
    maxMs: Math.round(ms.at(-1)! * 10) / 10,
  };
}

/** Follows `nextCursor` `pages` times; returns the cursor of the last page reached. */
async function deepCursor(pages: number, fetchPage: (cursor?: string) => Promise<{ nextCursor: string | null }>) {
  let cursor: string | undefined;
  for (let i = 0; i < pages; i++) cursor = (await fetchPage(cursor)).nextCursor ?? cursor;
  return cursor;
}

const results: Record<string, unknown> = {
  machine: { cpus: navigator.hardwareConcurrency },
};
const bySize: Array<Record<string, unknown>> = [];
try {
  const now = new Date();
  const current = periodOf(now);
  const last = previousPeriod(now);
  const [host] = await db
    .insert(hosts)
    .values({
      name: "bench-seed",
      endpoint: "unix:///nonexistent/bench.sock",
      status: "offline",
    })
    .returning();
  const [plan] = await db.select().from(plans).where(eq(plans.slug, "nano"));
  const [image] = await db.select().from(images).where(eq(images.slug, "busybox"));
  let seeded = 0;
  for (const usersN of sizes) {
    const from = seeded + 1;
    const seedStarted = performance.now();
    // The users from..usersN, their instances with plan rows (seq 0, as server/compute/create.ts writes), their usage: one statement
    // (a million usage rows take longer than the pool's statement timeout).
    await db.transaction(async (tx) => {
      await tx.execute(sql`set local statement_timeout = 0`);
      await tx.execute(sql`
      with u as (
        insert into users (email, name, password_hash, status, role, created_at)
        select 'bench' || g || '@example.test', 'Bench user ' || g, 'not-a-password',
               (case when g % 50 = 0 then 'suspended' when g % 7 = 0 then 'unverified' else 'active' end)::user_status,
               (case when g % 1000 = 0 then 'operator' else 'customer' end)::user_role,
               now() - make_interval(secs => g)
        from generate_series(${from}::int, ${usersN}::int) g
        returning id, created_at
      ), i as (
        insert into instances (user_id, host_id, name, plan_id, image_id, image_reference, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, state, created_at)
        select u.id, ${host!.id}, 'vm-' || k || '-' || substr(u.id::text, 25), ${plan!.id}, ${image!.id}, ${image!.reference}, ${plan!.cpuMillis}, ${plan!.memoryMb}, ${plan!.diskGb},
               ${plan!.priceHourlyMinor}, ${plan!.priceMonthlyMinor}, 'USD',
               (case when k % 2 = 0 then 'stopped' else 'running' end)::instance_state, u.created_at + make_interval(secs => k)
        from u cross join generate_series(1, ${perUser}::int) k
        returning id, user_id, plan_id, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, created_at
      ), p as (
        insert into instance_plans (instance_id, seq, plan_id, plan_slug, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, from_at)
        select i.id, 0, i.plan_id, ${plan!.slug}, i.cpu_millis, i.memory_mb, i.disk_gb, i.price_hourly_minor, i.price_monthly_minor, i.currency, i.created_at from i
      )
      insert into usage_records (instance_id, hour, user_id, running_ms, tx_bytes)
      select i.id, p.start + make_interval(hours => h), i.user_id, 3600000, 100000000
      from i
      cross join (values (${last.start.toISOString()}::timestamptz), (${current.start.toISOString()}::timestamptz)) p(start)
      cross join generate_series(0, ${hoursN - 1}::int) h`);
      await tx.execute(sql`
      insert into audit_log (actor_type, actor_id, action, target_type, target_id, reason, created_at)
      select 'user', u.id, (array['auth.login.succeeded', 'compute.instance.create', 'admin.user.role_changed'])[1 + g % 3], 'user', u.id::text, null,
             now() - make_interval(secs => g)
      from generate_series(${(from - 1) * AUDIT_PER_USER + 1}::int, ${usersN * AUDIT_PER_USER}::int) g
      join users u on u.email = 'bench' || (1 + g % ${usersN - from + 1}::int + ${from - 1}::int) || '@example.test'`);
    });
    await db.execute(sql`analyze`);
    const invoicing = await runInvoicing(services, { period: last.name });
    seeded = usersN;
    const size: Record<string, unknown> = {
      seed: {
        users: usersN,
        instances: usersN * perUser,
        usageRows: usersN * perUser * hoursN * 2,
        auditRows: usersN * AUDIT_PER_USER,
        newInvoices: invoicing.created,
        seconds: Math.round(performance.now() - seedStarted) / 1000,
      },
    };

    const stats = await timed(7, () => statsOverview(services));
    size.statsOverview = {
      medianMs: stats.medianMs,
      maxMs: stats.maxMs,
      check: {
        users: stats.value.users.total,
        instances: stats.value.instances.total,
        revenue: stats.value.revenue,
      },
    };

    size.usersFirstPage = await timed(10, () => listUsers(db, { limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    const userDeep = await deepCursor(100, (cursor) => listUsers(db, { limit: 50, cursor }));
    size.usersPage101 = await timed(10, () => listUsers(db, { limit: 50, cursor: userDeep })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    size.usersSearch = await timed(10, () => listUsers(db, { query: "user 1234", limit: 50 })).then(({ value, medianMs, maxMs }) => ({
      medianMs,
      maxMs,
      matches: value.items.length,
    }));
    size.usersByStatus = await timed(10, () => listUsers(db, { status: "suspended", limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));

    size.auditFirstPage = await timed(10, () => listAudit(db, { limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    const auditDeep = await deepCursor(200, (cursor) => listAudit(db, { limit: 50, cursor }));
    size.auditPage201 = await timed(10, () => listAudit(db, { limit: 50, cursor: auditDeep })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    size.auditByAction = await timed(10, () => listAudit(db, { action: "admin.*", limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    const [someone] = await db.select({ id: users.id }).from(users).where(eq(users.email, "bench42@example.test"));
    size.auditByTarget = await timed(10, () => listAudit(db, { targetId: someone!.id, limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));

    size.instancesFirstPage = await timed(10, () => listAllInstances(services, { limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    size.instancesRunning = await timed(10, () => listAllInstances(services, { state: "running", limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    size.queueHealth = await timed(10, () => queueHealth(services.queues)).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
    bySize.push(size);
    console.error(`users=${usersN}: statsOverview median ${stats.medianMs} ms (max ${stats.maxMs} ms)`);
  }
  results.sizes = bySize;
  // How the overview's cost grows: median at each size against the smallest (1.0 = flat).
  const base = (bySize[0]!.statsOverview as { medianMs: number }).medianMs;
  results.statsOverviewGrowth = bySize.map((size) => {
    const { users: u, usageRows } = size.seed as {
      users: number;
      usageRows: number;
    };
    const { medianMs } = size.statsOverview as { medianMs: number };
    return {
      users: u,
      usageRows,
      medianMs,
      vsSmallest: Math.round((medianMs / base) * 100) / 100,
      sizeVsSmallest: u / sizes[0]!,
    };
  });
} finally {
  await services.close();
  await sandbox.destroy();
}
console.log(JSON.stringify(results, null, 2));
process.exit(0);
