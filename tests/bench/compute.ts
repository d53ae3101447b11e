/**
 * Compute benchmark (not a test). Measures, against real PostgreSQL, Redis and
 * Docker, with the API and the workers in this process (the `npm start` shape):
 *
 *  1. create → running: p50/p95 from the `create` call until `actions.get`
 *     reports the create action succeeded, one at a time and in a burst;
 *  2. accepted creates per second: instances checked, recorded and enqueued by
 *     the API, with the workers stopped so nothing else competes.
 *
 * Run: node_modules/.bin/bun tests/bench/compute.ts [sequential=20] [burst=10] [accepted=400] [concurrency=16]
 *
 * It uses its own database, Redis prefix and Docker namespace and removes
 * them (and every container it made) at the end. Host overcommit and quotas
 * are raised so that capacity, not the API, would be the only other limit.
 */
import { createTRPCClient, httpLink } from "@trpc/client";
import { setUserQuota } from "../../server/compute/quotas";
import { syncHosts } from "../../server/compute/hosts";
import { createApp } from "../../server/app";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import type { AppRouter } from "../../server/router";
import { createServices } from "../../server/services";
import { processors } from "../../workers/processors";
import { startWorkers, type WorkerRunner } from "../../workers/runner";
import { createUserWithSession } from "../harness/users";
import { defineSandbox } from "../harness/sandbox";

const [sequentialN = 20, burstN = 10, acceptedN = 400, concurrency = 16] = process.argv.slice(2).map(Number);
// Its own database, Redis prefix, Docker namespace and data folder, removed at the end.
const sandbox = defineSandbox("bench");
await sandbox.create();

const config = loadConfig({
  LOG_LEVEL: "error",
  ...sandbox.env,
  DATABASE_POOL_MAX: "20",
  HOST_CPU_OVERCOMMIT: "1000",
  HOST_MEMORY_OVERCOMMIT: "100",
});
const services = await createServices(config, { log: createLogger({ level: "error" }) });
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(services).fetch });
const url = `http://127.0.0.1:${server.port}/trpc`;
let workers: WorkerRunner | undefined = await startWorkers(services, processors);
await syncHosts(services);

const clientFor = (token: string) => createTRPCClient<AppRouter>({ links: [httpLink({ url, headers: { authorization: `Bearer ${token}` } })] });
async function customer() {
  const { user, token } = await createUserWithSession(services);
  await setUserQuota(services.db, user.id, { maxInstances: 100_000, maxCpuMillis: 100_000_000, maxMemoryMb: 100_000_000 });
  return clientFor(token);
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const summary = (ms: number[]) => {
  const sorted = [...ms].sort((a, b) => a - b);
  return { n: sorted.length, p50: Math.round(percentile(sorted, 50)), p95: Math.round(percentile(sorted, 95)), max: Math.round(sorted.at(-1)!) };
};

async function createToRunning(api: ReturnType<typeof clientFor>, name: string): Promise<{ ms: number; id: string }> {
  const started = performance.now();
  const { instance, actionId } = await api.compute.instances.create.mutate({ name, planId: "nano", imageId: "busybox" });
  for (;;) {
    const action = await api.compute.actions.get.query({ id: actionId });
    if (action.status === "succeeded") return { ms: performance.now() - started, id: instance.id };
    if (action.status === "failed") throw new Error(`create failed: ${action.error}`);
    await Bun.sleep(10);
  }
}

const results: Record<string, unknown> = { machine: { cpus: navigator.hardwareConcurrency, docker: (await services.docker.version()).Version } };
const made: Array<{ api: ReturnType<typeof clientFor>; id: string }> = [];
try {
  // 1a. One at a time.
  const api = await customer();
  await createToRunning(api, "warm-up").then((r) => made.push({ api, id: r.id }));
  const sequential: number[] = [];
  for (let i = 0; i < sequentialN; i++) {
    const r = await createToRunning(api, `seq-${i}`);
    sequential.push(r.ms);
    made.push({ api, id: r.id });
  }
  results.createToRunningSequential = summary(sequential);

  // 1b. A burst: all requested at once.
  const burstApi = await customer();
  const burst = await Promise.all(Array.from({ length: burstN }, (_, i) => createToRunning(burstApi, `burst-${i}`)));
  for (const r of burst) made.push({ api: burstApi, id: r.id });
  results.createToRunningBurst = summary(burst.map((r) => r.ms));

  // 2. Accepted creates per second, workers stopped; spread over `concurrency` users (each user's creates take turns on their quota lock).
  await workers.close();
  workers = undefined;
  const apis = await Promise.all(Array.from({ length: concurrency }, () => customer()));
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    apis.map(async (client, lane) => {
      for (let i = next++; i < acceptedN; i = next++) {
        const t = performance.now();
        await client.compute.instances.create.mutate({ name: `acc-${lane}-${i}`, planId: "nano", imageId: "busybox" });
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  results.acceptedCreates = { n: acceptedN, concurrency, perSecond: Math.round(acceptedN / seconds), latencyMs: summary(latencies) };

  // The same through a single user: its creates are serialised by the quota lock.
  const single = await customer();
  const singleStarted = performance.now();
  let singleNext = 0;
  const singleN = Math.min(acceptedN, 200);
  await Promise.all(
    Array.from({ length: concurrency }, async (_, lane) => {
      for (let i = singleNext++; i < singleN; i = singleNext++) await single.compute.instances.create.mutate({ name: `one-${lane}-${i}`, planId: "nano", imageId: "busybox" });
    }),
  );
  results.acceptedCreatesOneUser = { n: singleN, concurrency, perSecond: Math.round(singleN / ((performance.now() - singleStarted) / 1000)) };
} finally {
  // Clean up: the accepted-only instances never reached Docker; the others are deleted through the API.
  await services.queues.queue("lifecycle").obliterate({ force: true });
  workers ??= await startWorkers(services, processors);
  const deletes = await Promise.allSettled(made.map(({ api, id }) => api.compute.instances.delete.mutate({ id })));
  const actionIds = deletes.flatMap((d) => (d.status === "fulfilled" ? [d.value.actionId] : []));
  const deadline = Date.now() + 60_000;
  for (const actionId of actionIds) {
    while (Date.now() < deadline) {
      const action = await made[0]!.api.compute.actions.get.query({ id: actionId }).catch(() => null);
      if (!action || action.status === "succeeded" || action.status === "failed") break;
      await Bun.sleep(50);
    }
  }
  await workers.close();
  await server.stop(true);
  await services.close();

  const { containersRemoved } = await sandbox.destroy();
  results.cleanup = { deletedThroughApi: actionIds.length, leftoverContainersRemoved: containersRemoved };
}

console.log(JSON.stringify(results, null, 2));
process.exit(0);
