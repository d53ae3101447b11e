/**
 * Billing benchmark (not a test), against real PostgreSQL, Redis and Docker:
 *
 *  1. invoicing: `customers` customers with `instances` instances each and
 *     `hours` hours of usage per instance in one month, seeded set-based;
 *     times a metering tick over all those instances, `runInvoicing` for the
 *     month, and the no-op rerun;
 *  2. metering: `containers` small BusyBox instances started through the
 *     platform; times full metering ticks (counters read from the cgroup
 *     files) and, for comparison, the engine's one-shot stats for the same
 *     containers in parallel and a few in series.
 *
 * Run: node_modules/.bin/bun tests/bench/billing.ts [customers=10000] [instances=2] [hours=72] [containers=30]
 *
 * It uses its own database, Redis prefix and Docker namespace and removes them
 * (and every container it made) at the end.
 */
import { eq, inArray, sql } from "drizzle-orm";
import { hosts, images, instances, invoices, plans, usageRecords } from "../../db/schema";
import { mapBounded, readCgroupCounters, readDockerCounters } from "../../server/billing/counters";
import { freezeGroupOf } from "../../server/compute/freezer";
import { runInvoicing } from "../../server/billing/invoicing";
import { meterUsage } from "../../server/billing/metering";
import { syncHosts } from "../../server/compute/hosts";
import { createInstance } from "../../server/compute/create";
import { setUserQuota } from "../../server/compute/quotas";
import { systemActor } from "../../server/auth/actor";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { processors } from "../../workers/processors";
import { startWorkers, type WorkerRunner } from "../../workers/runner";
import { createUserWithSession } from "../harness/users";
import { defineSandbox } from "../harness/sandbox";

const [customersN = 10_000, perCustomer = 2, hoursN = 72, containersN = 30] = process.argv.slice(2).map(Number);
// Its own database, Redis prefix, Docker namespace and data folder, removed at the end.
const sandbox = defineSandbox("bench");
await sandbox.create();
const { dockerSocket: socketPath } = sandbox;
const config = loadConfig({
  LOG_LEVEL: "error",
  ...sandbox.env,
  DATABASE_POOL_MAX: "10",
  HOST_CPU_OVERCOMMIT: "1000",
  HOST_MEMORY_OVERCOMMIT: "100",
  METERING_INTERVAL_MS: "3600000",
  BILLING_TAX_RATE_PERCENT: "20",
});
const services = await createServices(config, { log: createLogger({ level: "error" }) });
const { db } = services;
const seconds = (ms: number) => Math.round(ms) / 1000;
const time = async <T>(work: () => Promise<T>) => {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
};
const results: Record<string, unknown> = { machine: { cpus: navigator.hardwareConcurrency, docker: (await services.docker.version()).Version } };
let workers: WorkerRunner | undefined;

