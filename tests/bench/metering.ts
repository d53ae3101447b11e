/**
 * Metering benchmark (not a test), against real PostgreSQL, Redis and Docker.
 * For each size in `sizes` (ascending) the fleet grows to that many running
 * BusyBox instances, created through the platform (100 per customer: a
 * customer's network holds about 250 addresses), and the bench times
 * `ticks` full metering ticks over all of them: for every instance, its time
 * since the cursor from the state history, its counters sampled (from the
 * container's cgroup files when the engine is local, the engine's one-shot
 * stats otherwise), and the usage written — one statement per page of 1,000
 * instances that advances the cursors and adds the hourly rows (and, through
 * the triggers, the monthly aggregate). It prints per size the median tick,
 * the cost per container and how the tick grows with the fleet.
 *
 * Run: node_modules/.bin/bun tests/bench/metering.ts [sizes=125,250,500] [ticks=3]
 *
 * It uses its own database, Redis prefix and Docker namespace and removes
 * them (and every container it made) at the end.
 */
import { inArray } from "drizzle-orm";
import { instanceActions } from "../../db/schema";
import { meterUsage } from "../../server/billing/metering";
import { syncHosts } from "../../server/compute/hosts";
import { createInstance } from "../../server/compute/create";
import { setUserQuota } from "../../server/compute/quotas";
import { systemActor } from "../../server/auth/actor";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { processors } from "../../workers/processors";
import { startWorkers } from "../../workers/runner";
import { createUserWithSession } from "../harness/users";
import { defineSandbox } from "../harness/sandbox";

const [sizesArg = "125,250,500", ticksArg = "3"] = process.argv.slice(2);
const sizes = sizesArg
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const ticksN = Number(ticksArg);
const sandbox = defineSandbox("bench");
await sandbox.create();
const config = loadConfig({ LOG_LEVEL: "error", ...sandbox.env, HOST_CPU_OVERCOMMIT: "1000", HOST_MEMORY_OVERCOMMIT: "100", METERING_INTERVAL_MS: "3600000" });
const services = await createServices(config, { log: createLogger({ level: "error" }) });
const { db } = services;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

type Size = { containers: number; running: number; secondsToGrow: number; ticksMs: number[]; medianMs: number; msPerContainer: number; sampled: number; viaCgroup: number; failures: number };
const bySize: Size[] = [];
// Only the lifecycle workers: metering runs here, tick by tick, not on the billing worker's schedule.
const workers = await startWorkers(
  services,
  processors.filter((p) => p.queue === "lifecycle"),
);
try {
  await syncHosts(services);
  // A customer per PER_CUSTOMER containers: each customer's containers share one network, whose address pool holds about 250.
  const PER_CUSTOMER = 100;
  const owners: string[] = [];
  const ownerOf = async (index: number) => {
    while (owners.length <= Math.floor(index / PER_CUSTOMER)) {
      const { user } = await createUserWithSession(services);
      await setUserQuota(db, user.id, { maxInstances: 10_000, maxCpuMillis: 100_000_000, maxMemoryMb: 100_000_000 });
      owners.push(user.id);
    }
    return owners[Math.floor(index / PER_CUSTOMER)]!;
  };
  const fleet: string[] = [];
  for (const size of sizes) {
    const started = performance.now();
    while (fleet.length < size) {
      const ownerId = await ownerOf(fleet.length);
      const batch = await Promise.all(
        Array.from({ length: Math.min(10, size - fleet.length) }, (_, k) =>
          createInstance(services, { actor: systemActor("bench"), ownerId }, { name: `m-${fleet.length + k}`, planId: "nano", imageId: "busybox" }),
        ),
      );
      fleet.push(...batch.map((b) => b.instance.id));
      const ids = batch.map((b) => b.actionId);
      for (;;) {
        const rows = await db.select({ status: instanceActions.status }).from(instanceActions).where(inArray(instanceActions.id, ids));
        if (rows.every((r) => r.status === "succeeded" || r.status === "failed")) break;
        await Bun.sleep(50);
      }
    }
    const secondsToGrow = Math.round(performance.now() - started) / 1000;
    // Metering stays METERING_SETTLE_MS behind the clock: let the new instances' first window open, and the first tick create their cursors.
    await Bun.sleep(6000);
    await meterUsage(services);
    const ticksMs: number[] = [];
    let last = await meterUsage(services);
    for (let i = 0; i < ticksN; i++) {
      await Bun.sleep(1000);
      const t = performance.now();
      last = await meterUsage(services);
      ticksMs.push(Math.round(performance.now() - t));
    }
    const medianMs = median(ticksMs);
    bySize.push({
      containers: size,
      running: last.sampled,
      secondsToGrow,
      ticksMs,
      medianMs,
      msPerContainer: Math.round((medianMs / size) * 100) / 100,
      sampled: last.sampled,
      viaCgroup: last.sampledViaCgroup,
      failures: last.sampleFailures,
    });
    console.error(`${size} containers: tick median ${medianMs} ms (${ticksMs.join(", ")})`);
  }
} finally {
  await workers.close();
  await services.queues
    .queue("lifecycle")
    .obliterate({ force: true })
    .catch(() => {});
  await services.close();
  await sandbox.destroy();
}

console.log(JSON.stringify({ machine: { cpus: navigator.hardwareConcurrency }, sampleConcurrency: config.billing.sampleConcurrency, sizes: bySize }, null, 2));
console.log("growth (median tick, against the smallest size):");
for (const s of bySize) {
  console.log(
    `  ${String(s.containers).padStart(5)} containers: ${String(s.medianMs).padStart(6)} ms  ×${(s.medianMs / bySize[0]!.medianMs).toFixed(2)} for ×${(s.containers / bySize[0]!.containers).toFixed(1)} containers  (${s.msPerContainer} ms per container; ${s.viaCgroup}/${s.sampled} sampled from cgroup files, ${s.failures} failures)`,
  );
}
process.exit(0);
