import { Worker } from "bullmq";
import { connectRedis } from "../server/redis";
import { serializeError } from "../server/log";
import type { Services } from "../server/services";
import { processJob, type AnyProcessor } from "./base";

export type WorkerRunner = { workers: Worker[]; close(): Promise<void> };

/**
 * Starts one BullMQ worker per processor on a dedicated blocking connection and
 * keeps their schedules. `close` stops taking jobs, lets the running ones
 * finish (bounded by SHUTDOWN_TIMEOUT_MS: BullMQ's close has no timeout of its
 * own, stack-pitfalls B-2), then closes the connection; jobs still running
 * then are left to another worker (every job is idempotent).
 */
export async function startWorkers(services: Services, processors: AnyProcessor[]): Promise<WorkerRunner> {
  const { config, log } = services;
  // Schedules before workers: nothing a worker could take waits on them.
  for (const processor of processors) {
    const schedules = typeof processor.schedules === "function" ? processor.schedules(config) : (processor.schedules ?? []);
    for (const schedule of schedules) {
      const repeat = "pattern" in schedule ? { pattern: schedule.pattern, tz: "UTC" } : { every: schedule.every };
      await services.queues.queue(processor.queue).upsertJobScheduler(schedule.id, repeat, { name: schedule.name, data: schedule.data });
    }
  }
  const connection = await connectRedis(config.redis.url, "worker");
  const workers = processors.map((processor) => {
    const worker = new Worker(processor.queue, processJob(processor, services), {
      connection,
      prefix: services.queues.prefix,
      concurrency: (typeof processor.concurrency === "function" ? processor.concurrency(config) : processor.concurrency) ?? config.workers.concurrency,
      // A worker that dies (kill -9, a lost machine) stops renewing its jobs' locks; another worker's stalled
      // check moves them back to waiting once the lock has expired (every job is idempotent, so a rerun is safe).
      lockDuration: config.workers.lockMs,
      stalledInterval: config.workers.lockMs,
    });
    worker.on("failed", (job, error) => {
      log.warn("job failed", { queue: processor.queue, job: job?.name, jobId: job?.id, attempt: job?.attemptsMade, error: serializeError(error) });
    });
    worker.on("error", (error) => log.error("worker error", { queue: processor.queue, error: serializeError(error) }));
    return worker;
  });

  const background: Array<{ name: string; stop(): Promise<void> }> = [];
  for (const task of processors.flatMap((p) => p.background ?? [])) {
    background.push({ name: task.name, ...(await task.start(services)) });
  }
  log.info("workers started", { queues: processors.map((p) => p.queue), background: background.map((t) => t.name) });

  return {
    workers,
    async close() {
      await Promise.all(background.map((task) => task.stop().catch((error) => log.error("background task did not stop cleanly", { task: task.name, error: serializeError(error) }))));
      const closing = Promise.all(workers.map((worker) => worker.close()));
      const timedOut = await Promise.race([closing.then(() => false), new Promise<boolean>((resolve) => setTimeout(() => resolve(true), config.workers.shutdownTimeoutMs).unref())]);
      if (timedOut) {
        // BullMQ's close(true) after close() returns the same promise, which waits for the jobs: do not wait on it.
        // The jobs in hand are abandoned with their locks; another worker runs them again after WORKER_LOCK_MS.
        log.warn("workers did not finish in time; abandoning the jobs in hand to another worker", { timeoutMs: config.workers.shutdownTimeoutMs });
      }
      connection.disconnect();
      log.info("workers stopped");
    },
  };
}
