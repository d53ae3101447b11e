import { Queue, type JobsOptions } from "bullmq";
import type { Redis } from "ioredis";
import * as v from "valibot";
import { POWER_LEVELS } from "../server/energy/levels";

/**
 * The contract between the server (producer) and the workers (consumers): every
 * queue, every job name on it, and the schema of its payload. Producers can only
 * enqueue what is declared here and workers re-validate what they receive.
 */
const uuid = v.pipe(v.string(), v.uuid());
const powerLevel = v.picklist(POWER_LEVELS);

export const JOBS = {
  mail: {
    /** Deliver one message from the outbox. */
    send: v.object({ messageId: uuid }),
    /** Re-enqueue outbox messages whose enqueue was lost (repeatable). */
    sweep: v.object({}),
  },
  lifecycle: {
    /** Carry out one instance action (create, start, stop, restart, delete, pause, resume). Job id: action.<actionId>. */
    run: v.object({ actionId: uuid }),
    /** Compare every host with the database and correct drift; recover lost actions (repeatable). */
    reconcile: v.object({}),
    /** Check one instance against its container, after a Docker event. */
    reconcileInstance: v.object({ instanceId: uuid }),
    /** Count an out-of-memory kill in an instance (a Docker `oom` event). Job id: oom.<instanceId>.<event timeNano>. */
    recordOom: v.object({ instanceId: uuid, at: v.pipe(v.string(), v.isoTimestamp()) }),
    /** Make a volume's storage (state creating) or remove it (state deleting). Job id: volume.<ensure|remove>.<volumeId>. */
    volume: v.object({ volumeId: uuid }),
  },
  emergency: {
    /**
     * The power level changed (recorded by the hardware monitor). One job per
     * change, job id `power-emergency.<changeId>`. Changes are ordered by
     * `seq`; a job whose `seq` is below the latest change's (see
     * `latestLevelChange` in server/energy/power.ts) is stale and should
     * reconcile to the current level rather than apply `to`.
     */
    "power-emergency": v.object({
      changeId: uuid,
      seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
      from: powerLevel,
      to: powerLevel,
      /** ISO 8601, when the monitor decided the change. */
      at: v.pipe(v.string(), v.isoTimestamp()),
      /** The state of charge (%) that caused it; null if unknown. */
      soc: v.nullable(v.number()),
    }),
    /** Converge instances and the backup signal to the current power level (repeatable). */
    enforce: v.object({}),
  },
  billing: {
    /** One metering tick over every instance (repeatable, METERING_INTERVAL_MS). */
    meter: v.object({}),
    /** Invoice a period (`YYYY-MM`); without one, the month that just ended (scheduled at 00:00 UTC on the 1st). */
    invoice: v.object({ period: v.optional(v.pipe(v.string(), v.regex(/^\d{4}-(0[1-9]|1[0-2])$/))) }),
  },
  notify: {
    /**
     * Carry out one email or webhook delivery (an `event_deliveries` row).
     * Job id `delivery.<deliveryId>.<generation>`: a manual redelivery bumps
     * the generation, so it never collides with the earlier job.
     */
    deliver: v.object({ deliveryId: uuid, generation: v.pipe(v.number(), v.integer(), v.minValue(0)) }),
    /** Fan out events the relay left behind and re-enqueue deliveries whose job was lost (repeatable). */
    sweep: v.object({}),
    /** Remind owners of unpaid invoices (repeatable, DUNNING_CHECK_INTERVAL_MS). */
    dunning: v.object({}),
  },
  admin: {
    /**
     * Make sure every instance of a suspended account ends up stopped (some may
     * have had an action in flight at suspension). Retried until they are; a
     * no-op once the account is active again. Job id `suspension.<userId>.<ms of the request>`.
     */
    enforceSuspension: v.object({ userId: uuid }),
  },
} as const;

export type QueueName = keyof typeof JOBS;
export type JobName<Q extends QueueName> = keyof (typeof JOBS)[Q] & string;
type JobSchema<Q extends QueueName, J extends JobName<Q>> = (typeof JOBS)[Q][J] extends v.GenericSchema ? (typeof JOBS)[Q][J] : never;
export type JobPayload<Q extends QueueName, J extends JobName<Q>> = v.InferOutput<JobSchema<Q, J>>;

export const QUEUE_NAMES = Object.keys(JOBS) as QueueName[];

export function jobSchema(queue: QueueName, name: string): v.GenericSchema | undefined {
  return (JOBS[queue] as Record<string, v.GenericSchema>)[name];
}

/**
 * BullMQ forbids ':' in custom ids; ids built from parts are joined with '.'.
 * A stable id is what makes an enqueue idempotent: BullMQ ignores an add whose
 * id already exists.
 */
export function jobId(...parts: Array<string | number>): string {
  return parts.map((part) => String(part).replaceAll(":", "_")).join(".");
}

const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: "exponential", delay: 1000 },
  removeOnComplete: { age: 24 * 3600, count: 5000 },
  removeOnFail: { age: 14 * 24 * 3600 },
};

export type Queues = ReturnType<typeof createQueues>;

export function bullPrefix(redisPrefix: string): string {
  return `${redisPrefix}:bull`;
}

/** Producers for every queue, sharing the given command connection. */
export function createQueues(connection: Redis, redisPrefix: string) {
  const prefix = bullPrefix(redisPrefix);
  const queues = new Map<QueueName, Queue>();
  const queue = (name: QueueName): Queue => {
    let q = queues.get(name);
    if (!q) {
      q = new Queue(name, { connection, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS });
      // Connection errors reach callers as failed commands (503) and readiness; unheard, BullMQ prints each one.
      q.on("error", () => {});
      queues.set(name, q);
    }
    return q;
  };

  return {
    prefix,
    queue,
    /** Validates the payload against the contract, then adds the job. */
    async enqueue<Q extends QueueName, J extends JobName<Q>>(queueName: Q, name: J, payload: JobPayload<Q, J>, opts: JobsOptions = {}): Promise<string> {
      const schema = jobSchema(queueName, name);
      if (!schema) throw new Error(`No job ${queueName}.${name} in the queue contract`);
      const data = v.parse(schema, payload);
      const job = await queue(queueName).add(name, data, opts);
      return job.id!;
    },
    /** Validates each payload, then adds all the jobs in one round trip (BullMQ addBulk). */
    async enqueueMany<Q extends QueueName, J extends JobName<Q>>(queueName: Q, name: J, jobs: ReadonlyArray<{ payload: JobPayload<Q, J>; opts?: JobsOptions }>): Promise<void> {
      const schema = jobSchema(queueName, name);
      if (!schema) throw new Error(`No job ${queueName}.${name} in the queue contract`);
      if (jobs.length === 0) return;
      await queue(queueName).addBulk(jobs.map((job) => ({ name, data: v.parse(schema, job.payload), opts: job.opts ?? {} })));
    },
    async close(): Promise<void> {
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}
