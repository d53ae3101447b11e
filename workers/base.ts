import { UnrecoverableError, type Job } from "bullmq";
import * as v from "valibot";
import { AppError, httpStatusOf } from "../server/errors";
import type { Config } from "../server/config";
import type { Logger } from "../server/log";
import type { Services } from "../server/services";
import { jobSchema, type JobName, type JobPayload, type QueueName } from "./queues";

/** `token`: the job's lock token, for handlers that reschedule their own job (`job.moveToDelayed`). */
export type JobContext = Services & { job: Job; token: string | undefined; log: Logger };

type Handlers<Q extends QueueName> = { [J in JobName<Q>]: (payload: JobPayload<Q, J>, ctx: JobContext) => Promise<unknown> };

/**
 * A repeatable job the runner keeps scheduled (idempotent upsert by id):
 * every `every` milliseconds, or on a cron `pattern` evaluated in UTC.
 */
export type Schedule<Q extends QueueName> = { id: string; name: JobName<Q>; data: Record<string, unknown> } & ({ every: number } | { pattern: string });

/** Long-running work beside the jobs (an event stream): started with the workers, stopped before them. */
export type BackgroundTask = { name: string; start(services: Services): Promise<{ stop(): Promise<void> }> };

export type Processor<Q extends QueueName = QueueName> = {
  queue: Q;
  handlers: Handlers<Q>;
  /** Fixed, or derived from the configuration (intervals that are settings). */
  schedules?: Schedule<Q>[] | ((config: Config) => Schedule<Q>[]);
  background?: BackgroundTask[];
  /** Defaults to WORKER_CONCURRENCY. */
  concurrency?: number | ((config: Config) => number);
};

/** Any queue's processor: a union, so a list of them needs no casts. */
export type AnyProcessor = { [Q in QueueName]: Processor<Q> }[QueueName];

export function defineProcessor<Q extends QueueName>(processor: Processor<Q>): Processor<Q> {
  return processor;
}

/**
 * Wraps a processor's handlers in what every job needs: the payload is checked
 * against the queue contract, and only errors that retrying cannot fix stop
 * the retries (BullMQ's UnrecoverableError is the one signal it honours).
 */
export function processJob(processor: AnyProcessor, services: Services) {
  return async (job: Job, token?: string) => {
    const log = services.log.child({ queue: processor.queue, job: job.name, jobId: job.id, attempt: job.attemptsMade + 1 });
    const handler = (processor.handlers as Record<string, (payload: unknown, ctx: JobContext) => Promise<unknown>>)[job.name];
    const schema = jobSchema(processor.queue, job.name);
    if (!handler || !schema) throw new UnrecoverableError(`No handler for ${processor.queue}.${job.name}`);
    const parsed = v.safeParse(schema, job.data);
    if (!parsed.success) throw new UnrecoverableError(`Invalid payload for ${processor.queue}.${job.name}: ${parsed.issues[0]?.message}`);
    try {
      return await handler(parsed.output, { ...services, job, token, log });
    } catch (error) {
      if (error instanceof AppError && httpStatusOf(error.appCode) < 500) {
        throw new UnrecoverableError(`${error.appCode}: ${error.message}`);
      }
      throw error;
    }
  };
}

/** True on the last attempt BullMQ will make for this job. */
export function isFinalAttempt(job: Job): boolean {
  return job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}