try {
  // 1. Invoicing.
  const period = "2025-01";
  const [host] = await db.insert(hosts).values({ name: "bench-seed", endpoint: "unix:///nonexistent/bench.sock", status: "offline" }).returning();
  const [plan] = await db.select().from(plans).where(eq(plans.slug, "small"));
  const [image] = await db.select().from(images).where(eq(images.slug, "busybox"));
  const seed = await time(async () => {
    await db.execute(sql`
      insert into users (email, name, password_hash, status)
      select 'bench' || g || '@example.test', 'Bench customer ' || g, 'not-a-password', 'active' from generate_series(1, ${customersN}) g`);
    await db.execute(sql`
      insert into instances (user_id, host_id, name, plan_id, image_id, image_reference, cpu_millis, memory_mb, disk_gb, price_hourly_minor, price_monthly_minor, currency, priority, state, created_at)
      select u.id, ${host!.id}, 'vm-' || k, ${plan!.id}, ${image!.id}, ${image!.reference}, ${plan!.cpuMillis}, ${plan!.memoryMb}, ${plan!.diskGb},
             ${plan!.priceHourlyMinor}, ${plan!.priceMonthlyMinor}, 'USD',
             (case when k % 3 = 0 then 'interruptible' else 'standard' end)::instance_priority, 'stopped', '2024-12-15T00:00:00Z'
      from users u cross join generate_series(1, ${perCustomer}) k where u.email like 'bench%'`);
    // Every instance runs `hours` hours; one hour in 12 paused by a power emergency; some egress.
    await db.execute(sql`
      insert into usage_records (instance_id, hour, user_id, running_ms, emergency_paused_ms, cpu_ns, memory_byte_ms, rx_bytes, tx_bytes)
      select i.id, '2025-01-01T00:00:00Z'::timestamptz + make_interval(hours => h), i.user_id,
             case when h % 12 = 0 then 0 else 3600000 end, case when h % 12 = 0 then 3600000 else 0 end,
             900000000000, 3600000::numeric * 268435456, 1000000, 250000000
      from instances i cross join generate_series(0, ${hoursN - 1}) h where i.host_id = ${host!.id}`);
    await db.execute(sql`analyze`);
  });
  const usageRows = customersN * perCustomer * hoursN;
  results.seed = { customers: customersN, instances: customersN * perCustomer, usageRows, seconds: seconds(seed.ms) };

  const tick = await time(() => meterUsage(services));
  results.meteringTickIdleInstances = { instances: tick.value.instances, seconds: seconds(tick.ms), note: "first tick: creates every cursor; instances stopped, nothing sampled" };
  const tick2 = await time(() => meterUsage(services));
  results.meteringTickIdleInstancesSteady = { instances: tick2.value.instances, seconds: seconds(tick2.ms) };

  const run = await time(() => runInvoicing(services, { period }));
  results.invoicing = { ...run.value, seconds: seconds(run.ms), invoicesPerSecond: Math.round(run.value.created / (run.ms / 1000)) };
  const rerun = await time(() => runInvoicing(services, { period }));
  results.invoicingRerun = { created: rerun.value.created, seconds: seconds(rerun.ms) };
  const [totals] = await db
    .select({
      invoices: sql<number>`count(*)`.mapWith(Number),
      numbers: sql<number>`count(distinct ${invoices.number})`.mapWith(Number),
      totalMinor: sql<number>`sum(${invoices.totalMinor})`.mapWith(Number),
    })
    .from(invoices)
    .where(eq(invoices.period, period));
  results.invoicingCheck = totals;

  // Free the database for the container part.
  await db.delete(usageRecords).where(inArray(usageRecords.instanceId, db.select({ id: instances.id }).from(instances).where(eq(instances.hostId, host!.id))));
  await db.execute(sql`delete from meter_cursors where instance_id in (select id from instances where host_id = ${host!.id})`);
  await db
    .update(instances)
    .set({ state: "deleted", stateChangedAt: new Date("2025-01-01T00:00:00Z") })
    .where(eq(instances.hostId, host!.id));
  await db.execute(sql`insert into meter_cursors (instance_id, metered_until, state, reason) select id, now(), 'deleted', 'bench' from instances where host_id = ${host!.id} on conflict do nothing`);

  // 2. Metering real containers.
  workers = await startWorkers(
    services,
    processors.filter((p) => p.queue === "lifecycle"),
  );
  await syncHosts(services);
  const { user } = await createUserWithSession(services);
  await setUserQuota(db, user.id, { maxInstances: 10_000, maxCpuMillis: 100_000_000, maxMemoryMb: 100_000_000 });
  const deps = { db, queues: services.queues, config, log: services.log };
  const created = await time(async () => {
    const made: string[] = [];
    for (let i = 0; i < containersN; i += 10) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(10, containersN - i) }, (_, k) =>
          createInstance(deps, { actor: systemActor("bench"), ownerId: user.id }, { name: `m-${i + k}`, planId: "nano", imageId: "busybox" }),
        ),
      );
      made.push(...batch.map((b) => b.instance.id));
      for (;;) {
        const rows = await db.select({ state: instances.state }).from(instances).where(inArray(instances.id, made));
        if (rows.every((r) => r.state === "running" || r.state === "error")) break;
        await Bun.sleep(100);
      }
    }
    return made;
  });
  const running = await db.select().from(instances).where(inArray(instances.id, created.value));
  const live = running.filter((r) => r.state === "running");
  results.containers = { requested: containersN, running: live.length, secondsToStart: seconds(created.ms) };

  // Metering stays METERING_SETTLE_MS behind the clock: let the new instances' first window open.
  await Bun.sleep(6000);
  const ticks = [];
  for (let i = 0; i < 3; i++) {
    if (i) await Bun.sleep(1000);
    const t = await time(() => meterUsage(services));
    ticks.push({
      seconds: seconds(t.ms),
      sampled: t.value.sampled,
      viaCgroup: t.value.sampledViaCgroup,
      failures: t.value.sampleFailures,
      instancesSampledPerSecond: Math.round(t.value.sampled / (t.ms / 1000)),
    });
  }
  results.meteringTickRealContainers = ticks;

  const targets = live.map((r) => ({ instanceId: r.id, containerId: r.containerId, endpoint: `unix://${socketPath}`, priority: r.priority }));
  const docker = services.engines.get(`unix://${socketPath}`);
  const cgroup = await time(() => mapBounded(targets, config.billing.sampleConcurrency, (t) => readCgroupCounters(t.containerId!, freezeGroupOf(config, t.priority))));
  results.sampleCgroupFiles = { containers: targets.length, ms: Math.round(cgroup.ms * 100) / 100, read: cgroup.value.filter(Boolean).length };
  const parallel = await time(() => mapBounded(targets, config.billing.sampleConcurrency, (t) => readDockerCounters(docker, config, t)));
  results.sampleDockerOneShotParallel = {
    containers: targets.length,
    concurrency: config.billing.sampleConcurrency,
    seconds: seconds(parallel.ms),
    perSecond: Math.round(targets.length / (parallel.ms / 1000)),
  };
  const series = await time(() => mapBounded(targets.slice(0, 5), 1, (t) => readDockerCounters(docker, config, t)));
  results.sampleDockerOneShotSeries = { containers: Math.min(5, targets.length), secondsEach: seconds(series.ms / Math.min(5, targets.length)) };
} finally {
  await workers?.close();
  await services.queues
    .queue("lifecycle")
    .obliterate({ force: true })
    .catch(() => {});
  await services.close();
  results.cleanup = await sandbox.destroy();
}

console.log(JSON.stringify(results, null, 2));
process.exit(0);
