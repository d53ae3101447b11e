/**
 * Invoicing benchmark (not a test), against real PostgreSQL and Redis. For
 * each size in `sizes` (customers, ascending) the same database grows to that
 * many customers with `instances` instances each (a third interruptible),
 * and one month of usage is written for every instance; then two invoicing
 * runs start at once, as two billing workers would, and the bench times them
 * and checks the outcome: exactly one invoice per customer, invoice numbers
 * without gaps or duplicates across both runs, and the totals.
 *
 * The month of usage is written to the monthly aggregate (usage_monthly)
 * directly, not as hourly rows: invoicing reads only the aggregate, and a
 * month of hourly rows for 200,000 instances (144 M rows) would take far
 * longer to seed than to invoice. The triggers that keep the aggregate from
 * the hourly rows are tested in tests/integration/usage-aggregates.test.ts.
 * Meter cursors are written as already past the month, so closing metering
 * finds nothing to do, as on a platform whose metering keeps up.
 *
 * Each size invoices its own month (2025-01, 2025-02, …), so every run
 * starts from customers without invoices. It prints, per size, the wall time
 * of the two concurrent runs, invoices per second, the process's peak RSS
 * and heap (sampled every 50 ms) and the checks, then how the time grows.
 *
 * Run: node_modules/.bin/bun tests/bench/invoicing.ts [sizes=10000,30000,100000] [instances=2]
 *
 * It uses its own database and Redis prefix and removes them at the end.
 */
import { eq, sql } from "drizzle-orm";
import { billingCounters, hosts, images, invoices, plans } from "../../db/schema";
import { runInvoicing } from "../../server/billing/invoicing";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { defineSandbox } from "../harness/sandbox";

const [sizesArg = "10000,30000,100000", perCustomerArg = "2"] = process.argv.slice(2);
const sizes = sizesArg
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const perCustomer = Number(perCustomerArg);
const sandbox = defineSandbox("bench");
await sandbox.create();
const config = loadConfig({
  LOG_LEVEL: "error",
  ...sandbox.env,
  DATABASE_POOL_MAX: "10",
  BILLING_TAX_RATE_PERCENT: "20",
  BILLING_INTERRUPTIBLE_DISCOUNT_PERCENT: "40",
  BILLING_EGRESS_PRICE_PER_GB_MINOR: "1",
});
const services = await createServices(config, { log: createLogger({ level: "error" }) });
const { db } = services;
const seconds = (ms: number) => Math.round(ms) / 1000;
const mb = (bytes: number) => Math.round(bytes / 1048576);

