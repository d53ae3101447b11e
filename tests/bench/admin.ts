/**
 * Admin benchmark (not a test), against real PostgreSQL and Redis: seeds
 * `users` users with `instances` instances each, `hours` hours of usage per
 * instance in each of this month and the last, invoices for last month, and
 * `audit` audit rows (set-based), then times the admin reads on that volume:
 * the statistics overview (aggregates only), the first page and a deep page
 * of the users, audit and instance lists (keyset cursors), a substring search
 * and the queue health.
 *
 * Run: node_modules/.bin/bun tests/bench/admin.ts [users=20000] [instances=2] [hours=24] [audit=500000]
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

const [usersN = 20_000, perUser = 2, hoursN = 24, auditN = 500_000] = process.argv.slice(2).map(Number);
// Its own database, Redis prefix and data folder, removed at the end.
const sandbox = defineSandbox("bench");
await sandbox.create();
const config = loadConfig({ ...sandbox.env, LOG_LEVEL: "error" });
const services = await createServices(config, { log: createLogger({ level: "error" }) });
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
  return { value, medianMs: Math.round(ms[Math.floor(ms.length / 2)]! * 10) / 10, maxMs: Math.round(ms.at(-1)! * 10) / 10 };
}

/** Follows `nextCursor` `pages` times; returns the cursor of the last page reached. */
async function deepCursor(pages: number, fetchPage: (cursor?: string) => Promise<{ nextCursor: string | null }>) {
  let cursor: string | undefined;
  for (let i = 0; i < pages; i++) cursor = (await fetchPage(cursor)).nextCursor ?? cursor;
  return cursor;
}

const results: Record<string, unknown> = { machine: { cpus: navigator.hardwareConcurrency } };
try {
  const now = new Date();
  const current = periodOf(now);
  const last = previousPeriod(now);
  const seedStarted = performance.now();
  const [host] = await db.insert(hosts).values({ name: "bench-seed", endpoint: "unix:///nonexistent/bench.sock", status: "offline" }).returning();
  const [plan] = await db.select().from(plans).where(eq(plans.slug, "nano"));
  const [image] = await db.select().from(images).where(eq(images.slug, "busybox"));
  await db.execute(sql`
    insert into users (email, name, password_hash, status, role, created_at)
    select 'bench' || g || '@example.test', 'Bench user ' || g, 'not-a-password',
           (case when g % 50 = 0 then 'suspended' when g % 7 = 0 then 'unverified' else 'active' end)::user_status,
           (case when g % 1000 = 0 then 'operator' else 'customer' end)::user_role,
           now() - make_interval(secs => g)
    from generate_series(1, ${usersN}) g`);
  await db.execute(sql`
    insert into instances (user_id, host_id, name, plan_id, image_id, image_reference, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, state, created_at)
    select u.id, ${host!.id}, 'vm-' || k, ${plan!.id}, ${image!.id}, ${image!.reference}, ${plan!.cpuMillis}, ${plan!.memoryMb}, ${plan!.diskGb},
           ${plan!.priceHourlyMinor}, ${plan!.priceMonthlyMinor}, 'USD',
           (case when k % 2 = 0 then 'stopped' else 'running' end)::instance_state, u.created_at + make_interval(secs => k)
    from users u cross join generate_series(1, ${perUser}) k`);
  await db.execute(sql`
    insert into usage_records (instance_id, hour, user_id, running_ms, tx_bytes)
    select i.id, p.start + make_interval(hours => h), i.user_id, 3600000, 100000000
    from instances i
    cross join (values (${last.start.toISOString()}::timestamptz), (${current.start.toISOString()}::timestamptz)) p(start)
    cross join generate_series(0, ${hoursN - 1}) h`);
  await db.execute(sql`
    insert into audit_log (actor_type, actor_id, action, target_type, target_id, reason, created_at)
    select 'user', u.id, (array['auth.login.succeeded', 'compute.instance.create', 'admin.user.role_changed'])[1 + g % 3], 'user', u.id::text, null,
           now() - make_interval(secs => g)
    from generate_series(1, ${auditN}) g
    join users u on u.email = 'bench' || (1 + g % ${usersN}) || '@example.test'`);
  await db.execute(sql`analyze`);
  const invoicing = await runInvoicing(services, { period: last.name });
  results.seed = {
    users: usersN,
    instances: usersN * perUser,
    usageRows: usersN * perUser * hoursN * 2,
    auditRows: auditN,
    invoices: invoicing.created,
    seconds: Math.round(performance.now() - seedStarted) / 1000,
  };

  const stats = await timed(5, () => statsOverview(services));
  results.statsOverview = { medianMs: stats.medianMs, maxMs: stats.maxMs, check: { users: stats.value.users.total, instances: stats.value.instances.total, revenue: stats.value.revenue } };

  results.usersFirstPage = await timed(10, () => listUsers(db, { limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
  const userDeep = await deepCursor(100, (cursor) => listUsers(db, { limit: 50, cursor }));
  results.usersPage101 = await timed(10, () => listUsers(db, { limit: 50, cursor: userDeep })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
  results.usersSearch = await timed(10, () => listUsers(db, { query: "user 1234", limit: 50 })).then(({ value, medianMs, maxMs }) => ({ medianMs, maxMs, matches: value.items.length }));
  results.usersByStatus = await timed(10, () => listUsers(db, { status: "suspended", limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));

  results.auditFirstPage = await timed(10, () => listAudit(db, { limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
  const auditDeep = await deepCursor(200, (cursor) => listAudit(db, { limit: 50, cursor }));
  results.auditPage201 = await timed(10, () => listAudit(db, { limit: 50, cursor: auditDeep })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
  results.auditByAction = await timed(10, () => listAudit(db, { action: "admin.*", limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
  const [someone] = await db.select({ id: users.id }).from(users).where(eq(users.email, "bench42@example.test"));
  results.auditByTarget = await timed(10, () => listAudit(db, { targetId: someone!.id, limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));

  results.instancesFirstPage = await timed(10, () => listAllInstances(services, { limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
  results.instancesRunning = await timed(10, () => listAllInstances(services, { state: "running", limit: 50 })).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
  results.queueHealth = await timed(10, () => queueHealth(services.queues)).then(({ medianMs, maxMs }) => ({ medianMs, maxMs }));
} finally {
  await services.close();
  await sandbox.destroy();
}
console.log(JSON.stringify(results, null, 2));
process.exit(0);