type SizeResult = {
  customers: number;
  instances: number;
  seedSeconds: number;
  seconds: number;
  invoicesPerSecond: number;
  runs: unknown[];
  peakRssMb: number;
  peakHeapMb: number;
  check: Record<string, unknown>;
};
const bySize: SizeResult[] = [];
try {
  const [host] = await db.insert(hosts).values({ name: "bench-seed", endpoint: "unix:///nonexistent/bench.sock", status: "offline" }).returning();
  const [plan] = await db.select().from(plans).where(eq(plans.slug, "small"));
  const [image] = await db.select().from(images).where(eq(images.slug, "busybox"));
  let seeded = 0;
  for (const [index, size] of sizes.entries()) {
    const period = `2025-${String(index + 1).padStart(2, "0")}`;
    const periodStart = `${period}-01T00:00:00Z`;
    const seedStarted = performance.now();
    await db.transaction(async (tx) => {
      await tx.execute(sql`set local statement_timeout = 0`);
      // The customers seeded+1..size, their instances (created before the first month), plan rows and meter cursors.
      await tx.execute(sql`
        with u as (
          insert into users (email, name, password_hash, status)
          select 'bench' || g || '@example.test', 'Bench customer ' || g, 'not-a-password', 'active' from generate_series(${seeded + 1}::int, ${size}::int) g
          returning id
        ), i as (
          insert into instances (user_id, host_id, name, plan_id, image_id, image_reference, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, priority, state, created_at)
          select u.id, ${host!.id}, 'vm-' || k || '-' || substr(u.id::text, 25), ${plan!.id}, ${image!.id}, ${image!.reference}, ${plan!.cpuMillis}, ${plan!.memoryMb}, ${plan!.diskGb},
                 ${plan!.priceHourlyMinor}, ${plan!.priceMonthlyMinor}, 'USD',
                 (case when k % 3 = 0 then 'interruptible' else 'standard' end)::instance_priority, 'stopped', '2024-12-15T00:00:00Z'
          from u cross join generate_series(1, ${perCustomer}::int) k
          returning id, plan_id, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, created_at
        ), p as (
          insert into instance_plans (instance_id, seq, plan_id, plan_slug, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, from_at)
          select i.id, 0, i.plan_id, ${plan!.slug}, i.cpu_millis, i.memory_mb, i.disk_gb, i.price_hourly_minor, i.price_monthly_minor, i.currency, i.created_at from i
        )
        insert into meter_cursors (instance_id, metered_until, state, reason)
        select i.id, now(), 'stopped', 'bench' from i`);
      // The month: 31 days, one hour in 12 paused by a power emergency, 250 MB sent an hour; the last customer in 10 used nothing.
      await tx.execute(sql`
        insert into usage_monthly (instance_id, period_start, plan_seq, user_id, running_ms, paused_ms, emergency_paused_ms, tx_bytes, price_hourly_minor, price_monthly_minor, currency)
        select i.id, ${periodStart}::timestamptz, 0, i.user_id, 682 * 3600000::bigint, 0, 62 * 3600000::bigint, 744 * 250000000::bigint, p.price_hourly_minor, p.price_monthly_minor, p.currency
        from instances i
        join instance_plans p on p.instance_id = i.id and p.seq = 0
        join users u on u.id = i.user_id
        where i.host_id = ${host!.id} and right(u.email, 14) <> '0@example.test'`);
    });
    await db.execute(sql`analyze`);
    seeded = size;
    const seedSeconds = seconds(performance.now() - seedStarted);

    const [before] = await db.select({ value: billingCounters.value }).from(billingCounters).where(eq(billingCounters.name, "invoice"));
    let peakRss = 0;
    let peakHeap = 0;
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    }, 50);
    const started = performance.now();
    // Two billing workers at once.
    const runs = await Promise.all([runInvoicing(services, { period }), runInvoicing(services, { period })]);
    const ms = performance.now() - started;
    clearInterval(sampler);

    const [check] = await db
      .select({
        invoices: sql<number>`count(*)`.mapWith(Number),
        customers: sql<number>`count(distinct ${invoices.userId})`.mapWith(Number),
        numbers: sql<number>`count(distinct ${invoices.number})`.mapWith(Number),
        firstNumber: sql<string>`min(${invoices.number})`,
        lastNumber: sql<string>`max(${invoices.number})`,
        totalMinor: sql<number>`sum(${invoices.totalMinor})`.mapWith(Number),
      })
      .from(invoices)
      .where(eq(invoices.period, period));
    const [counter] = await db.select({ value: billingCounters.value }).from(billingCounters).where(eq(billingCounters.name, "invoice"));
    const expected = size - Math.floor(size / 10);
    const numberOf = (n: string) => Number(n.replace(/^INV-/, ""));
    const gapFree =
      check!.invoices === check!.numbers &&
      numberOf(check!.lastNumber) - numberOf(check!.firstNumber) + 1 === check!.invoices &&
      numberOf(check!.firstNumber) === (before?.value ?? 0) + 1 &&
      counter!.value === numberOf(check!.lastNumber);
    const ok = check!.invoices === expected && check!.customers === expected && gapFree;
    bySize.push({
      customers: size,
      instances: size * perCustomer,
      seedSeconds,
      seconds: seconds(ms),
      invoicesPerSecond: Math.round(check!.invoices / (ms / 1000)),
      runs: runs.map((r) => ({ created: r.created, customers: r.customers, durationMs: r.durationMs })),
      peakRssMb: mb(peakRss),
      peakHeapMb: mb(peakHeap),
      check: { ...check, expectedInvoices: expected, oneInvoicePerCustomer: check!.invoices === expected && check!.customers === expected, gapFree },
    });
    console.error(`${size} customers (${period}): ${seconds(ms)} s for two concurrent runs, ${check!.invoices} invoices, ${ok ? "checks pass" : "CHECKS FAIL"}`);
    if (!ok) process.exitCode = 1;
  }
} finally {
  await services.close();
  await sandbox.destroy();
}

console.log(JSON.stringify({ machine: { cpus: navigator.hardwareConcurrency }, sizes: bySize }, null, 2));
console.log("growth (two concurrent runs, against the smallest size):");
for (const s of bySize) {
  console.log(
    `  ${String(s.customers).padStart(7)} customers / ${String(s.instances).padStart(7)} instances: ${String(s.seconds).padStart(7)} s  ×${(s.seconds / bySize[0]!.seconds).toFixed(2)} for ×${(s.customers / bySize[0]!.customers).toFixed(1)} customers  (${((s.seconds * 1e6) / s.customers).toFixed(0)} µs per customer, peak RSS ${s.peakRssMb} MB, heap ${s.peakHeapMb} MB)`,
  );
}
process.exit(process.exitCode ?? 0);
